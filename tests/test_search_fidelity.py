"""Multi-fidelity replay: the arithmetic of steps consumed and cost on a hand-made fidelity table, pruners,
simulated asynchronous workers, and plugin samplers/pruners by name."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pandas as pd
import pytest

from hyperrecon.errors import ConfigError, UnknownNameError
from hyperrecon.search import FidelityTable, fidelity_steps, search_fidelity, strategy_items
from hyperrecon.strategies import STRATEGIES


class SequenceSampler(optuna.samplers.BaseSampler):
    """Trial n gets λ = seq[n] (a plugin sampler: any BaseSampler works as a strategy)."""

    def __init__(self, seq):
        self.seq = list(seq)

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.seq[trial.number % len(self.seq)]


@pytest.fixture(autouse=True)
def sequence_strategy():
    @STRATEGIES.register("test-sequence", description="fixed λ sequence (tests)")
    def factory(n_lams, budget, seed, seq=(0.5, 0.0, 1.0)):
        return SequenceSampler(seq)

    yield
    STRATEGIES._items.pop("test-sequence", None)


def hand_table() -> FidelityTable:
    """Three baselines (λ = 0, 0.5, 1), fidelity steps 1, 3, 9 (η = 3).

    λ = 0:   objective 1, 2, 3   training seconds 1, 3, 9    (cumulative)
    λ = 0.5: objective 5, 6, 7   training seconds 2, 6, 18
    λ = 1:   objective 0, 0, 0   training seconds 3, 9, 27
    every validation pass: 0.5 s. Full cost of a trial = final training + final validation: 9.5, 18.5, 27.5 s.
    """
    rows = []
    for lam, obj, train in ((0.0, [1, 2, 3], [1, 3, 9]), (0.5, [5, 6, 7], [2, 6, 18]), (1.0, [0, 0, 0], [3, 9, 27])):
        for step, o, t in zip((1, 3, 9), obj, train, strict=True):
            rows.append({"lam1": lam, "step": step, "train_seconds": t, "eval_seconds": 0.5, "psnr": o})
    return FidelityTable.from_frame(pd.DataFrame(rows), ["psnr"], 1)


def run(strategy, workers=1, budget=3, **kw):
    return search_fidelity(
        hand_table(), [strategy], budget=budget, seeds=[0], maximize=True, workers=workers, reduction_factor=3, **kw
    )


def test_fidelity_steps_are_a_geometric_series_ending_at_full_training() -> None:
    assert fidelity_steps(200, 4, 3) == [7, 21, 63, 200]
    assert fidelity_steps(4, 4, 3) == [1, 3, 4]
    assert fidelity_steps(100, 1, 3) == [100]
    assert fidelity_steps(1000, 3, 2) == [250, 500, 1000]
    with pytest.raises(ConfigError, match="reduction_factor >= 2"):
        fidelity_steps(10, 3, 1)


def test_without_a_pruner_every_trial_pays_full_training_and_one_validation() -> None:
    t = run("test-sequence")
    assert t["lam1"].tolist() == [0.5, 0.0, 1.0]
    assert t["state"].tolist() == ["COMPLETE"] * 3
    assert t["step"].tolist() == [9, 9, 9]
    assert t["cost_seconds"].tolist() == [18.5, 9.5, 27.5]
    assert t["cost_seconds"].tolist() == t["full_cost_seconds"].tolist()
    assert t["cum_cost_seconds"].tolist() == [18.5, 28.0, 55.5]
    assert t["objective"].tolist() == [7, 3, 0] and t["best_so_far"].tolist() == [7, 7, 7]


@pytest.mark.parametrize("pruner", ["median", "successive-halving"])
def test_pruned_trials_pay_only_the_steps_they_consumed(pruner: str) -> None:
    # median: n_startup_trials=1, so trial 1 is compared with the median of the completed trial 0 (5 at step 1).
    # successive halving (η = 3, min_resource = 1): at rung 0 only the best third (at least the best) goes on.
    t = run(f"test-sequence+{pruner}", pruner_params={"median": {"n_startup_trials": 1}})
    # trial 0 (λ = 0.5) runs to the end: training 18 s + three validation passes
    # trial 1 (λ = 0) reports 1 at step 1 (< 5) and stops: training 1 s + one validation pass
    # trial 2 (λ = 1) reports 0 at step 1 and stops: training 3 s + one validation pass
    assert t["state"].tolist() == ["COMPLETE", "PRUNED", "PRUNED"]
    assert t["step"].tolist() == [9, 1, 1]
    assert t["cost_seconds"].tolist() == [19.5, 1.5, 3.5]
    assert t["full_cost_seconds"].tolist() == [18.5, 9.5, 27.5]
    assert t["cost_seconds"].sum() == 24.5 < t["full_cost_seconds"].sum() == 55.5
    assert t["objective"].tolist() == [7, 1, 0]  # the last value reported
    assert t["best_so_far"].tolist() == [7, 7, 7]  # pruned trials never become the best


@pytest.mark.parametrize("strategy", ["random+hyperband", "tpe+successive-halving", "random+median"])
def test_every_trial_pays_training_to_its_last_step_plus_its_validation_passes(strategy: str) -> None:
    table = hand_table()
    t = search_fidelity(table, [strategy], budget=12, seeds=[0, 1], maximize=True, workers=3)
    train = {0.0: [1, 3, 9], 0.5: [2, 6, 18], 1.0: [3, 9, 27]}
    for _, r in t.iterrows():
        reached = [1, 3, 9].index(r.step) + 1
        assert r.cost_seconds == train[r.lam1][reached - 1] + 0.5 * reached
        assert r.full_cost_seconds == train[r.lam1][-1] + 0.5
        assert (r.state == "PRUNED") == (r.step < 9)
        assert r.end_seconds - r.start_seconds == pytest.approx(r.cost_seconds)
    assert (t.state == "PRUNED").any()
    for _, run in t.groupby("seed"):
        np.testing.assert_allclose(run["cum_cost_seconds"], run["cost_seconds"].cumsum())


def test_a_pruned_trial_is_never_the_best_even_with_a_better_low_fidelity_value() -> None:
    rows = []
    for lam, obj in ((0.0, [1, 9, 9]), (1.0, [2, 2, 3])):
        for step, o in zip((1, 3, 9), obj, strict=True):
            rows.append({"lam1": lam, "step": step, "train_seconds": step, "eval_seconds": 0.0, "psnr": o})
    table = FidelityTable.from_frame(pd.DataFrame(rows), ["psnr"], 1)
    # ThresholdPruner(upper=8) stops λ = 0 at step 3 (9 > 8), after it reported 9: better than the 3 of the
    # complete trial, but from a model trained for 3 of 9 steps, so not a result
    t = search_fidelity(
        table,
        ["test-sequence+ThresholdPruner"],
        budget=2,
        seeds=[0],
        maximize=True,
        strategy_params={"test-sequence": {"seq": [1.0, 0.0]}},
        pruner_params={"ThresholdPruner": {"upper": 8.0}},
    )
    assert t["state"].tolist() == ["COMPLETE", "PRUNED"] and t["step"].tolist() == [9, 3]
    assert t["objective"].tolist() == [3.0, 9.0] and t["cost_seconds"].tolist() == [9.0, 3.0]
    assert t["best_so_far"].tolist() == [3.0, 3.0] and t["best_lam1"].tolist() == [1.0, 1.0]


def test_asynchronous_workers_run_trials_side_by_side() -> None:
    t = run("test-sequence", workers=2)
    # t=0: trials 0 (18.5 s) and 1 (9.5 s) start; t=9.5: trial 1 ends, trial 2 (27.5 s) starts; t=18.5 trial 0
    # ends; t=37 trial 2 ends. Rows are in finishing order.
    assert t["trial"].tolist() == [1, 0, 2]
    assert t["start_seconds"].tolist() == [0.0, 0.0, 9.5]
    assert t["end_seconds"].tolist() == [9.5, 18.5, 37.0]
    assert t["cost_seconds"].sum() == 55.5  # the same device time as one worker, in 37 s of wall-clock time
    assert t["best_so_far"].tolist() == [3, 7, 7]
    assert (t["workers"] == 2).all()
    one = run("test-sequence", workers=1)
    np.testing.assert_allclose(one["end_seconds"], one["cum_cost_seconds"])


def test_pruning_with_workers_sees_only_the_reports_made_so_far() -> None:
    # Two workers, median pruner (one completed trial needed). Trial 1 (λ = 0) reports at t = 1.5, before any
    # trial has completed: it is not pruned and runs to the end. Trial 2 (λ = 1) starts at t = 18.5 when
    # trial 0 completes... trial 1 completes at 10.5 first; trial 2 starts then, reports 0 at t = 14 against the
    # median of the completed trials at step 1 (trial 1: 1) and stops.
    t = run("test-sequence+median", workers=2, pruner_params={"median": {"n_startup_trials": 1}})
    by_trial = t.set_index("trial")
    assert by_trial.loc[1, "state"] == "COMPLETE" and by_trial.loc[1, "end_seconds"] == 10.5
    assert by_trial.loc[2, "state"] == "PRUNED" and by_trial.loc[2, "start_seconds"] == 10.5
    assert by_trial.loc[2, "end_seconds"] == 14.0 and by_trial.loc[2, "cost_seconds"] == 3.5
    assert by_trial.loc[0, "end_seconds"] == 19.5


def test_grid_stops_when_its_grid_is_exhausted_with_workers() -> None:
    from hyperrecon.strategies import grid_axis

    a, b = np.meshgrid([0.0, 1.0], [0.0, 1.0], indexing="ij")
    frame = pd.DataFrame(
        {
            "lam1": a.ravel(),
            "lam2": b.ravel(),
            "step": 1,
            "train_seconds": [1.0, 2.0, 3.0, 4.0],
            "psnr": [1.0, 2.0, 3.0, 4.0],
        }
    )
    table = FidelityTable.from_frame(frame, ["psnr"], 2)
    t = search_fidelity(table, ["grid"], budget=10, seeds=[0], maximize=True, workers=4)
    axis = grid_axis(2, 10)  # 3 per axis: 9 points < budget 10
    asked = list(zip(t["suggested_lam1"], t["suggested_lam2"], strict=True))
    # every grid point; a worker that asks while the last points are still running repeats one (as a real
    # asynchronous GridSampler does), then the study stops
    assert set(asked) == {(x, y) for x in axis for y in axis} and 9 <= len(asked) <= 10
    one = search_fidelity(table, ["grid"], budget=10, seeds=[0], maximize=True, workers=1)
    assert len(one) == 9  # one worker: exactly the grid
    assert t["best_so_far"].iloc[-1] == 4.0


def test_samplers_and_pruners_by_optuna_class_name() -> None:
    t = search_fidelity(
        hand_table(),
        ["RandomSampler+ThresholdPruner"],
        budget=6,
        seeds=[1],
        maximize=True,
        pruner_params={"ThresholdPruner": {"lower": 2.5}},
    )
    # ThresholdPruner(lower=2.5) stops every trial whose value falls below 2.5 at a step before the last
    for _, r in t.iterrows():
        if r.lam1 == 0.5:
            assert r.state == "COMPLETE" and r.step == 9
        else:
            assert r.state == "PRUNED" and r.step == 1
    with pytest.raises(UnknownNameError, match="unknown pruner 'hyperbnd'.*did you mean 'hyperband'"):
        strategy_items(["tpe+hyperbnd"])
    with pytest.raises(ConfigError, match="has no parameter 'reduction'"):
        strategy_items(["tpe+hyperband"], pruner_params={"hyperband": {"reduction": 2}})


def test_fidelity_table_needs_every_step_of_every_baseline() -> None:
    frame = pd.DataFrame({"lam1": [0.0, 0.0, 1.0], "step": [1, 2, 2], "train_seconds": [1, 2, 2], "psnr": [1, 2, 3]})
    with pytest.raises(ConfigError, match=r"λ=\[1.0\] has no row for step 1"):
        FidelityTable.from_frame(frame, ["psnr"], 1)
    with pytest.raises(ConfigError, match="missing \\['hfen'\\]"):
        FidelityTable.from_frame(frame, ["psnr", "hfen"], 1)
    frame["train_seconds"] = [2, 1, 1]
    frame.loc[2, "step"] = 1
    frame = pd.concat([frame, frame.iloc[[2]].assign(step=2, train_seconds=2)])
    with pytest.raises(ConfigError, match="must not decrease"):
        FidelityTable.from_frame(frame, ["psnr"], 1)


def test_replays_are_deterministic_per_seed() -> None:
    a = search_fidelity(
        hand_table(), ["tpe+hyperband", "random+successive-halving"], budget=8, seeds=[3, 4], maximize=True, workers=4
    )
    b = search_fidelity(
        hand_table(), ["tpe+hyperband", "random+successive-halving"], budget=8, seeds=[3, 4], maximize=True, workers=4
    )
    pd.testing.assert_frame_equal(a, b)
    assert not math.isnan(a["best_so_far"].iloc[-1])


def test_training_probes_pause_the_clock_and_leave_training_unchanged() -> None:
    """The probe hook of the training loop: events at the probe steps (not at the last step) with the cost so
    far; evaluating the model there (as the fidelity recorder does, on a copy) changes nothing in training."""
    import copy

    import torch

    from hyperrecon.evaluation import EvalData
    from hyperrecon.losses import CompositeLoss
    from hyperrecon.models import UNet
    from hyperrecon.physics import Denoise
    from hyperrecon.samplers import FixedSampler
    from hyperrecon.search import make_model_objectives
    from hyperrecon.tasks import ReconTask
    from hyperrecon.training import TrainSettings, train

    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 1, 16, 16, generator=g)
    fm = Denoise((16, 16), sigma=0.1)
    y = fm.measure(x, generator=torch.Generator().manual_seed(1))
    task = ReconTask(fm.network_input(y), x, y, fm, CompositeLoss(["mae", "ssim"]))
    val = EvalData.from_arrays(x[:4, 0].numpy(), None, fm, generator_seed=2)
    settings = TrainSettings(steps=9, batch_size=4, seed=3, log_every=3)

    def fresh():
        torch.manual_seed(0)
        return UNet(in_channels=2, out_channels=1, width=4)

    plain = fresh()
    train(plain, task, FixedSampler([0.5]), settings)
    probed = fresh()
    events: list[tuple[int, float]] = []
    values: list[dict] = []

    def probe(event, info):
        if event == "probe":
            events.append((info["step"], info["cost"]["device_seconds"]))
            values.append(make_model_objectives(copy.deepcopy(probed), val, ["psnr", "hfen"])(None)[0])

    result = train(probed, task, FixedSampler([0.5]), settings, callbacks=[probe], probe_steps=[1, 3, 9])
    assert [s for s, _ in events] == [1, 3]  # the last step is the evaluation job's
    assert 0 < events[0][1] <= events[1][1] <= result.cost.device_seconds
    assert all(np.isfinite(list(v.values())).all() for v in values)
    for a, b in zip(plain.state_dict().values(), probed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_a_search_does_not_depend_on_the_run_it_belongs_to() -> None:
    # Hyperband assigns brackets by a hash of the study name: the run id stays out of the name the search runs
    # under, so an interrupted and resumed run (or another run) replays the same trials
    a = search_fidelity(
        hand_table(), ["random+hyperband", "tpe+hyperband"], budget=12, seeds=[0, 1], maximize=True, run_id="run-one"
    )
    b = search_fidelity(
        hand_table(),
        ["random+hyperband", "tpe+hyperband"],
        budget=12,
        seeds=[0, 1],
        maximize=True,
        run_id="another-run",
    )
    pd.testing.assert_frame_equal(a.drop(columns="study"), b.drop(columns="study"))
    assert a.study.str.contains("run-one").all() and b.study.str.contains("another-run").all()
