"""Multi-objective λ search: (reconstruction quality, HFEN) and (quality, downstream Dice) at once.

Searches use Optuna's multi-objective samplers (``nsga2``, ``tpe``, ``random`` ...), over the baselines (replayed
at full fidelity from the fidelity table: Optuna's pruners do not stop multi-objective trials) and over each
λ-conditioned model (one validation pass per trial, all metrics at once). Rows (:data:`MO_COLUMNS`), in the order
the trials finished: ``target, objectives`` (``"psnr,hfen"``), ``strategy, seed, trial, lam1, lam2, metric1,
value1, metric2, value2, state, cost_seconds, cum_cost_seconds, end_seconds, study``.

:func:`pareto_mask` and :func:`hypervolume_2d` work on losses (every objective minimised: maximised metrics are
negated by :func:`losses`); :func:`with_hypervolume` adds the hypervolume of the front found so far, in
objectives normalised to [0, 1] over all rows of the pair (0 = best, 1 = worst value seen) with the reference
point (1.1, 1.1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .core import _quiet_optuna
from .engine import Outcome, check_run, run_study, strategy_items
from .fidelity import FidelityTable
from .studies import MEMORY_RUN, study_name

MO_COLUMNS = [
    "target",
    "objectives",
    "strategy",
    "seed",
    "trial",
    "lam1",
    "lam2",
    "metric1",
    "value1",
    "metric2",
    "value2",
    "state",
    "cost_seconds",
    "cum_cost_seconds",
    "end_seconds",
    "study",
]
HV_REFERENCE = 1.1


def search_multi(
    evaluate: Callable[[np.ndarray], tuple[Sequence[float], float, np.ndarray]],
    metrics: Sequence[str],
    maximize: Sequence[bool],
    strategies: Sequence[str] | Mapping[str, Mapping[str, Any]],
    *,
    budget: int,
    seeds: Sequence[int],
    n_lams: int,
    target: str,
    strategy_params: Mapping[str, Mapping[str, Any]] | None = None,
    run_id: str = "local",
    studies_out: list | None = None,
) -> pd.DataFrame:
    """Multi-objective searches: ``evaluate(λ) -> (values (M,), device seconds, λ evaluated)``; M = 2."""
    metrics = list(metrics)
    if len(metrics) != 2 or len(maximize) != 2:
        raise ConfigError(f"multi-objective search: expected two objectives, got {metrics}")
    items = strategy_items(
        [s.partition("+")[0] for s in strategies] if not isinstance(strategies, Mapping) else strategies,
        strategy_params,
        where="search mo_strategies",
    )
    seeds = check_run(budget, seeds, n_lams)
    directions: list[Literal["minimize", "maximize"]] = ["maximize" if m else "minimize" for m in maximize]

    def outcome(lam: np.ndarray, multi: bool) -> Outcome:
        values, seconds, used = evaluate(lam)
        return Outcome(
            np.asarray(used, dtype=np.float64),
            np.array([1]),
            np.array([list(values)], dtype=float),
            np.array([float(seconds)]),
            float(seconds),
        )

    rows: list[dict[str, Any]] = []
    with _quiet_optuna():
        for st in items:
            for seed in seeds:
                name = study_name(run_id, target, st.name, seed, objectives=metrics)
                memory = study_name(MEMORY_RUN, target, st.name, seed, objectives=metrics)  # run-independent
                attrs = {
                    "hrbench_role": "search",
                    "run_id": run_id,
                    "target": target,
                    "strategy": st.name,
                    "sampler": st.sampler,
                    "pruner": "none",
                    "seed": seed,
                    "workers": 1,
                    "objectives": metrics,
                    "directions": directions,
                    "sampler_params": st.sampler_params,
                }
                run, study = run_study(
                    outcome,
                    st,
                    seed=seed,
                    n_lams=n_lams,
                    budget=int(budget),
                    directions=directions,
                    study_name=memory,
                    user_attrs=attrs,
                )
                study.set_metric_names(metrics)
                if studies_out is not None:
                    studies_out.append((study, name))
                cum = 0.0
                for r in run:
                    cum += r["cost_seconds"]
                    rows.append(
                        {
                            "target": target,
                            "objectives": ",".join(metrics),
                            "strategy": st.name,
                            "seed": seed,
                            "trial": r["trial"],
                            "lam1": r["lam1"],
                            "lam2": r["lam2"],
                            "metric1": metrics[0],
                            "value1": r["values"][0],
                            "metric2": metrics[1],
                            "value2": r["values"][1],
                            "state": r["state"],
                            "cost_seconds": r["cost_seconds"],
                            "cum_cost_seconds": cum,
                            "end_seconds": r["end_seconds"],
                            "study": name,
                        }
                    )
    return pd.DataFrame(rows, columns=MO_COLUMNS)


def replay_evaluator(table: FidelityTable, metrics: Sequence[str]):
    """``evaluate(λ)`` for :func:`search_multi` over baselines: the nearest cell's fully trained values, at the
    cost of its full training plus the final validation pass."""
    idx = [table.metric_index(m) for m in metrics]

    def evaluate(lam: np.ndarray) -> tuple[list[float], float, np.ndarray]:
        i = table.nearest(lam)
        return (
            [float(table.values[i, -1, j]) for j in idx],
            float(table.train_seconds[i, -1] + table.eval_seconds[i, -1]),
            table.cells[i],
        )

    return evaluate


def model_evaluator(objectives_fn: Callable, metrics: Sequence[str]):
    """``evaluate(λ)`` for :func:`search_multi` over a λ-conditioned model from
    :func:`hyperrecon.search.make_model_objectives`."""

    def evaluate(lam: np.ndarray) -> tuple[list[float], float, np.ndarray]:
        values, seconds = objectives_fn(lam)
        return [float(values[m]) for m in metrics], float(seconds), lam

    return evaluate


# ----------------------------------------------------------------------------------------------------------------
# fronts and hypervolume


def losses(values: np.ndarray, maximize: Sequence[bool]) -> np.ndarray:
    """(n, M) values -> (n, M) losses (maximised objectives negated)."""
    sign = np.array([-1.0 if m else 1.0 for m in maximize])
    return np.asarray(values, dtype=np.float64) * sign[None, :]


def pareto_mask(loss: np.ndarray) -> np.ndarray:
    """(n,) True for the non-dominated rows of (n, M) losses (rows with a NaN are never on the front; of equal
    rows, each is kept)."""
    loss = np.asarray(loss, dtype=np.float64)
    ok = np.all(np.isfinite(loss), axis=1)
    mask = np.zeros(len(loss), dtype=bool)
    pts = loss[ok]
    if len(pts):
        le = np.all(pts[:, None, :] <= pts[None, :, :], axis=2)  # le[j, i]: j <= i everywhere
        lt = np.any(pts[:, None, :] < pts[None, :, :], axis=2)
        dominated = np.any(le & lt, axis=0)
        mask[np.flatnonzero(ok)] = ~dominated
    return mask


def hypervolume_2d(loss: np.ndarray, reference: Sequence[float]) -> float:
    """Area dominated by (n, 2) losses and bounded by ``reference`` (points beyond it add nothing)."""
    loss = np.asarray(loss, dtype=np.float64).reshape(-1, 2)
    ref = np.asarray(reference, dtype=np.float64)
    pts = loss[np.all(np.isfinite(loss), axis=1) & np.all(loss < ref[None, :], axis=1)]
    if not len(pts):
        return 0.0
    pts = pts[pareto_mask(pts)]
    pts = pts[np.lexsort((pts[:, 1], pts[:, 0]))]  # by the first loss, then the second
    area, prev_y = 0.0, ref[1]
    for x, y in pts:
        if y < prev_y:
            area += (ref[0] - x) * (prev_y - y)
            prev_y = y
    return float(area)


def normaliser(values: np.ndarray, maximize: Sequence[bool]) -> Callable[[np.ndarray], np.ndarray]:
    """Map values to losses in [0, 1] per objective: 0 at the best value in ``values``, 1 at the worst."""
    loss = losses(values, maximize)
    lo, hi = np.nanmin(loss, axis=0), np.nanmax(loss, axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return lambda v: (losses(v, maximize) - lo[None, :]) / span[None, :]


def with_hypervolume(mo: pd.DataFrame, maximize: Mapping[str, bool]) -> pd.DataFrame:
    """Add ``hypervolume``: of the COMPLETE trials found so far in each (target, objectives, strategy, seed) run,
    normalised per objective pair over all its rows (module doc)."""
    out = mo.copy()
    out["hypervolume"] = math.nan
    for _, pair in out.groupby("objectives", sort=False):
        m1, m2 = pair["metric1"].iloc[0], pair["metric2"].iloc[0]
        mx = [maximize[m1], maximize[m2]]
        done = pair[pair.state == "COMPLETE"]
        if done.empty:
            continue
        norm = normaliser(done[["value1", "value2"]].to_numpy(float), mx)
        for _, run in pair.groupby(["target", "strategy", "seed"], sort=False):
            pts = norm(run[["value1", "value2"]].to_numpy(float))
            complete = (run.state == "COMPLETE").to_numpy()
            hv = [
                hypervolume_2d(pts[: i + 1][complete[: i + 1]], (HV_REFERENCE, HV_REFERENCE)) for i in range(len(run))
            ]
            out.loc[run.index, "hypervolume"] = hv
    return out


def fronts(points: pd.DataFrame, maximize: Mapping[str, bool]) -> pd.DataFrame:
    """The Pareto front of each (target, objectives) over the given rows (``lam1, lam2, metric1, value1, metric2,
    value2``; e.g. every trial of every seed, or a baseline grid); duplicates of a λ counted once. Sorted by
    ``value1``."""
    out = []
    for _, g in points.groupby(["target", "objectives"], sort=False):
        g = g[np.isfinite(g.value1) & np.isfinite(g.value2)].drop_duplicates(["lam1", "lam2", "value1", "value2"])
        if g.empty:
            continue
        mx = [maximize[g.metric1.iloc[0]], maximize[g.metric2.iloc[0]]]
        front = g[pareto_mask(losses(g[["value1", "value2"]].to_numpy(float), mx))]
        out.append(front.sort_values("value1"))
    cols = ["target", "objectives", "lam1", "lam2", "metric1", "value1", "metric2", "value2"]
    return pd.concat(out, ignore_index=True)[cols] if out else pd.DataFrame(columns=cols)


def pick_for(points: pd.DataFrame, quality: str, downstream: str, maximize: Mapping[str, bool]) -> pd.DataFrame:
    """Per target, the λ that is best for ``quality`` and the λ that is best for ``downstream`` (e.g. Dice) among
    the evaluated points of the pair ``quality,downstream``, each with both values, and ``downstream_gain``: what
    choosing λ for the downstream metric gains in it over choosing λ for quality (in its better direction)."""
    rows = []
    pair = f"{quality},{downstream}"
    for target, g in points[points.objectives == pair].groupby("target", sort=False):
        g = g[np.isfinite(g.value1) & np.isfinite(g.value2)]
        if g.empty:
            continue
        q = g.loc[g.value1.idxmax() if maximize[quality] else g.value1.idxmin()]
        d = g.loc[g.value2.idxmax() if maximize[downstream] else g.value2.idxmin()]
        sign = 1.0 if maximize[downstream] else -1.0
        rows.append(
            {
                "target": target,
                "quality": quality,
                "downstream": downstream,
                "lam1_for_quality": q.lam1,
                "lam2_for_quality": q.lam2,
                "quality_at_quality": q.value1,
                "downstream_at_quality": q.value2,
                "lam1_for_downstream": d.lam1,
                "lam2_for_downstream": d.lam2,
                "quality_at_downstream": d.value1,
                "downstream_at_downstream": d.value2,
                "downstream_gain": sign * (d.value2 - q.value2),
            }
        )
    return pd.DataFrame(rows)
