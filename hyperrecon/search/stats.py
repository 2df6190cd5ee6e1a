"""Searches as replicates: anytime curves with 95% confidence bands, rankings with a Friedman test, and the time
to reach a target, over the seeds of each (target, strategy).

Every function reads the trial table of :mod:`hyperrecon.search.core` (rows in finishing order per search).

- :func:`anytime`: per (target, strategy), a column (``best_so_far``, ``regret``, ``hypervolume``) as a step
  function of a time column (``cum_cost_seconds``: device time; ``end_seconds``: wall-clock time of a parallel
  search) on a common log-spaced time grid: mean over the seeds that have a value by then, and the 95% t-interval
  of that mean (``mean ± t(0.975, n-1) · sd / sqrt(n)``; no band for n < 2).
- :func:`rank_strategies`: per target, each seed's best-so-far of every strategy at the common device-time budget
  ``T`` (the smallest total cost of any of the target's searches, so every search has run at least that long),
  ranked across strategies within the seed (1 = best, ties averaged; a search with no finished trial by T ranks
  last). Average rank per strategy; the Friedman test over the seeds (``scipy.stats.friedmanchisquare``; three or
  more strategies); post hoc, each strategy against the best-ranked one with the Wilcoxon signed-rank test
  (``scipy.stats.wilcoxon``), p-values adjusted by Benjamini-Hochberg (``scipy.stats.false_discovery_control``).
- :func:`time_to_target`: per (target, strategy[, workers]) and seed, the first time the best-so-far reaches the
  target value (within ``eps``), its mean and 95% t-interval over the seeds that reach it (low end clipped at 0),
  and the fraction that do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError


def regret(best: np.ndarray | pd.Series, optimum: float, maximize: bool) -> np.ndarray:
    """Signed regret ``optimum - best`` (maximise) or ``best - optimum``: 0 at the optimum, > 0 worse."""
    b = np.asarray(best, dtype=np.float64)
    return optimum - b if maximize else b - optimum


def mean_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of the finite values: the t-interval of the mean (low = high = NaN for n < 2)."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    n = int(v.size)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    m = float(v.mean())
    if n < 2:
        return m, math.nan, math.nan, n
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * v.std(ddof=1) / math.sqrt(n))
    return m, m - half, m + half, n


def _step_values(times: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Value of a right-continuous step function (value ``values[i]`` from ``times[i]`` on) at each grid time;
    NaN before the first time."""
    idx = np.searchsorted(times, grid, side="right") - 1
    out = np.where(idx >= 0, values[np.clip(idx, 0, None)], np.nan)
    return out.astype(np.float64)


def time_grid(times: np.ndarray, n_points: int = 60) -> np.ndarray:
    """Log-spaced grid from the smallest to the largest positive time (linear when they span < 10x)."""
    t = np.asarray(times, dtype=np.float64)
    t = t[np.isfinite(t) & (t > 0)]
    if not t.size:
        return np.array([0.0])
    lo, hi = float(t.min()), float(t.max())
    if hi <= lo:
        return np.array([lo])
    return np.geomspace(lo, hi, n_points) if hi / lo >= 10 else np.linspace(lo, hi, n_points)


def anytime(
    trials: pd.DataFrame,
    value: str = "best_so_far",
    time: str = "cum_cost_seconds",
    *,
    group: Sequence[str] = ("target", "strategy"),
    n_points: int = 60,
) -> pd.DataFrame:
    """Rows ``*group, time, mean, low, high, n`` (module doc); one common time grid per target."""
    missing = [c for c in [*group, "seed", value, time] if c not in trials.columns]
    if missing:
        raise ConfigError(f"anytime curves: the trial table misses columns {missing}")
    out = []
    for _, sub in trials.groupby("target", sort=False):
        grid = time_grid(sub[time].to_numpy())
        for key, runs in sub.groupby(list(group), sort=False):
            per_seed = []
            for _, run in runs.groupby("seed", sort=False):
                run = run.sort_values(time, kind="stable")
                per_seed.append(_step_values(run[time].to_numpy(float), run[value].to_numpy(float), grid))
            arr = np.vstack(per_seed)
            for j, t in enumerate(grid):
                m, lo, hi, n = mean_ci(arr[:, j])
                out.append(
                    {
                        **dict(zip(group, key if isinstance(key, tuple) else (key,), strict=True)),
                        "time": float(t),
                        "mean": m,
                        "low": lo,
                        "high": hi,
                        "n": n,
                    }
                )
    return pd.DataFrame(out, columns=[*group, "time", "mean", "low", "high", "n"])


def best_at(run: pd.DataFrame, budget: float, time: str = "cum_cost_seconds") -> float:
    """The best-so-far of one search at time ``budget`` (NaN when nothing had finished by then)."""
    run = run.sort_values(time, kind="stable")
    done = run[run[time] <= budget + 1e-12 * max(1.0, abs(budget))]
    return float(done["best_so_far"].iloc[-1]) if len(done) else math.nan


