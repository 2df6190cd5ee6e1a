"""How far from converged is the best baseline? A longer training of it as the reference (issue 15, item 5).

A study compares models at one training budget. Whether that budget is enough is a question about the
reconstruction metrics themselves, not only about the validation loss (:mod:`hyperrecon.convergence`): the best
per-λ baseline of a finished run is trained again, from scratch, at the same λ with ``factor`` times its steps
(the same data, loss, scales, optimiser and learning-rate schedule stretched over the longer run), in every
replicate asked for, and evaluated on the same test slices with the study's metrics. The report then states, per
metric, the long run minus the run's own baseline: mean over (replicate, subject) units with the 95% t interval
over replicates and the Wilcoxon p (:func:`hyperrecon.reporting.stats.paired_units`). A gap of a few tenths of a
dB PSNR says the budget is near the ceiling of this architecture and data; a gap of dBs says every model of the run
is a training snapshot.

"Best": the baseline with the best mean of ``metric`` (default PSNR; its direction from the metric registry) over
the test slices of every replicate, chosen on the test set, so it is the baseline the report's findings compare
against, not a model selection.

Files (``reference/`` of the run folder, :class:`hyperrecon.runs.folder.RunFolder`): ``long-baseline.csv`` (the
evaluation table of the long runs, the columns of ``results.csv``), ``long-baseline.json`` (what was trained and
the per-metric comparison), ``checkpoints/`` (a killed run resumes from them). Written atomically; the report reads
the JSON when it is there (:func:`hyperrecon.reporting.checks.long_reference_lines`).

Run it with ``python benchmark/long_reference.py RUN_DIR --factor 3``, then ``hrbench report RUN_DIR``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from .errors import ConfigError, RunError

DEFAULT_FACTOR = 3


def best_baseline(results: pd.DataFrame, baselines: Sequence[str], metric: str = "psnr") -> str:
    """The name of the baseline with the best mean ``metric`` over every row of ``results`` (all replicates);
    ``RunError`` when no baseline has that metric."""
    from .metrics import higher_is_better

    rows = results[(results["metric"] == metric) & results["model"].isin(list(baselines))]
    if rows.empty:
        raise RunError(f"results.csv: no '{metric}' rows of a baseline; expected a finished run with baselines")
    means = rows.groupby("model")["value"].mean()
    return str(means.idxmax() if higher_is_better(metric) else means.idxmin())


def compare(results: pd.DataFrame, long_table: pd.DataFrame, model: str, metrics: Sequence[str]) -> list[dict]:
    """Per metric: the run's baseline ``model`` and its long run (``long_table``, same model name), on their common
    (replicate, subject) units: ``budget`` and ``long`` (mean and t interval over replicates) and ``diff`` (long
    minus budget, :func:`~hyperrecon.reporting.stats.paired_units`), ``improved`` (the interval of the difference
    lies on the metric's better side; None without an interval)."""
    from .metrics import higher_is_better
    from .reporting.stats import paired_units, summarise_units, unit_values

    out = []
    for metric in metrics:
        long_units = unit_values(long_table, model, metric)
        budget_units = unit_values(results, model, metric)
        common = long_units.index.intersection(budget_units.index)
        if common.empty:
            continue
        diff = paired_units(long_units.loc[common], budget_units.loc[common])
        sign = 1.0 if higher_is_better(metric) else -1.0
        lo, hi = sign * diff["lo"], sign * diff["hi"]
        improved = None if math.isnan(lo) else bool(min(lo, hi) > 0)
        out.append(
            {
                "metric": metric,
                "budget": summarise_units(budget_units.loc[common]),
                "long": summarise_units(long_units.loc[common]),
                "diff": diff,
                "improved": improved,
            }
        )
    return out


def run_long_reference(
    run_dir: Path,
    *,
    factor: int = DEFAULT_FACTOR,
    replicates: Sequence[int] | None = None,
    metric: str = "psnr",
    device: str = "auto",
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Train the best baseline of the finished run in ``run_dir`` for ``factor`` times its steps in each replicate
    of ``replicates`` (default: all of the run), evaluate it and write ``reference/long-baseline.{csv,json}``.
    Returns the JSON's path. ``ConfigError``: factor < 2 or a replicate the run does not have; ``RunError``: not a
    finished run (no results.csv, no baseline weights)."""
    import numpy as np
    import torch

    from .convergence import convergence
    from .evaluation import evaluate_model
    from .io import write_csv, write_json
    from .reporting.rundata import load_run
    from .resolve import resolve_device
    from .runs.context import RunContext
    from .runs.executors import baseline_scales, eval_metrics, val_tracker
    from .runs.jobs import job_seed
    from .runs.orchestrate import study_from_dict_resolved
    from .runs.provenance import ran_with
    from .samplers import FixedSampler
    from .training import train

    if not isinstance(factor, int) or factor < 2:
        raise ConfigError(f"--factor: expected an integer >= 2 (times the baseline's steps), got {factor!r}")
    say = progress or (lambda _msg: None)
    data = load_run(Path(run_dir))  # RunError naming the file when the run is not finished
    folder = data.folder
    study = study_from_dict_resolved(data.config)
    n_reps = int(getattr(study, "replicates", 1))
    reps = list(range(n_reps)) if replicates is None else [int(r) for r in replicates]
    bad = [r for r in reps if not 0 <= r < n_reps]
    if bad or not reps:
        raise ConfigError(f"--replicates: the run has replicates 0..{n_reps - 1}; got {list(replicates or [])}")
    model = best_baseline(data.results, data.baselines, metric)
    steps = int(study.baselines.steps or study.train.steps) * factor
    dev = resolve_device(device)
    precision = str(data.run.get("provenance", {}).get("precision") or "fp32")
    threads = data.run.get("threads")
    if threads:
        torch.set_num_threads(int(threads))
    base_ctx = RunContext(folder.root, study, dev, precision, threads=threads)
    lam = tuple(base_ctx.model(model).lam or ())
    name = f"{model}-x{factor}"
    tables, runs = [], []
    for r in reps:
        ctx = base_ctx.for_replicate(r) if r else base_ctx
        s = ctx.study
        say(f"replicate {r}: {model} (λ = {lam}) for {steps} steps")
        torch.manual_seed(job_seed(s, name))
        net = ctx.build_model(model)
        scales = baseline_scales(ctx, lam)
        history = folder.long_reference_file(f"r{r}-{name}-val.json")
        tracker = val_tracker(ctx, name, net, steps, [list(lam)], scales, path=history)
        result = train(
            net,
            ctx.recon_task(scales),
            FixedSampler(list(lam)),
            ctx.settings(name, steps),
            device=dev,
            checkpoint_path=folder.long_reference_file(f"r{r}-{name}.pt"),
            resume=True,
            callbacks=[tracker],
            probe_steps=tracker.probe_steps(),
            name=name,
        )
        test = ctx.eval_data("test", s.evaluation.n_test)
        metrics = eval_metrics(s, has_seg=False)
        res = evaluate_model(
            net,
            model,
            test,
            np.array([lam], dtype=float),
            metrics,
            device=dev,
            precision=precision,
            batch_size=s.train.batch_size,
        )
        table = res.table.copy()
        table.insert(table.columns.get_loc("value"), "replicate", r)
        tables.append(table)
        runs.append(
            {
                "replicate": r,
                "device_seconds": result.cost.device_seconds,
                "convergence": convergence(tracker.history, steps),
            }
        )
    long_table = pd.concat(tables, ignore_index=True)
    names = list(dict.fromkeys(long_table["metric"]))
    summary = {
        "model": model,
        "lam": list(lam),
        "chosen_by": metric,
        "factor": factor,
        "budget_steps": steps // factor,
        "steps": steps,
        "replicates": reps,
        "runs": runs,
        "metrics": compare(data.results, long_table, model, names),
        "ran_with": ran_with(dev, precision),
    }
    write_csv(folder.long_reference_file("long-baseline.csv"), long_table)
    out = folder.long_reference_file("long-baseline.json")
    write_json(out, summary)
    return out


__all__ = ["DEFAULT_FACTOR", "best_baseline", "compare", "run_long_reference"]
