"""Self-describing run outputs: the metric sidecar, tidy merged tables and the ``summary.json`` headline.

Every file and column is described in ``docs/run-folder.md`` (tested both ways by ``tests/test_run_folder.py``).
This module holds what the merge step (:func:`hyperrecon.runs.merge.finalize`) adds so that a table can be read without
the code: each metric's unit and better direction (``metrics.csv``), integer counts, no column that cannot apply
to the study (``lam2`` and its kin in a one-hyperparameter study), and the machine-readable headline of a run.

The metric registry (:mod:`hyperrecon.metrics`) is imported only when ``metrics.csv`` is written.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from ..io import read_json, write_json
from .folder import RunFolder

#: ``summary.json`` layout version (bump when a key changes meaning or disappears).
SUMMARY_FORMAT = 1

#: Columns that only mean something when the study has two hyperparameters (AO).
SECOND_LAMBDA = ("lam2", "best_lam2", "suggested_lam2", "chosen_lam2")
#: Columns that hold counts; pandas reads an empty cell as NaN and turns them into floats, so they are cast back.
COUNT_COLUMNS = (
    "n_params",
    "steps",
    "seed",
    "trial",
    "n_seeds",
    "n_trials",
    "chosen_seed",
    "slice",
    "n_above",
    "n_lams",
    "slice_index",
)


def metric_info(name: str) -> dict[str, str]:
    """``{metric, unit, better, description}`` of a registered metric, as its plugin declares them (``better``:
    ``higher`` or ``lower``; ``unit``: ``dB``, ``1`` for ratios, intensities of the [0, 1] target ...)."""
    from ..metrics import METRICS

    m = METRICS.get(name)
    return {
        "metric": name,
        "unit": m.unit,
        "better": "higher" if m.higher_is_better else "lower",
        "description": METRICS.describe(name),
    }


def metrics_table(names: list[str]) -> pd.DataFrame:
    """The ``metrics.csv`` sidecar: one row per metric in ``names`` (order kept, duplicates dropped)."""
    return pd.DataFrame(
        [metric_info(n) for n in dict.fromkeys(names)], columns=["metric", "unit", "better", "description"]
    )


def tidy(frame: pd.DataFrame, n_lams: int) -> pd.DataFrame:
    """A merged table as written: second-λ columns dropped when ``n_lams == 1``, counts as (nullable) integers."""
    out = frame.drop(columns=[c for c in SECOND_LAMBDA if c in frame.columns]) if n_lams == 1 else frame.copy()
    for col in COUNT_COLUMNS:
        if col in out.columns and pd.api.types.is_numeric_dtype(out[col]):
            values = out[col].to_numpy(dtype=float)
            finite = values[~pd.isna(values)]
            if len(finite) and (finite == finite.round()).all():
                out[col] = out[col].round().astype("Int64")
    return out


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _lam(row: Any, prefix: str, n_lams: int) -> list[float | None]:
    return [_finite(row.get(f"{prefix}{i}")) for i in range(1, n_lams + 1)]


def model_headlines(
    results: pd.DataFrame, costs: pd.DataFrame, objective: str, maximize: bool, n_lams: int
) -> dict[str, Any]:
    """Per model: kind, size, training cost, and the test-set objective (mean over test slices) at its best λ
    and averaged over the λ grid, with every other metric at that best λ."""
    out: dict[str, Any] = {}
    cost = pd.DataFrame()
    if "model" in costs.columns:  # one row per model and replicate: its kind and size, training time averaged
        agg = {c: ("mean" if c == "device_seconds" else "first") for c in costs.columns if c != "model"}
        cost = costs.groupby("model", sort=False).agg(agg)
    lam_cols = ["lam1", "lam2"][:n_lams]
    for model, rows in results.groupby("model", sort=False):
        entry: dict[str, Any] = {}
        if model in cost.index:
            c = cost.loc[model]
            entry.update(
                kind=str(c.get("kind")),
                n_params=int(c["n_params"]),
                training_device_seconds=_finite(c.get("device_seconds")),
            )
        obj = rows[rows.metric == objective]
        if len(obj):
            means = obj.groupby(lam_cols, dropna=False)["value"].mean()
            best_key = means.idxmax() if maximize else means.idxmin()
            best_key = best_key if isinstance(best_key, tuple) else (best_key,)
            at_best = rows
            for col, v in zip(lam_cols, best_key, strict=True):
                at_best = at_best[(at_best[col] - v).abs() < 1e-9]
            entry.update(
                best_lam=[_finite(v) for v in best_key],
                best_objective=_finite(means.max() if maximize else means.min()),
                mean_objective_over_lam=_finite(means.mean()),
                n_lam=int(len(means)),
                metrics_at_best_lam={m: _finite(v) for m, v in at_best.groupby("metric")["value"].mean().items()},
            )
        out[str(model)] = entry
    return out


def search_outcomes(summary_table: pd.DataFrame, n_lams: int) -> list[dict[str, Any]]:
    """One object per target and strategy of ``search_summary.csv``."""
    rows = []
    for _, r in summary_table.iterrows():
        rows.append(
            {
                "target": str(r["target"]),
                "strategy": str(r["strategy"]),
                "best_validation_objective": _finite(r.get("best_mean")),
                "regret": _finite(r.get("regret_mean")),
                "chosen_lam": _lam(r, "chosen_lam", n_lams),
                "test_objective": _finite(r.get("test_metric")),
                "search_device_seconds": _finite(r.get("search_cost_mean")),
                "total_device_seconds": _finite(r.get("total_cost_mean")),
            }
        )
    return rows


def build_summary(
    *,
    run_dir: Path,
    run_id: str,
    storage: str,
    study: Any,
    results: pd.DataFrame,
    costs: pd.DataFrame,
    search_summary: pd.DataFrame | None,
    grid_optimum: float,
    maximize: bool,
    baseline_trials: int,
) -> dict[str, Any]:
    """The ``summary.json`` object (keys in ``docs/run-folder.md``). ``storage`` must already be masked."""
    objective = study.search.objective
    info = metric_info(objective)
    return {
        "format": SUMMARY_FORMAT,
        "run_id": run_id,
        "study": study.name,
        "profile": study.profile,
        "kind": study.kind,
        "config_hash": study.config_hash(),
        "run_dir": str(Path(run_dir).resolve()),
        "storage": storage,
        "docs": "docs/run-folder.md",
        "objective": {
            "metric": objective,
            "direction": "maximize" if maximize else "minimize",
            "unit": info["unit"],
            "grid_optimum": _finite(grid_optimum),
        },
        "n_results": int(len(results)),
        "n_models": int(results["model"].nunique()),
        "baseline_trials": int(baseline_trials),
        "models": model_headlines(results, costs, objective, maximize, study.n_lams),
        "search": search_outcomes(search_summary, study.n_lams) if search_summary is not None else [],
        "claims": None,
    }


def record_claims(
    run_dir: Path, claims: list[dict[str, Any]] | None, *, long_reference: dict[str, Any] | None = None
) -> None:
    """Fill ``summary.json``'s ``claims`` (the report's paper-claims table: one object per claim, e.g.
    ``{id, claim, verdict, statistic, ci}``) and ``long_reference`` (``reference/long-baseline.json`` when made,
    :mod:`hyperrecon.long_reference`) and rewrite it atomically; no-op when the run has no summary yet."""
    path = RunFolder(run_dir).table("summary.json")
    if not path.exists():
        return
    summary = read_json(path)
    summary["claims"] = claims
    summary["long_reference"] = long_reference
    write_json(path, summary)
