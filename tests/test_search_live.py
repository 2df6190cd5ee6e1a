"""Live search (hyperrecon.search.live): trials that train and report to the pruner, in a real Optuna journal
storage. The arithmetic of steps and device seconds on a hand-made trainer, resume after a killed trial, the
studies in Optuna's visualisation, and a sampler and pruner from a user plugin module with settings from the study
file."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import matplotlib
import optuna
import pandas as pd
import pytest

from hyperrecon.config import load_study
from hyperrecon.resolve import resolve
from hyperrecon.search import FidelityTable, fidelity_steps, search_fidelity
from hyperrecon.search.live import LIVE_TARGET, search_live
from hyperrecon.search.plan import live_budget, live_steps, search_seeds
from hyperrecon.storage import open_storage

matplotlib.use("Agg")

PLUGIN = '''
import optuna

from hyperrecon.strategies import PRUNERS, STRATEGIES


class SequenceSampler(optuna.samplers.BaseSampler):
    """Trial n gets λ = seq[n] (any BaseSampler is a strategy)."""

    def __init__(self, seq):
        self.seq = list(seq)

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.seq[trial.number % len(self.seq)]


class BelowPruner(optuna.pruners.BasePruner):
    """Prune a trial whose last reported value is below ``floor`` (any BasePruner is a pruner)."""

    def __init__(self, floor):
        self.floor = floor

    def prune(self, study, trial):
        step = trial.last_step
        return step is not None and trial.intermediate_values[step] < self.floor


@STRATEGIES.register("lab-sequence", description="a user's fixed λ sequence")
def lab_sequence(n_lams, budget, seed, seq=(0.5, 0.0, 1.0)):
    return SequenceSampler(seq)


@PRUNERS.register("lab-below", description="a user's floor pruner")
def lab_below(steps, reduction_factor, budget, seed, floor=0.0):
    return BelowPruner(floor)
'''


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch):
    """The user plugin module ``lab_search`` on the path (removed from the registries afterwards)."""
    from hyperrecon.strategies import PRUNERS, STRATEGIES

    (tmp_path / "lab_search.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "lab_search"
    STRATEGIES._items.pop("lab-sequence", None)
    PRUNERS._items.pop("lab-below", None)
    sys.modules.pop("lab_search", None)


# Hand-made trainer: objective(λ, step) = 10 λ + step / 9; 1 s of training per step, 0.5 s per validation pass.
STEPS = [1, 3, 9]


def value(lam: float, step: int) -> float:
    return 10.0 * lam + step / 9.0


class HandTrainer:
    """``train_trial`` of a live search without torch: reports ``value`` after each report step. ``kill_on``:
    the trial (0-based call count) that dies mid-training (an exception, as a killed process leaves it)."""

    def __init__(self, kill_on: int | None = None) -> None:
        self.calls: list[tuple[float, list[int]]] = []
        self.kill_on = kill_on

    def __call__(self, lam, report_steps, report) -> None:
        self.calls.append((float(lam[0]), []))
        if self.kill_on is not None and len(self.calls) - 1 == self.kill_on:
            raise KeyboardInterrupt
        prev = 0
        for step in report_steps:
            self.calls[-1][1].append(step)
            if report(step, value(float(lam[0]), step), float(step - prev), 0.5):
                return
            prev = step


def storage(tmp_path: Path):
    return open_storage(str(tmp_path / "ledger.journal"))


def live(tmp_path: Path, trainer, strategy: str, *, budget: int = 3, **kw):
    return search_live(
        trainer,
        [strategy],
        storage=storage(tmp_path),
        budget=budget,
        seeds=[0],
        n_lams=1,
        maximize=True,
        fidelity_steps=STEPS,
        metric="psnr",
        run_id="run1",
        **kw,
    )


def test_pruned_trials_pay_the_steps_they_trained(tmp_path: Path, plugin: str) -> None:
    __import__(plugin)
    trainer = HandTrainer()
    t = live(tmp_path, trainer, "lab-sequence+lab-below", pruner_params={"lab-below": {"floor": 4.0}})
    # λ = 0.5 trains to the end; λ = 0 is below the floor at its first report (step 1); λ = 1 trains to the end.
    assert [c[0] for c in trainer.calls] == [0.5, 0.0, 1.0]
    assert [c[1] for c in trainer.calls] == [[1, 3, 9], [1], [1, 3, 9]]
    assert t["state"].tolist() == ["COMPLETE", "PRUNED", "COMPLETE"]
    assert t["step"].tolist() == [9, 1, 9]
    # cost: training seconds to the step reached + 0.5 s per validation pass made
    assert t["cost_seconds"].tolist() == [9 + 1.5, 1 + 0.5, 9 + 1.5]
    # without early stopping: full training + one validation pass; the pruned trial's extrapolated 1 s/step x 9
    assert t["full_cost_seconds"].tolist() == [9.5, 9.5, 9.5]
    assert t["objective"].tolist() == pytest.approx([5 + 1, 0 + 1 / 9, 10 + 1])
    assert t["best_so_far"].tolist() == pytest.approx([6, 6, 11])
    assert t["cum_cost_seconds"].tolist() == [10.5, 12.0, 22.5]
    assert t["end_seconds"].tolist() == [10.5, 12.0, 22.5]
    assert set(t["mode"]) == {"live"} and not t["replay"].any() and set(t["target"]) == {LIVE_TARGET}
    # the study in the storage holds the same: reported values per step, device seconds as user attributes
    study = optuna.load_study(study_name=t["study"].iloc[0], storage=storage(tmp_path))
    assert study.study_name == "hrbench-search:run1:baselines-live:lab-sequence+lab-below:seed=0"
    trials = study.get_trials()
    assert [tr.intermediate_values for tr in trials] == [
        {s: pytest.approx(value(lam, s)) for s in steps} for lam, steps in ((0.5, STEPS), (0.0, [1]), (1.0, STEPS))
    ]
    assert [tr.user_attrs["cost_seconds"] for tr in trials] == [10.5, 1.5, 10.5]
    assert [tr.user_attrs["train_seconds"] for tr in trials] == [9.0, 1.0, 9.0]
    assert study.user_attrs["mode"] == "live" and study.user_attrs["pruner_params"] == {"floor": 4.0}


def test_without_a_pruner_a_trial_reports_once_at_the_end(tmp_path: Path, plugin: str) -> None:
    __import__(plugin)
    trainer = HandTrainer()
    t = live(tmp_path, trainer, "lab-sequence")
    assert [c[1] for c in trainer.calls] == [[9], [9], [9]]
    assert t["cost_seconds"].tolist() == t["full_cost_seconds"].tolist() == [9.5, 9.5, 9.5]
    assert t["state"].tolist() == ["COMPLETE"] * 3


def test_a_killed_search_resumes_from_its_storage(tmp_path: Path, plugin: str) -> None:
    __import__(plugin)
    with pytest.raises(KeyboardInterrupt):
        live(tmp_path, HandTrainer(kill_on=1), "lab-sequence+lab-below", pruner_params={"lab-below": {"floor": 4.0}})
    name = "hrbench-search:run1:baselines-live:lab-sequence+lab-below:seed=0"
    before = optuna.load_study(study_name=name, storage=storage(tmp_path)).get_trials()
    assert [tr.state.name for tr in before] == ["COMPLETE", "RUNNING"]
    trainer = HandTrainer()
    t = live(tmp_path, trainer, "lab-sequence+lab-below", pruner_params={"lab-below": {"floor": 4.0}})
    # the killed trial's λ (0.0) is trained again first, then the search goes on to its budget of 3
    assert trainer.calls[0][0] == 0.0 and len(trainer.calls) == 2
    trials = optuna.load_study(study_name=name, storage=storage(tmp_path)).get_trials()
    assert [tr.state.name for tr in trials] == ["COMPLETE", "FAIL", "PRUNED", "COMPLETE"]
    assert trials[1].user_attrs["killed"] is True
    assert t["trial"].tolist() == [0, 2, 3] and t["state"].tolist() == ["COMPLETE", "PRUNED", "COMPLETE"]
    assert t["lam1"].tolist()[:2] == [0.5, 0.0]
    # the clock goes on from the trials finished before the kill
    assert t["start_seconds"].tolist()[:2] == [0.0, 10.5] and t["cum_cost_seconds"].iloc[1] == 12.0
    # a finished search opened again trains nothing
    again = HandTrainer()
    assert live(tmp_path, again, "lab-sequence+lab-below", pruner_params={"lab-below": {"floor": 4.0}}).equals(t)
    assert again.calls == []


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_live_studies_open_in_optuna_visualisation(tmp_path: Path) -> None:
    from optuna.visualization import matplotlib as ovm

    t = live(tmp_path, HandTrainer(), "random+successive-halving", budget=6)
    assert set(t["state"]) <= {"COMPLETE", "PRUNED"} and "PRUNED" in set(t["state"])
    study = optuna.load_study(study_name=t["study"].iloc[0], storage=storage(tmp_path))
    assert len(study.trials) == 6
    for plot in (ovm.plot_optimization_history, ovm.plot_intermediate_values, ovm.plot_slice):
        ax = plot(study)
        assert ax.has_data() or len(ax.get_lines()) or len(ax.collections)
    matplotlib.pyplot.close("all")


def test_successive_halving_prunes_against_earlier_trials(tmp_path: Path, plugin: str) -> None:
    """Rung arithmetic (η = 3, min_resource 1): a trial stops at a rung unless it is in the top 1/3 of the values
    reported there so far. λ sequence 0.5, 0.9, 0.1, 1.0: 0.9 beats 0.5 at rung 0 and rung 1; 0.1 is below both
    at rung 0; 1.0 is the best at every rung."""
    __import__(plugin)
    trainer = HandTrainer()
    t = live(
        tmp_path,
        trainer,
        "lab-sequence+successive-halving",
        budget=4,
        strategy_params={"lab-sequence": {"seq": [0.5, 0.9, 0.1, 1.0]}},
    )
    # trial 0: alone at each rung, promoted (top 1/3 of one value); trial 1 best at rungs 0 and 1
    assert [c[1] for c in trainer.calls] == [[1, 3, 9], [1, 3, 9], [1], [1, 3, 9]]
    assert t["state"].tolist() == ["COMPLETE", "COMPLETE", "PRUNED", "COMPLETE"]
    assert t["cost_seconds"].sum() == 3 * (9 + 1.5) + (1 + 0.5)


def test_live_settings_from_the_study_file(tmp_path: Path, plugin: str) -> None:
    src = Path(load_study("sl-knee-cs").source_file).read_text()
    src = src.replace(
        "[search]\n",
        "[search]\nlive = { strategies = ['lab-sequence+lab-below'], steps = 27, budget = 2, seeds = 2 }\n"
        "strategy_params = { lab-sequence = { seq = [0.25, 0.75] } }\n"
        "pruner_params = { lab-below = { floor = 3.0 } }\n",
        1,
    )
    path = tmp_path / "study.toml"
    path.write_text(_plugins_first(src, plugin))
    s = load_study(str(path), "quick")  # (the smoke profile sets its own search.live)
    info = resolve(s)["search"]  # imports the plugin module beside the study file, then checks
    assert info["live"] == {"strategies": ["lab-sequence+lab-below"], "steps": 27, "budget": 2}
    assert live_steps(s) == 27 and live_budget(s) == 2 and search_seeds(s, live=True) == [s.seed, s.seed + 1]
    trainer = HandTrainer()
    t = search_live(
        trainer,
        list(s.search.live.strategies),
        storage=storage(tmp_path),
        budget=live_budget(s),
        seeds=[0],
        n_lams=1,
        maximize=True,
        fidelity_steps=fidelity_steps(live_steps(s), 3, 3),
        strategy_params=s.search.strategy_params,
        pruner_params=s.search.pruner_params,
    )
    # the user's sampler gave its λ sequence, the user's pruner its floor (10 λ + step / 27 < 3 for λ = 0.25)
    assert t["lam1"].tolist() == [0.25, 0.75]
    assert t["state"].tolist() == ["PRUNED", "COMPLETE"]
    assert not math.isnan(t["objective"].iloc[0])
    # the same plugin strategy replays a fidelity table (λ 0.25 -> cell 0, 0.75 -> cell 1; cell 0 below the floor)
    frame = pd.DataFrame(
        [
            {"lam1": lam, "step": step, "train_seconds": step * 1.0, "eval_seconds": 0.5, "psnr": psnr}
            for lam, values in ((0.0, (1.0, 2.0)), (1.0, (5.0, 6.0)))
            for step, psnr in zip((3, 27), values, strict=True)
        ]
    )
    rep = search_fidelity(
        FidelityTable.from_frame(frame, ["psnr"], 1),
        list(s.search.live.strategies),
        budget=2,
        seeds=[0],
        maximize=True,
        strategy_params=s.search.strategy_params,
        pruner_params=s.search.pruner_params,
    )
    assert rep["lam1"].tolist() == [0.0, 1.0] and rep["state"].tolist() == ["PRUNED", "COMPLETE"]
    assert rep["cost_seconds"].tolist() == [3.5, 28.0]


def _plugins_first(src: str, plugin: str) -> str:
    """Put ``plugins = [...]`` among the top keys (before the first table)."""
    lines = [ln for ln in src.splitlines() if not ln.startswith("plugins = ")]
    first = next(i for i, ln in enumerate(lines) if ln.startswith("["))
    return "\n".join([*lines[:first], f'plugins = ["{plugin}"]', *lines[first:]]) + "\n"


def test_live_strategies_are_checked_before_a_run(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hyperrecon.cli import app

    result = CliRunner().invoke(
        app,
        ["validate", "--study", "sl-knee-cs", "--profile", "smoke", "--set", 'search.live.strategies=["tpe+hyprband"]'],
    )
    assert result.exit_code == 2, result.output
    errors = [ln for ln in result.output.splitlines() if "error:" in ln]
    assert len(errors) == 1 and "live.strategies" in errors[0] and "hyperband" in errors[0], result.output


def test_the_run_estimate_counts_live_trials_as_trainings() -> None:
    from hyperrecon.estimate import Calibration, estimate
    from hyperrecon.jobs import study_jobs

    s = load_study(
        "sl-knee-cs",
        "quick",
        ['search.live={strategies=["tpe", "random+median"], steps=90, budget=4, seeds=2}', "search.fidelities=3"],
    )
    job = next(j for j in study_jobs(s, has_labels=True) if j.name == "search-live")
    cal = Calibration(
        train_s={"unet": 0.1}, eval_s={}, val_s={"unet": 0.01}, test_s={}, trial_s=0.02, search_once_s=0, data_s=0
    )
    got = {r["name"]: r["seconds"] for r in estimate(s, [job], cal).jobs}
    # 2 strategies x 4 trials x 2 seeds = 16 trials of 90 steps (0.1 s each), each with at most 3 validation
    # passes (fidelity steps 10, 30, 90) and the sampler's own 0.02 s
    assert got["search-live"] == pytest.approx(16 * 90 * 0.1 + 16 * (0.02 + 3 * 0.01))
