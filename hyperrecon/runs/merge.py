"""The merge: the per-job outputs of every replicate -> the run's tables (``results.csv``, ``costs.csv``,
``metrics.csv``, ``convergence.csv``, the search tables) and ``summary.json`` (:func:`finalize`).

What makes the tables self-describing (tidy columns, ``metrics.csv``, the headline) is :mod:`.summary`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import RunError
from ..io import read_json, write_csv, write_json
from ..timing import add_job_peaks
from .context import RunContext, first_line
from .models import ModelSpec
from .summary import build_summary, metrics_table, tidy
from .urls import redact


def finalize(run: RunContext, ctx: RunContext | None = None) -> dict[str, Any]:
    """Merge per-job outputs into results.csv, costs.csv, search.csv, search_summary.csv and summary.json.
    (``ctx``: unused, kept for old callers: the run is its context.)"""
    import pandas as pd

    from ..search import summarise

    d, s = run.folder, run.study
    results, cost_rows, training_cost = _merge_replicates(run)
    write_csv(d.table("results.csv"), tidy(results, s.n_lams))
    write_csv(d.table("metrics.csv"), metrics_table([*results.metric.unique(), s.search.objective]))
    costs = pd.DataFrame(cost_rows)
    write_csv(d.table("costs.csv"), tidy(costs.rename(columns={"peak_memory_mb": "peak_memory_mib"}), s.n_lams))
    from ..convergence import write_convergence_csv

    write_convergence_csv(d.root, [(m.name, m.kind) for m in run.models] + [("seg", "seg")])

    from ..search.runner import merge_search_tables

    search = merge_search_tables(d.root, s, _read_csv)  # search.csv, search_parallel.csv, search_mo.csv

    from ..metrics import higher_is_better

    maximize = higher_is_better(s.search.objective)
    baseline_val = search[search.target == "baselines"]
    baselines = [m.name for m in run.models if m.kind == "baseline"]
    objective = s.search.objective
    # Grid optimum: the best validation objective among the trained baselines.
    grid_vals = [read_json(d.job_record(f"eval-{m.name}"))["val_objective"] for m in run.models if m.kind == "baseline"]
    grid_optimum = max(grid_vals) if maximize else min(grid_vals)
    test_tables = {p.name[: -len("-test.csv")]: _read_csv(p) for p in d.search.glob("*-test.csv")}
    # the searches ran on replicate 0
    baseline_test = results[(results.replicate == 0) & (results.metric == objective) & results.model.isin(baselines)]

    def test_metric(target: str, lam: Any, strategy: str | None = None, seed: int | None = None) -> float:
        if target == "baselines":
            lam = [float(v) for v in (lam if hasattr(lam, "__len__") else [lam])]
            m = ModelSpec.baseline(lam).name
            v = baseline_test[baseline_test.model == m].value
            return float(v.mean()) if len(v) else float("nan")
        t = test_tables.get(target)
        if t is None or strategy is None:
            return float("nan")
        row = t[(t.strategy == strategy) & (t.seed == seed)]
        return float(row.test_objective.iloc[0]) if len(row) else float("nan")

    summary_table = summarise(
        search, grid_optimum=grid_optimum, maximize=maximize, test_metric_fn=test_metric, training_cost=training_cost
    )
    # Conditional models: the test objective at each strategy's chosen λ was measured by the search job.
    for i, row in summary_table.iterrows():
        if row["target"] != "baselines":
            summary_table.loc[i, "test_metric"] = test_metric(
                row["target"], None, row["strategy"], int(row["chosen_seed"])
            )
    write_csv(d.table("search_summary.csv"), tidy(summary_table, s.n_lams))
    summary = build_summary(
        run_dir=d.root,
        run_id=run.run_id,
        storage=redact(run.storage),
        study=s,
        results=results,
        costs=costs,
        search_summary=summary_table,
        grid_optimum=grid_optimum,
        maximize=maximize,
        baseline_trials=len(baseline_val),
    )
    summary["replicates"] = int(s.replicates)
    write_json(d.table("summary.json"), summary)
    return summary


def _merge_replicates(run: RunContext) -> tuple[Any, list[dict[str, Any]], dict[str, float]]:
    """results (every replicate, with a ``replicate`` column), cost rows (one per replicate and model) and replicate
    0's training device seconds per model (what the replayed baseline search charges)."""
    import pandas as pd

    s = run.study
    frames, cost_rows = [], []
    training_cost: dict[str, float] = {}
    kinds = {m.name: m.kind for m in run.models}
    for r in range(int(s.replicates)):
        d = run.folder.replicate(r)
        for m in run.models:
            frame = _read_csv(d.eval_file(m.name))
            frame.insert(len(frame.columns) - 1, "replicate", r)  # before 'value'
            frames.append(frame)
        for name in [*(m.name for m in run.models), "seg", "scales"]:
            path = d.job_record(name)
            if not path.exists():
                continue
            info = read_json(path)
            if "cost" in info:
                c = info["cost"]
                kind = kinds.get(name, name)
                row = {
                    "model": name,
                    "kind": kind,
                    **{
                        k: c[k]
                        for k in (
                            "n_params",
                            "steps",
                            "device_seconds",
                            "wall_seconds",
                            "peak_memory_mb",
                            "device",
                            "dtype",
                        )
                    },
                }
                if r == 0:
                    training_cost[name] = float(c["device_seconds"])
            elif name == "scales":
                row = {
                    "model": "scales",
                    "kind": "scales",
                    "n_params": 0,
                    "steps": 0,
                    "device_seconds": info.get("device_seconds", 0.0),
                    "wall_seconds": info.get("wall_seconds", 0.0),
                    "peak_memory_mb": info.get("peak_memory_mib", 0.0),
                    "device": run.device,
                    "dtype": run.precision,
                }
            else:
                continue
            meta_path = d.eval_file(name, "-meta.json")
            if meta_path.exists():
                row["inference_seconds_per_slice"] = (
                    read_json(meta_path).get("seconds", {}).get("inference_seconds_per_slice")
                )
            add_job_peaks([row], d.jobs)
            cost_rows.append({**row, "replicate": r})
    return pd.concat(frames, ignore_index=True), cost_rows, training_cost


def _read_csv(path: Path):
    """A result table written by a job; ``RunError`` naming the file when it is missing or damaged."""
    import pandas as pd

    try:
        return pd.read_csv(path)
    except FileNotFoundError as exc:
        raise RunError(f"{path}: missing; expected the output of a finished job (run --resume to redo it)") from exc
    except (OSError, ValueError) as exc:  # pandas' ParserError and EmptyDataError are ValueErrors
        raise RunError(f"{path}: unreadable or corrupt table ({first_line(exc)})") from exc
