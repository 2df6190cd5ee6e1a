"""The search parts of a run: the fidelity probes of baseline training, the search job, the merged tables.

- :class:`FidelityRecorder` (a training callback of each baseline job) evaluates the model on the validation
  slices at the study's fidelity steps (:func:`hyperrecon.search.plan.baseline_fidelity_steps`) and keeps the rows
  in ``eval/<baseline>-fidelity.csv`` (rewritten atomically after each probe; a resumed job keeps the rows up to
  its checkpoint). A baseline trained before the segmentation U-Net exists (phase 0) cannot be scored for Dice
  yet: its probe saves the weights (``checkpoints/<baseline>-step<k>.pt``) and the evaluation job scores them.
- :func:`finish_fidelity` (the baseline's evaluation job) adds the fully trained row and fills such gaps.
- :func:`run_search_job`: ``search-baselines`` replays the fidelity table (``search/fidelity.csv``) with every
  strategy and seed, simulated parallel searches (``search/baselines-parallel.csv``) and multi-objective searches
  (``search/baselines-mo.csv``); ``search-<model>`` searches the model live (``search/<model>.csv``,
  ``search/<model>-mo.csv``, ``search/<model>-test.csv``). Every search is saved as an Optuna study in the run's
  storage (:mod:`hyperrecon.search.studies`).
- :func:`merge_search_tables` (run finalisation) writes ``search.csv``, ``search_parallel.csv`` and
  ``search_mo.csv``.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError, RunError
from ..io import write_csv
from ..metrics import higher_is_better, needs_seg
from .fidelity import FIDELITY_COLUMNS, FidelityTable, fidelity_steps
from .live import LIVE_TARGET
from .plan import (
    baseline_fidelity_steps,
    fidelity_metrics,
    live_budget,
    live_steps,
    model_strategies,
    objective_pairs,
    search_seeds,
)


def has_seg(ctx) -> bool:
    """Whether the run trains a segmentation U-Net (enabled, and the data have labels)."""
    b = ctx.bundle
    return bool(ctx.study.segmentation.enabled and b.train.labels is not None and b.n_classes is not None)


def _objectives_fn(ctx, model, metrics, seg):
    from ..resolve import build_study_metrics
    from .core import make_model_objectives

    s = ctx.study
    return make_model_objectives(
        model,
        ctx.eval_data("val", s.search.n_val),
        build_study_metrics(s, metrics),
        device=ctx.device,
        precision=ctx.precision,
        batch_size=s.train.batch_size,
        seg_model=seg,
        n_classes=int(ctx.bundle.n_classes) if seg is not None else None,
    )


def _lam_cols(lam: list[float]) -> dict[str, float]:
    return {"lam1": float(lam[0]), "lam2": float(lam[1]) if len(lam) > 1 else math.nan}


def _snapshot_path(ctx, name: str, step: int) -> Path:
    return ctx.folder.checkpoint(f"{name}-step{step}")


class FidelityRecorder:
    """Training callback of a baseline job: validation metrics at the probe steps (module doc)."""

    def __init__(self, ctx, name: str, lam: list[float], model, *, deferred_dice: bool) -> None:
        self.ctx, self.name, self.lam, self.model = ctx, name, list(lam), model
        self.metrics = fidelity_metrics(ctx.study, has_seg=has_seg(ctx))
        # metrics that need the segmentation net, which a phase-0 baseline's probes cannot run yet
        self.deferred = [m for m in self.metrics if needs_seg(m)] if deferred_dice else []
        self.path = ctx.folder.eval_file(name, "-fidelity.csv")
        self.steps = baseline_fidelity_steps(ctx.study)
        self.rows: list[dict[str, Any]] = []

    def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event == "start":
            start = int(info["step"]) if info.get("resumed") else 0
            if start and self.path.exists():  # rows written before the checkpoint this attempt resumes from
                old = pd.read_csv(self.path)
                self.rows = old[old.step <= start].to_dict("records")
        elif event == "probe" and int(info["step"]) in self.steps:  # other callbacks may probe other steps
            self.rows.append(self._row(int(info["step"]), float(info["cost"]["device_seconds"])))
            write_csv(self.path, pd.DataFrame(self.rows, columns=[*FIDELITY_COLUMNS, *self.metrics]))

    def _row(self, step: int, train_seconds: float) -> dict[str, Any]:
        import torch

        from ..checkpoints import save_checkpoint

        metrics = [m for m in self.metrics if m not in self.deferred]
        seg = self.ctx.load_model("seg") if any(needs_seg(m) for m in metrics) else None
        model = copy.deepcopy(self.model)  # evaluating must not touch the trained module (memory format, modes)
        with torch.no_grad():
            values, seconds = _objectives_fn(self.ctx, model, metrics, seg)(None)
        if self.deferred:
            save_checkpoint(
                _snapshot_path(self.ctx, self.name, step),
                {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            )
            values.update(dict.fromkeys(self.deferred, math.nan))
        return {
            "model": self.name,
            **_lam_cols(self.lam),
            "step": step,
            "train_seconds": train_seconds,
            "eval_seconds": seconds,
            **values,
        }


def baseline_probe(ctx, name: str, lam: list[float], model) -> tuple[FidelityRecorder, list[int]]:
    """The training callback of a baseline job that records its fidelity table, and the steps to probe (every
    fidelity step but the last, which the evaluation job scores). Dice of a baseline trained before the
    segmentation U-Net (phase 0) is scored later, from saved weights, by its evaluation job."""
    from ..runs.jobs import PHASE_FIRST, PHASE_TRAIN, study_jobs

    base = name.rsplit("/", 1)[-1]  # a replicate's job "r<r>/<job>" runs in its job's phase
    phase = next((j.phase for j in study_jobs(ctx.study, has_labels=has_seg(ctx)) if j.name == base), PHASE_TRAIN)
    recorder = FidelityRecorder(ctx, name, lam, model, deferred_dice=phase == PHASE_FIRST)
    return recorder, baseline_fidelity_steps(ctx.study)[:-1]


def finish_fidelity(ctx, name: str, lam: list[float], model, seg, train_seconds: float) -> dict[str, Any]:
    """Complete ``eval/<name>-fidelity.csv``: score deferred Dice from the saved snapshots (then delete them) and
    add the fully trained row. Returns that row (its objective is the baseline's validation objective)."""
    from ..runs.context import load_weights

    s = ctx.study
    metrics = fidelity_metrics(s, has_seg=seg is not None)
    path = ctx.folder.eval_file(name, "-fidelity.csv")
    final = baseline_fidelity_steps(s)[-1]
    rows = pd.read_csv(path).to_dict("records") if path.exists() else []
    rows = [r for r in rows if int(r["step"]) < final]
    for r in rows:
        snap = _snapshot_path(ctx, name, int(r["step"]))
        missing = [m for m in metrics if needs_seg(m) and not np.isfinite(r.get(m, math.nan))]
        if missing and snap.exists():
            m = ctx.build_model(name)
            m.load_state_dict(load_weights(snap))
            values, seconds = _objectives_fn(ctx, m.to(ctx.device), missing, seg)(None)
            r.update(values)
            r["eval_seconds"] = float(r["eval_seconds"]) + seconds
    values, seconds = _objectives_fn(ctx, model, metrics, seg)(None)
    last = {
        "model": name,
        **_lam_cols(lam),
        "step": final,
        "train_seconds": float(train_seconds),
        "eval_seconds": seconds,
        **values,
    }
    write_csv(path, pd.DataFrame([*rows, last], columns=[*FIDELITY_COLUMNS, *metrics]))
    for r in rows:
        _snapshot_path(ctx, name, int(r["step"])).unlink(missing_ok=True)
    return last


# ----------------------------------------------------------------------------------------------------------------
# the search job


def _run_storage(run_dir: Path) -> tuple[str, str]:
    from ..runs.folder import RunFolder

    info = RunFolder(run_dir).read_info()
    return info.run_id, info.ledger_url


def fidelity_frame(ctx) -> pd.DataFrame:
    """The fidelity table of every baseline of the run (their ``eval/<baseline>-fidelity.csv``)."""
    frames = []
    for m in ctx.models:
        if m.kind == "baseline":
            path = ctx.folder.eval_file(m.name, "-fidelity.csv")
            try:
                frames.append(pd.read_csv(path))
            except (OSError, ValueError) as exc:
                raise RunError(
                    f"{path}: missing or unreadable; expected the fidelity table written by the "
                    f"baseline's training and evaluation jobs (run --resume to redo them)"
                ) from exc
    return pd.concat(frames, ignore_index=True)


def run_search_job(ctx, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """One search job (module doc). Returns its small result for the ledger."""
    from ..resolve import build_study_metrics
    from .core import make_model_objective, search_fidelity, search_model
    from .multi import model_evaluator, replay_evaluator, search_multi
    from .studies import save_studies

    s = ctx.study
    sc = s.search
    target = spec["target"]
    run_id, url = _run_storage(ctx.run_dir)
    if target == LIVE_TARGET:
        return _live_job(ctx, run_id, url)
    seg_ok = has_seg(ctx)
    maximize = higher_is_better(sc.objective)
    pairs = objective_pairs(s, has_seg=seg_ok)
    common = dict(budget=sc.budget, maximize=maximize, strategy_params=sc.strategy_params, run_id=run_id)
    studies: list = []
    out_dir = ctx.folder.search
    mo_frames = []

    def multi(evaluator, pair, seeds):
        """One multi-objective search over ``pair`` (replayed or on a model), as the study configures it."""
        return search_multi(
            evaluator,
            pair,
            [higher_is_better(m) for m in pair],
            list(sc.mo_strategies),
            budget=sc.budget,
            seeds=seeds,
            n_lams=s.n_lams,
            target=target,
            strategy_params=sc.strategy_params,
            run_id=run_id,
            studies_out=studies,
        )

    if target == "baselines":
        frame = fidelity_frame(ctx)
        write_csv(out_dir / "fidelity.csv", frame)
        try:
            table = FidelityTable.from_frame(
                frame, fidelity_metrics(s, has_seg=seg_ok), s.n_lams, where=str(out_dir / "fidelity.csv")
            )
        except ConfigError as exc:  # a damaged run file, not the study's settings: retried, exit 1
            raise RunError(f"{exc} (run --resume to redo the baselines' evaluation jobs)") from exc
        seeds = search_seeds(s)
        kw = dict(
            seeds=seeds,
            metric=sc.objective,
            reduction_factor=sc.reduction_factor,
            pruner_params=sc.pruner_params,
            studies_out=studies,
            **common,
        )
        trials = search_fidelity(table, list(sc.strategies), **kw)
        parallel = [trials] + [
            search_fidelity(table, list(sc.strategies), workers=int(n), **kw) for n in sc.workers if int(n) > 1
        ]
        write_csv(out_dir / "baselines-parallel.csv", pd.concat(parallel, ignore_index=True))
        for pair in pairs:
            mo_frames.append(multi(replay_evaluator(table, pair), pair, seeds))
        device_seconds = 0.0  # replayed: the trainings were paid by the baseline jobs
    else:
        model = ctx.load_model(target)
        seg = ctx.load_model("seg") if seg_ok else None
        seeds = search_seeds(s, models=True)
        val = ctx.eval_data("val", sc.n_val)
        opts = dict(
            device=ctx.device,
            precision=ctx.precision,
            batch_size=s.train.batch_size,
            seg_model=seg if needs_seg(sc.objective) else None,
            n_classes=int(ctx.bundle.n_classes) if seg is not None else None,
        )
        objective = build_study_metrics(s, [sc.objective])[0]
        fn = make_model_objective(model, val, objective, **opts)
        trials = search_model(
            fn, model_strategies(s), seeds=seeds, n_lams=s.n_lams, target=target, studies_out=studies, **common
        )
        for pair in pairs:
            mfn = _objectives_fn(ctx, model, list(pair), seg if any(map(needs_seg, pair)) else None)
            mo_frames.append(multi(model_evaluator(mfn, pair), pair, seeds))
        # The test metric at each search's chosen λ (one forward pass over the test set each).
        test_fn = make_model_objective(model, ctx.eval_data("test", s.evaluation.n_test), objective, **opts)
        tests = []
        for _, row in trials.groupby(["strategy", "seed"], sort=False).tail(1).iterrows():
            lam = [row["best_lam1"]] + ([row["best_lam2"]] if s.n_lams > 1 else [])
            tests.append(
                {"strategy": row["strategy"], "seed": row["seed"], "test_objective": test_fn(np.asarray(lam))[0]}
            )
        write_csv(out_dir / f"{target}-test.csv", pd.DataFrame(tests))
        device_seconds = float(trials["cost_seconds"].sum())
    if mo_frames:
        write_csv(out_dir / f"{target}-mo.csv", pd.concat(mo_frames, ignore_index=True))
    saved = save_studies(studies, url)
    write_csv(out_dir / f"{target}.csv", trials)  # last: its presence marks a finished search
    return {"target": target, "n_trials": len(trials), "n_studies": len(saved), "device_seconds": device_seconds}


def live_trainer(ctx, total: int):
    """The :data:`hyperrecon.search.live.TrainTrial` of a run: a U-Net trained at λ for ``total`` steps with the
    run's training loop and settings, no checkpoints, seeded as the baseline job at that λ would be (so a trial at
    a trained baseline's λ, trained as long, repeats that baseline); the validation objective computed as for the
    fidelity table (:class:`FidelityRecorder`) at each report step."""
    import torch

    from ..resolve import build_recon_model
    from ..runs.jobs import job_seed
    from ..runs.models import lam_label
    from ..samplers import FixedSampler
    from ..training import train

    s = ctx.study
    metric = s.search.objective
    seg = ctx.load_model("seg") if needs_seg(metric) else None
    tasks: dict[bool, Any] = {}

    def task(lam: np.ndarray):
        # as executors.run_job's baseline: an SL single-term baseline (auto scales) trains with unit scales
        unit = isinstance(s.loss.scales, str) and s.kind == "sl" and tuple(float(v) for v in lam) in ((0.0,), (1.0,))
        if unit not in tasks:
            tasks[unit] = ctx.recon_task([1.0] * len(s.loss.terms) if unit else ctx.scales())
        return tasks[unit]

    class Stop(Exception):
        pass

    def train_trial(lam: np.ndarray, report_steps, report) -> None:
        # seeded like the baseline job at this λ: a live trial at a trained baseline's λ repeats its training
        name = f"baseline-{lam_label(tuple(float(v) for v in lam))}"
        torch.manual_seed(job_seed(s, name))
        model = build_recon_model("unet", s)
        done = {"train": 0.0}

        def measure(step: int, train_seconds: float) -> bool:
            values, seconds = _objectives_fn(ctx, copy.deepcopy(model), [metric], seg)(None)
            spent, done["train"] = train_seconds - done["train"], train_seconds
            return report(step, values[metric], spent, seconds)

        def callback(event: str, info: dict[str, Any]) -> None:
            if event == "probe" and int(info["step"]) in report_steps:
                if measure(int(info["step"]), float(info["cost"]["device_seconds"])):
                    raise Stop

        try:
            result = train(
                model,
                task(lam),
                FixedSampler([float(v) for v in lam]),
                ctx.settings(name, total),
                device=ctx.device,
                checkpoint_path=None,
                resume=False,
                callbacks=[callback],
                name=name,
                probe_steps=[int(v) for v in report_steps[:-1]],
            )
        except Stop:
            return
        measure(total, float(result.cost.device_seconds))

    return train_trial


def _live_job(ctx, run_id: str, url: str) -> dict[str, Any]:
    """The ``search-live`` job: every live search (:mod:`hyperrecon.search.live`) in the run's storage, resumed
    where a killed attempt left it; ``search/baselines-live.csv``."""
    from ..runs.ledger import open_storage
    from .live import search_live

    s = ctx.study
    sc = s.search
    total = live_steps(s)
    trials = search_live(
        live_trainer(ctx, total),
        list(sc.live.strategies),
        storage=open_storage(url),
        budget=live_budget(s),
        seeds=search_seeds(s, live=True),
        n_lams=s.n_lams,
        maximize=higher_is_better(sc.objective),
        fidelity_steps=fidelity_steps(total, sc.fidelities, sc.reduction_factor),
        metric=sc.objective,
        reduction_factor=sc.reduction_factor,
        strategy_params=sc.strategy_params,
        pruner_params=sc.pruner_params,
        run_id=run_id,
    )
    write_csv(ctx.folder.search_file(f"{LIVE_TARGET}.csv"), trials)
    return {
        "target": LIVE_TARGET,
        "n_trials": len(trials),
        "n_studies": int(trials.study.nunique()),
        "device_seconds": float(trials["cost_seconds"].sum()),
    }


# ----------------------------------------------------------------------------------------------------------------
# merged tables


def search_targets(study) -> list[str]:
    from ..runs.models import model_specs

    live = [LIVE_TARGET] if study.search.live.strategies else []
    return ["baselines", *live] + [m.name for m in model_specs(study) if m.conditional]


def _named(frame: pd.DataFrame, study) -> pd.DataFrame:
    """A merged trial table as written: the objective's metric named beside it, SL-only columns tidied
    (:func:`hyperrecon.runs.summary.tidy`)."""
    from ..runs.summary import tidy

    named = frame.copy()
    named.insert(list(named.columns).index("objective") + 1, "objective_metric", study.search.objective)
    return tidy(named, study.n_lams)


def merge_search_tables(run_dir: Path, study, read_csv) -> pd.DataFrame:
    """Write ``search.csv`` (every single-objective trial), ``search_parallel.csv`` (the replayed baseline
    searches at each worker count) and ``search_mo.csv`` (multi-objective trials, with the hypervolume so far)
    from the search jobs' tables; returns the ``search.csv`` frame. ``read_csv(path)`` reads a job's table (with
    the run's error for a missing or damaged file)."""
    from ..runs.folder import RunFolder
    from ..runs.summary import tidy
    from .multi import with_hypervolume

    folder = RunFolder(run_dir)
    d = folder.search
    targets = search_targets(study)
    search = pd.concat([read_csv(d / f"{t}.csv") for t in targets], ignore_index=True)
    write_csv(folder.table("search.csv"), _named(search, study))
    if (d / "baselines-parallel.csv").exists():
        write_csv(folder.table("search_parallel.csv"), _named(read_csv(d / "baselines-parallel.csv"), study))
    mo = [read_csv(d / f"{t}-mo.csv") for t in targets if (d / f"{t}-mo.csv").exists()]
    if mo:
        frame = pd.concat(mo, ignore_index=True)
        names = set(frame.metric1) | set(frame.metric2)
        frame = with_hypervolume(frame, {m: higher_is_better(m) for m in names})
        write_csv(folder.table("search_mo.csv"), tidy(frame, study.n_lams))
    return search