def rank_strategies(trials: pd.DataFrame, *, maximize: bool, budget: float | None = None) -> pd.DataFrame:
    """One row per (target, strategy): ``budget_seconds`` (T), ``score_mean`` (best-so-far at T over seeds, NaN
    ignored), ``avg_rank``, ``n_seeds``, ``friedman_stat``, ``friedman_p`` (same on every row of a target; NaN
    with fewer than three strategies or two seeds), ``vs_best_p`` (BH-adjusted Wilcoxon p against the best
    average rank; NaN on that row)."""
    from scipy import stats

    out = []
    for target, sub in trials.groupby("target", sort=False):
        totals = sub.groupby(["strategy", "seed"])["cum_cost_seconds"].max()
        T = float(totals.min()) if budget is None else float(budget)
        scores = {(st, seed): best_at(run, T) for (st, seed), run in sub.groupby(["strategy", "seed"], sort=False)}
        strategies = list(dict.fromkeys(sub["strategy"]))
        table = pd.Series(scores).unstack(0).reindex(columns=strategies)
        # a missing score (no trial finished by T) is the worst; higher score first when maximising
        worst = -np.inf if maximize else np.inf
        filled = table.fillna(worst).to_numpy(float)
        ranks = stats.rankdata(-filled if maximize else filled, axis=1, method="average")
        avg = ranks.mean(axis=0) if len(ranks) else np.full(len(strategies), np.nan)
        f_stat = f_p = math.nan
        if len(strategies) >= 3 and len(ranks) >= 2 and np.ptp(ranks, axis=1).any():
            res = stats.friedmanchisquare(*[ranks[:, j] for j in range(len(strategies))])
            f_stat, f_p = float(res.statistic), float(res.pvalue)
        best = int(np.nanargmin(avg)) if len(ranks) else 0
        raw = {}
        for j, s in enumerate(strategies):
            if j == best or len(ranks) < 2:
                continue
            d = ranks[:, j] - ranks[:, best]
            raw[s] = 1.0 if not np.any(d) else float(stats.wilcoxon(ranks[:, j], ranks[:, best]).pvalue)
        adjusted = dict(zip(raw, stats.false_discovery_control(list(raw.values())), strict=True)) if raw else {}
        for j, s in enumerate(strategies):
            col = table[s].to_numpy(float) if len(table) else np.array([])
            out.append(
                {
                    "target": target,
                    "strategy": s,
                    "budget_seconds": T,
                    "score_mean": float(np.nanmean(col)) if np.isfinite(col).any() else math.nan,
                    "avg_rank": float(avg[j]),
                    "n_seeds": int(len(ranks)),
                    "friedman_stat": f_stat,
                    "friedman_p": f_p,
                    "vs_best_p": float(adjusted.get(s, math.nan)),
                    "best": j == best,
                }
            )
    return pd.DataFrame(out)


def _clip_low(ci: tuple[float, float, float, int]) -> tuple[float, float, float, int]:
    m, lo, hi, n = ci
    return m, (max(0.0, lo) if math.isfinite(lo) else lo), hi, n


def device_seconds_by(run: pd.DataFrame, t: float) -> float:
    """Device seconds a (parallel) search had consumed by wall-clock time ``t``: the overlap of every trial's
    ``[start_seconds, end_seconds]`` with ``[0, t]`` (with one worker: its cumulative cost)."""
    start = run["start_seconds"].to_numpy(float)
    end = run["end_seconds"].to_numpy(float)
    return float(np.clip(np.minimum(end, t) - start, 0.0, None).sum())


def time_to_target(
    trials: pd.DataFrame,
    target_value: float | dict[str, float],
    *,
    maximize: bool,
    eps: float = 0.0,
    group: Sequence[str] = ("target", "strategy"),
) -> pd.DataFrame:
    """Per ``group``: ``n_seeds``, ``frac_reached``, ``wall_mean/low/high`` (``end_seconds`` of the first trial
    whose best is within ``eps`` of the target value, over the seeds that reach it, 95% t-interval) and
    ``device_mean/low/high`` (device seconds consumed by then, :func:`device_seconds_by`)."""
    out = []
    for key, runs in trials.groupby(list(group), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        info = dict(zip(group, key, strict=True))
        goal = target_value[info["target"]] if isinstance(target_value, dict) else float(target_value)
        walls, devices, n = [], [], 0
        for _, run in runs.groupby("seed", sort=False):
            n += 1
            run = run.sort_values("end_seconds", kind="stable")
            gap = regret(run["best_so_far"].to_numpy(float), goal, maximize)
            hit = np.flatnonzero(gap <= eps)
            if hit.size:
                t = float(run["end_seconds"].iloc[hit[0]])
                walls.append(t)
                devices.append(device_seconds_by(run, t))
        # times are positive: a t-interval of a few seeds can reach below 0, so its low end is clipped at 0
        w, d = _clip_low(mean_ci(np.array(walls))), _clip_low(mean_ci(np.array(devices)))
        out.append(
            {
                **info,
                "n_seeds": n,
                "frac_reached": len(walls) / n if n else math.nan,
                "wall_mean": w[0],
                "wall_low": w[1],
                "wall_high": w[2],
                "device_mean": d[0],
                "device_low": d[1],
                "device_high": d[2],
            }
        )
    return pd.DataFrame(out)
