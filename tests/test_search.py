"""λ search: replay over a synthetic baseline grid with a known optimum, search over an analytic objective,
summaries checked by hand, and the model objective against the evaluation table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from hyperrecon.errors import ConfigError, UnknownNameError
from hyperrecon.evaluation import EvalData, evaluate_model
from hyperrecon.models import HyperUNet
from hyperrecon.physics import Denoise
from hyperrecon.search import TRIAL_COLUMNS, make_model_objective, search_model, search_replay, summarise

AXIS = np.linspace(0.0, 1.0, 10)
STEP = AXIS[1]
OPTIMUM_CELL = (AXIS[6], AXIS[2])  # nearest cell to (0.7, 0.2)


def _grid_table() -> pd.DataFrame:
    """10x10 trained grid: objective = -(λ1 - 0.7)² - (λ2 - 0.2)², training cost 1 + λ1 seconds."""
    a, b = np.meshgrid(AXIS, AXIS, indexing="ij")
    table = pd.DataFrame({"lam1": a.ravel(), "lam2": b.ravel()})
    table["objective"] = -((table.lam1 - 0.7) ** 2) - (table.lam2 - 0.2) ** 2
    table["cost_seconds"] = 1.0 + table.lam1
    return table


def _check_trials(trials: pd.DataFrame, maximize: bool) -> None:
    assert list(trials.columns) == TRIAL_COLUMNS
    for _, run in trials.groupby(["strategy", "seed"]):
        assert run["trial"].tolist() == list(range(len(run)))
        assert (np.diff(run["cum_cost_seconds"]) > 0).all()
        np.testing.assert_allclose(run["cum_cost_seconds"], run["cost_seconds"].cumsum())
        best = run["best_so_far"].to_numpy()
        assert (np.diff(best) >= 0).all() if maximize else (np.diff(best) <= 0).all()
        running = run["objective"].cummax() if maximize else run["objective"].cummin()
        np.testing.assert_allclose(best, running)


def _final_best(trials: pd.DataFrame) -> pd.DataFrame:
    return trials.sort_values("trial").groupby("seed").tail(1)


@pytest.mark.parametrize("strategy", ["grid", "random", "tpe", "qmc"])
def test_replay_finds_the_optimum_cell(strategy: str) -> None:
    trials = search_replay(_grid_table(), [strategy], budget=30, seeds=[0, 1, 2], n_lams=2, maximize=True)
    _check_trials(trials, maximize=True)
    assert trials["replay"].all() and (trials["target"] == "baselines").all()
    assert trials.groupby("seed").size().max() <= 30
    final = _final_best(trials)
    near = (np.abs(final["best_lam1"] - OPTIMUM_CELL[0]) <= STEP + 1e-9) & (
        np.abs(final["best_lam2"] - OPTIMUM_CELL[1]) <= STEP + 1e-9
    )
    assert near.sum() >= 2  # most seeds within one grid step (per axis) of the optimum cell


@pytest.mark.slow
def test_replay_gp_finds_the_optimum_cell() -> None:
    trials = search_replay(
        _grid_table(), {"gp": {"n_startup_trials": 4}}, budget=12, seeds=[0, 1, 2], n_lams=2, maximize=True
    )
    _check_trials(trials, maximize=True)
    final = _final_best(trials)
    near = (np.abs(final["best_lam1"] - OPTIMUM_CELL[0]) <= STEP + 1e-9) & (
        np.abs(final["best_lam2"] - OPTIMUM_CELL[1]) <= STEP + 1e-9
    )
    assert near.sum() >= 2


def test_gp_runs_quickly_on_a_small_budget() -> None:
    trials = search_replay(
        _grid_table(), {"gp": {"n_startup_trials": 2}}, budget=4, seeds=[0], n_lams=2, maximize=False
    )
    assert len(trials) == 4
    _check_trials(trials, maximize=False)


def test_replay_maps_to_the_nearest_cell_and_is_deterministic() -> None:
    table = _grid_table()
    trials = search_replay(table, ["random", "tpe"], budget=12, seeds=[3], n_lams=2, maximize=True)
    cells = table[["lam1", "lam2"]].to_numpy()
    for _, row in trials.iterrows():
        d = ((cells - [row.suggested_lam1, row.suggested_lam2]) ** 2).sum(1)
        i = int(np.argmin(d))
        assert (row.lam1, row.lam2) == tuple(cells[i])
        assert row.objective == table.objective[i] and row.cost_seconds == table.cost_seconds[i]
    again = search_replay(table, ["random", "tpe"], budget=12, seeds=[3], n_lams=2, maximize=True)
    pd.testing.assert_frame_equal(trials, again)


def test_replay_one_hyperparameter_and_minimise() -> None:
    table = pd.DataFrame({"lam1": [0.0, 0.25, 0.5, 0.75, 1.0], "objective": [5.0, 3.0, 1.0, 2.0, 4.0]})
    table["cost_seconds"] = 2.0
    trials = search_replay(table, ["grid"], budget=5, seeds=[0], n_lams=1, maximize=False)
    _check_trials(trials, maximize=False)
    assert sorted(trials["lam1"]) == [0.0, 0.25, 0.5, 0.75, 1.0]  # the 5-point grid visits every cell once
    assert trials["lam2"].isna().all() and trials["best_lam2"].isna().all()
    assert trials["best_so_far"].iloc[-1] == 1.0 and trials["best_lam1"].iloc[-1] == 0.5
    assert trials["cum_cost_seconds"].iloc[-1] == 10.0


def test_search_model_on_an_analytic_objective() -> None:
    seen: list[float] = []

    def objective(lam: np.ndarray) -> tuple[float, float]:
        seen.append(float(lam[0]))
        return -((lam[0] - 0.3) ** 2), 0.5

    trials = search_model(
        objective, ["tpe", "random"], budget=20, seeds=[0, 1], n_lams=1, maximize=True, target="hyper-S"
    )
    _check_trials(trials, maximize=True)
    assert len(trials) == len(seen) == 80
    assert (~trials["replay"]).all() and (trials["target"] == "hyper-S").all()
    np.testing.assert_array_equal(trials["lam1"], trials["suggested_lam1"])
    np.testing.assert_allclose(trials["objective"], -((trials["lam1"] - 0.3) ** 2))
    np.testing.assert_allclose(trials["cum_cost_seconds"], 0.5 * (trials["trial"] + 1))
    final = _final_best(trials[trials.strategy == "tpe"])
    assert (np.abs(final["best_lam1"] - 0.3) < 0.1).all()


def test_failed_evaluations_never_become_the_best() -> None:
    def objective(lam: np.ndarray) -> tuple[float, float]:
        return (math.nan if lam[0] > 0.5 else float(lam[0])), 1.0

    trials = search_model(objective, ["random"], budget=15, seeds=[0], n_lams=1, maximize=True, target="m")
    assert len(trials) == 15 and trials["objective"].isna().any()
    finite = trials["objective"].fillna(-np.inf).cummax().replace(-np.inf, np.nan)
    np.testing.assert_allclose(trials["best_so_far"], finite)


def test_bad_arguments_raise_project_errors() -> None:
    table = _grid_table()
    with pytest.raises(UnknownNameError, match="tpee"):
        search_replay(table, ["tpee"], budget=5, seeds=[0], n_lams=2, maximize=True)
    with pytest.raises(ConfigError, match="budget"):
        search_replay(table, ["random"], budget=0, seeds=[0], n_lams=2, maximize=True)
    with pytest.raises(ConfigError, match="seed"):
        search_replay(table, ["random"], budget=5, seeds=[], n_lams=2, maximize=True)
    with pytest.raises(ConfigError, match="cost_seconds"):
        search_replay(table.drop(columns="cost_seconds"), ["random"], budget=5, seeds=[0], n_lams=2, maximize=True)
    with pytest.raises(ConfigError, match="no parameter"):
        search_replay(table, {"tpe": {"n_startup": 3}}, budget=5, seeds=[0], n_lams=2, maximize=True)


# ---------------------------------------------------------------------------------------------------- summarise


def _hand_trials() -> pd.DataFrame:
    """Two seeds of 3 trials on a model target and one replayed baseline run (maximise, optimum 1.0)."""
    rows = []

    def run(target: str, seed: int, objectives: list[float], lams: list[float], costs: list[float], replay: bool):
        best, best_lam, cum = -np.inf, np.nan, 0.0
        for t, (v, lam, c) in enumerate(zip(objectives, lams, costs, strict=True)):
            cum += c
            if v > best:
                best, best_lam = v, lam
            rows.append(
                {
                    "target": target,
                    "strategy": "tpe",
                    "seed": seed,
                    "trial": t,
                    "lam1": lam,
                    "lam2": np.nan,
                    "objective": v,
                    "cost_seconds": c,
                    "cum_cost_seconds": cum,
                    "best_so_far": best,
                    "best_lam1": best_lam,
                    "best_lam2": np.nan,
                    "replay": replay,
                    "suggested_lam1": lam,
                    "suggested_lam2": np.nan,
                }
            )

    run("hyper", 0, [0.5, 0.95, 0.9], [0.1, 0.4, 0.6], [1.0, 1.0, 1.0], False)  # best 0.95 at 0.4, within at t=2
    run("hyper", 1, [0.2, 0.3, 1.0], [0.9, 0.8, 0.5], [2.0, 2.0, 2.0], False)  # best 1.0 at 0.5, within at t=3
    run("hyper", 2, [0.8, 0.7, 0.6], [0.2, 0.3, 0.1], [1.0, 1.0, 1.0], False)  # best 0.8 at 0.2, never within
    run("baselines", 0, [0.6, 1.0], [0.25, 0.5], [10.0, 20.0], True)
    return pd.DataFrame(rows, columns=TRIAL_COLUMNS)


def test_summarise_arithmetic_by_hand() -> None:
    summary = summarise(
        _hand_trials(),
        grid_optimum=1.0,
        maximize=True,
        test_metric_fn=lambda target, lam: 10.0 * lam[0],
        training_cost={"hyper": 100.0},
        eps=0.1,
    ).set_index("target")
    hyper, base = summary.loc["hyper"], summary.loc["baselines"]
    bests = np.array([0.95, 1.0, 0.8])
    assert hyper["n_seeds"] == 3 and hyper["n_trials"] == 3
    assert hyper["best_mean"] == pytest.approx(bests.mean())
    assert hyper["best_std"] == pytest.approx(np.std(bests, ddof=1))
    assert hyper["regret_mean"] == pytest.approx(np.mean(1.0 - bests))
    assert hyper["abs_regret_mean"] == pytest.approx(np.mean(1.0 - bests))
    # seeds ranked 1.0 (seed 1), 0.95 (seed 0), 0.8 (seed 2): the median is seed 0 with λ = 0.4
    assert hyper["chosen_seed"] == 0 and hyper["chosen_lam1"] == 0.4 and np.isnan(hyper["chosen_lam2"])
    assert hyper["test_metric"] == pytest.approx(4.0)
    assert hyper["search_cost_mean"] == pytest.approx((3 + 6 + 3) / 3)
    assert hyper["total_cost_mean"] == pytest.approx(100 + 4)
    assert np.isnan(hyper["trials_to_within_mean"])  # seed 2 never gets within 0.1
    assert hyper["frac_within"] == pytest.approx(2 / 3)
    assert np.isnan(hyper["cost_to_within_mean"])
    # replayed baselines: regret 0 when the optimum is hit, total cost = the replayed trainings
    assert base["regret_mean"] == 0.0 and base["abs_regret_mean"] == 0.0 and np.isnan(base["best_std"])
    assert base["trials_to_within_mean"] == 2 and base["cost_to_within_mean"] == 30.0
    assert base["search_cost_mean"] == 30.0 and base["total_cost_mean"] == 30.0
    assert base["chosen_lam1"] == 0.5 and base["test_metric"] == pytest.approx(5.0)

    two = summarise(
        _hand_trials().query("seed != 2"),
        grid_optimum={"hyper": 1.0, "baselines": 1.2},
        maximize=True,
        test_metric_fn=None,
        training_cost={},
        eps=0.1,
    ).set_index("target")
    assert two.loc["hyper", "trials_to_within_mean"] == pytest.approx((2 + 3) / 2)
    assert two.loc["hyper", "cost_to_within_mean"] == pytest.approx((2.0 + 6.0) / 2)
    assert np.isnan(two.loc["hyper", "total_cost_mean"]) and np.isnan(two.loc["hyper", "test_metric"])
    assert two.loc["baselines", "regret_mean"] == pytest.approx(0.2)


def test_summarise_minimise_sign_convention() -> None:
    trials = search_model(
        lambda lam: ((lam[0] - 0.3) ** 2, 1.0), ["grid"], budget=3, seeds=[0], n_lams=1, maximize=False, target="m"
    )  # grid 0, 0.5, 1: best 0.04 at λ = 0.5
    row = summarise(trials, grid_optimum=0.0, maximize=False, test_metric_fn=None, training_cost={"m": 5.0}).iloc[0]
    assert row["regret_mean"] == pytest.approx(0.04) and row["chosen_lam1"] == 0.5
    assert row["total_cost_mean"] == pytest.approx(5.0 + 3.0)
    better = summarise(trials, grid_optimum=0.1, maximize=False, test_metric_fn=None, training_cost={}).iloc[0]
    assert better["regret_mean"] == pytest.approx(-0.06) and better["abs_regret_mean"] == pytest.approx(0.06)


# ---------------------------------------------------------------------------------------------------- model objective


def test_model_objective_matches_the_evaluation_table() -> None:
    rng = np.random.default_rng(0)
    data = EvalData.from_arrays(rng.random((3, 16, 16)).astype(np.float32), None, Denoise((16, 16)), generator_seed=0)
    torch.manual_seed(0)
    model = HyperUNet(n_lams=1, hnet_width=2, width=4)
    objective = make_model_objective(model, data, "mae", batch_size=2)
    value, seconds = objective(np.array([0.4]))
    table = evaluate_model(model, "h", data, np.array([[0.4]]), ["mae"]).table
    assert value == pytest.approx(table["value"].mean(), rel=1e-6)
    assert seconds >= 0.0
    with pytest.raises(ConfigError, match="dice"):
        make_model_objective(model, data, "dice")
