"""Search statistics against independent references: confidence intervals (scipy.stats.t.interval), the Friedman
test (scipy.stats.friedmanchisquare on hand-ranked data), Pareto fronts (brute force), hypervolume (Optuna's own
routine), time to target and anytime curves on hand-made runs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hyperrecon.search.multi import fronts, hypervolume_2d, losses, pareto_mask, pick_for, with_hypervolume
from hyperrecon.search.stats import anytime, device_seconds_by, mean_ci, rank_strategies, time_to_target


def test_mean_ci_is_the_t_interval() -> None:
    v = np.array([1.0, 2.0, 4.0, 7.0, np.nan])
    m, lo, hi, n = mean_ci(v)
    ref = stats.t.interval(0.95, 3, loc=3.5, scale=stats.sem([1.0, 2.0, 4.0, 7.0]))
    assert (m, n) == (3.5, 4) and (lo, hi) == pytest.approx(ref)
    assert math.isnan(mean_ci(np.array([2.0]))[1]) and mean_ci(np.array([]))[3] == 0


def _runs(spec: dict[str, list[list[tuple[float, float]]]]) -> pd.DataFrame:
    """strategy -> per seed a list of (cost, objective); one worker, every trial complete, maximise."""
    rows = []
    for strategy, seeds in spec.items():
        for seed, trials in enumerate(seeds):
            cum, best = 0.0, -np.inf
            for i, (cost, obj) in enumerate(trials):
                start = cum
                cum += cost
                best = max(best, obj)
                rows.append(
                    {
                        "target": "baselines",
                        "strategy": strategy,
                        "seed": seed,
                        "trial": i,
                        "objective": obj,
                        "cost_seconds": cost,
                        "cum_cost_seconds": cum,
                        "best_so_far": best,
                        "start_seconds": start,
                        "end_seconds": cum,
                        "state": "COMPLETE",
                    }
                )
    return pd.DataFrame(rows)


def test_anytime_curve_is_the_mean_of_step_functions_with_a_t_band() -> None:
    t = _runs({"a": [[(1, 1.0), (1, 3.0)], [(2, 2.0), (2, 2.5)], [(1, 0.0), (3, 4.0)]]})
    curve = anytime(t)
    g = curve.set_index("time")
    # grid from 1 to 4 s (linear: span < 10x); at t = 2: seeds have 3.0, 2.0, 0.0
    assert g.index.min() == 1.0 and g.index.max() == 4.0
    at2 = curve.iloc[np.argmin(np.abs(curve.time - 2.0))]
    assert at2.time == pytest.approx(2.0, abs=0.06)
    row = curve[curve.time >= 2.0].iloc[0]
    vals = [3.0, 2.0, 0.0] if row.time < 4.0 else [3.0, 2.5, 4.0]
    m, lo, hi, n = mean_ci(np.array(vals))
    assert (row["mean"], row["low"], row["high"], row["n"]) == pytest.approx((m, lo, hi, n))
    first = curve.iloc[0]  # t = 1: two seeds have a value, the second has none yet
    assert first.n == 2 and first["mean"] == pytest.approx(0.5)


def test_ranking_at_the_common_budget_with_friedman_and_post_hoc() -> None:
    # budget T = smallest total cost = 2 (strategy c). Best-so-far at T per seed:
    # a: 5, 6, 7, 8   b: 4, 5, 6, 7   c: 1, 2, 3, 9
    spec = {
        "a": [[(1, v), (5, 0.0)] for v in (5, 6, 7, 8)],
        "b": [[(2, v), (5, 100.0)] for v in (4, 5, 6, 7)],
        "c": [[(1, v), (1, 0.0)] for v in (1, 2, 3, 9)],
    }
    r = rank_strategies(_runs(spec), maximize=True).set_index("strategy")
    assert (r.budget_seconds == 2.0).all()
    # ranks per seed (1 = best): seeds 0-2: a 1, b 2, c 3; seed 3: c 1, a 2, b 3
    assert r.loc["a", "avg_rank"] == pytest.approx(1.25) and r.loc["b", "avg_rank"] == pytest.approx(2.25)
    assert r.loc["c", "avg_rank"] == pytest.approx(2.5)
    ref = stats.friedmanchisquare([5, 6, 7, 8], [4, 5, 6, 7], [1, 2, 3, 9])
    assert r.loc["a", "friedman_stat"] == pytest.approx(ref.statistic)
    assert r.loc["a", "friedman_p"] == pytest.approx(ref.pvalue)
    assert bool(r.loc["a", "best"]) and math.isnan(r.loc["a", "vs_best_p"])
    raw = [stats.wilcoxon([2, 2, 2, 3], [1, 1, 1, 2]).pvalue, stats.wilcoxon([3, 3, 3, 1], [1, 1, 1, 2]).pvalue]
    np.testing.assert_allclose(r.loc[["b", "c"], "vs_best_p"], stats.false_discovery_control(raw))
    assert r.loc["a", "score_mean"] == pytest.approx(6.5)
    # at the end (whatever each search cost): b's second trial (100) wins every seed
    end = rank_strategies(_runs(spec), maximize=True, budget=math.inf).set_index("strategy")
    assert end.avg_rank.to_dict() == pytest.approx({"a": 2.25, "b": 1.0, "c": 2.75})


def test_a_search_with_nothing_finished_by_the_budget_ranks_last() -> None:
    spec = {"fast": [[(1, 1.0)], [(1, 2.0)]], "slow": [[(5, 10.0)], [(5, 10.0)]]}
    r = rank_strategies(_runs(spec), maximize=True).set_index("strategy")
    assert r.loc["fast", "avg_rank"] == 1.0 and r.loc["slow", "avg_rank"] == 2.0
    assert math.isnan(r.loc["slow", "score_mean"]) and math.isnan(r.loc["fast", "friedman_p"])  # < 3 strategies


def test_time_to_target_wall_and_device_seconds() -> None:
    # two workers: trials [0, 4], [0, 2], [2, 5]; the target 3.0 is first reached by the trial ending at 4
    t = pd.DataFrame(
        {
            "target": "baselines",
            "strategy": "s",
            "seed": 0,
            "workers": 2,
            "start_seconds": [0.0, 0.0, 2.0],
            "end_seconds": [2.0, 4.0, 5.0],
            "best_so_far": [1.0, 3.0, 3.0],
        }
    )
    assert device_seconds_by(t, 4.0) == 2.0 + 4.0 + 2.0
    tt = time_to_target(t, 3.0, maximize=True, group=("target", "strategy", "workers")).iloc[0]
    assert (tt.wall_mean, tt.device_mean, tt.frac_reached) == (4.0, 8.0, 1.0)
    miss = time_to_target(t, 5.0, maximize=True).iloc[0]
    assert miss.frac_reached == 0.0 and math.isnan(miss.wall_mean)


def test_pareto_mask_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    pts = rng.integers(0, 5, size=(40, 2)).astype(float)
    pts[3] = np.nan
    mask = pareto_mask(pts)
    for i, p in enumerate(pts):
        if np.isnan(p).any():
            assert not mask[i]
            continue
        dominated = any(np.all(q <= p) and np.any(q < p) for q in pts if not np.isnan(q).any())
        assert mask[i] == (not dominated)


def test_hypervolume_matches_optuna() -> None:
    from optuna._hypervolume import compute_hypervolume

    rng = np.random.default_rng(1)
    for _ in range(20):
        pts = rng.random((15, 2))
        assert hypervolume_2d(pts, (1.1, 1.1)) == pytest.approx(compute_hypervolume(pts, np.array([1.1, 1.1])))
    assert hypervolume_2d(np.array([[0.5, 0.5]]), (1.0, 1.0)) == 0.25
    assert hypervolume_2d(np.array([[2.0, 0.0]]), (1.0, 1.0)) == 0.0  # beyond the reference point


def _mo_rows() -> pd.DataFrame:
    # psnr (max) and hfen (min) for three λ; λ = 0.5 dominates λ = 1.0
    vals = {0.0: (30.0, 0.30), 0.5: (32.0, 0.25), 1.0: (31.0, 0.28)}
    rows = []
    for i, lam in enumerate([0.0, 0.5, 1.0, 0.5]):
        p, h = vals[lam]
        rows.append(
            {
                "target": "baselines",
                "objectives": "psnr,hfen",
                "strategy": "nsga2",
                "seed": 0,
                "trial": i,
                "lam1": lam,
                "lam2": np.nan,
                "metric1": "psnr",
                "value1": p,
                "metric2": "hfen",
                "value2": h,
                "state": "COMPLETE",
                "cost_seconds": 1.0,
                "cum_cost_seconds": i + 1.0,
                "end_seconds": i + 1.0,
            }
        )
    return pd.DataFrame(rows)


def test_front_hypervolume_so_far_and_pick_for_a_downstream_metric() -> None:
    mx = {"psnr": True, "hfen": False, "dice": True}
    mo = with_hypervolume(_mo_rows(), mx)
    # normalised: psnr 30 -> 1, 32 -> 0; hfen 0.25 -> 0, 0.30 -> 1. After trial 0 (1, 1): nothing inside 1.1;
    # (1,1) adds 0.01; after trial 1 the point (0, 0) dominates everything: 1.1^2
    np.testing.assert_allclose(mo.hypervolume, [0.01, 1.21, 1.21, 1.21])
    f = fronts(_mo_rows(), mx)
    assert f.lam1.tolist() == [0.5]
    dice = _mo_rows().assign(objectives="psnr,dice", metric2="dice", value2=[0.9, 0.7, 0.8, 0.7])
    pick = pick_for(dice, "psnr", "dice", mx).iloc[0]
    assert (pick.lam1_for_quality, pick.lam1_for_downstream) == (0.5, 0.0)
    assert pick.downstream_gain == pytest.approx(0.2)
    assert losses(np.array([[1.0, 2.0]]), [True, False]).tolist() == [[-1.0, 2.0]]
