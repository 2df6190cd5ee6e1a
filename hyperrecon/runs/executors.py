"""Job executors: what one job of a run does (train a model, compute loss scales, evaluate, search).

:func:`run_job` dispatches on the job kind, seeds torch from the study seed and the job name (a retried job gives
the same result), and writes ``jobs/<name>.json``; the ledger keeps the small result.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from ..config import Study
from ..errors import RunError
from ..io import read_json, write_csv, write_json
from ..resolve import build_recon_model, build_sampler
from .context import RunContext, load_weights
from .jobs import job_seed
from .models import ModelSpec
from .provenance import ran_with


def _save_model(path: Path, model) -> None:
    from ..checkpoints import save_checkpoint

    save_checkpoint(path, {k: v.detach().cpu() for k, v in model.state_dict().items()})


def val_tracker(ctx: RunContext, name: str, model, steps: int, lams, scales, path: Path | None = None):
    """The validation-loss callback of a reconstruction model (hyperrecon/convergence.py); its history is kept in
    ``path`` (default: the run's ``checkpoints/<name>-val.json``)."""
    from ..convergence import ValidationTracker, recon_val_objective

    s = ctx.study
    val = ctx.recon_task(scales, split="val", limit=s.search.n_val)
    objective = recon_val_objective(val.to(ctx.device), lams, batch_size=s.train.batch_size, precision=ctx.precision)
    return ValidationTracker(model, objective, steps, path=path or ctx.folder.val_history(name))


def _train_job(
    ctx: RunContext,
    name: str,
    model,
    task,
    sampler,
    steps: int,
    tracker=None,
    probe=None,
    probe_steps=(),
    settings=None,
) -> dict[str, Any]:
    """Train one model of the run (resuming from its checkpoint) with ``settings`` (default: the study's training
    settings over ``steps``), save its weights, and return the job's result."""
    from ..training import train

    started: dict[str, Any] = {}

    def callback(event: str, info: dict[str, Any]) -> None:
        if event == "start":
            started.update(info)
        if probe is not None:
            probe(event, info)
        if ctx.progress is not None:
            ctx.progress(event, {"job": name, **info})

    ckpt = ctx.folder.checkpoint(name)  # train's load_checkpoint verifies its zip checksums
    if tracker is not None:  # its evaluations run at probe steps, with the device timer paused
        probe_steps = sorted({*probe_steps, *tracker.probe_steps()})
    result = train(
        model,
        task,
        sampler,
        settings if settings is not None else ctx.settings(name, steps),
        device=ctx.device,
        checkpoint_path=ckpt,
        resume=True,
        callbacks=[callback] + ([tracker] if tracker is not None else []),
        name=name,
        probe_steps=probe_steps,
    )
    _save_model(ctx.model_path(name), model)
    out = {
        "cost": result.cost.to_dict(),
        "final_loss": result.history[-1]["loss"] if result.history else None,
        "device_seconds": result.cost.device_seconds,
        "history": result.history,
        # the step a checkpoint of an interrupted attempt let this one start from (0: trained from scratch)
        "resumed_from_step": int(started.get("step", 0)) if started.get("resumed") else 0,
    }
    if tracker is not None:
        from ..convergence import convergence

        out["val_history"] = tracker.history
        out["convergence"] = convergence(tracker.history, steps)
    kept = getattr(sampler, "kept_lams", None)
    if callable(kept):
        lams = kept()
        if lams is not None and len(lams):
            import numpy as np

            from ..io import write_npz

            # steps and warm-up let the report test only the λ that DHS ranked (hyperrecon/dhs_check.py)
            write_npz(
                ctx.folder.eval_file(name, "-dhs-kept.npz"),
                lams=lams.numpy(),
                steps=sampler.kept_steps().numpy(),
                warmup_steps=np.array(getattr(sampler, "warmup_steps", 0)),
            )
    return out


def baseline_scales(ctx: RunContext, lam: tuple[float, ...]) -> list[float]:
    """The loss scales a baseline at ``lam`` trains with. A single-term baseline of an SL study with auto scales
    runs before the scales exist; one term alone makes the scale a constant factor, which Adam does not see, so it
    trains with unit scales."""
    s = ctx.study
    auto_first = isinstance(s.loss.scales, str) and s.kind == "sl" and tuple(lam) in ((0.0,), (1.0,))
    return [1.0] * len(s.loss.terms) if auto_first else ctx.scales()


def run_job(ctx: RunContext, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Execute one job and return its JSON-able result (also written to ``jobs/<name>.json``)."""
    import torch

    replicate = int(spec.get("replicate", 0))
    if replicate:  # the same job in the replicate's own folder, with its seed (hyperrecon.runs.jobs)
        from .jobs import split_replicate

        base = {k: v for k, v in spec.items() if k != "replicate"}
        return run_job(ctx.for_replicate(replicate), split_replicate(name)[1], base)
    from ..accel import configure
    from ..timing import peak_memory_mb, reset_peak_memory

    kind = spec["kind"]
    s = ctx.study
    started = time.perf_counter()
    if ctx.threads is not None:  # the run's thread count, whatever --workers and the machine (run.json threads)
        torch.set_num_threads(ctx.threads)
    configure(ctx.device)
    reset_peak_memory(ctx.device)  # CUDA: this job's own peak (CPU: the process's peak RSS, not resettable)
    torch.manual_seed(job_seed(s, name))
    if kind == "seg":
        from ..resolve import build_seg_model

        model = build_seg_model(s, int(ctx.bundle.n_classes))
        result = _seg_job(ctx, name, model)
    elif kind == "scales":
        result = _scales_job(ctx, name)
    elif kind == "baseline":
        from ..samplers import FixedSampler

        lam = tuple(spec["lam"])
        scales = baseline_scales(ctx, lam)
        from ..search.runner import baseline_probe

        model = ctx.build_model(name)
        steps = s.baselines.steps or s.train.steps
        # (single-term baselines: unit scales, like their training; a relative change does not see the scale)
        tracker = val_tracker(ctx, name, model, steps, [list(lam)], scales)
        recorder, probe_steps = baseline_probe(ctx, name, list(lam), model)  # validation metrics for the search
        result = _train_job(
            ctx,
            name,
            model,
            ctx.recon_task(scales),
            FixedSampler(list(lam)),
            steps,
            tracker,
            probe=recorder,
            probe_steps=probe_steps,
        )
        result["lam"] = list(lam)
    elif kind in ("hyper", "film"):
        from ..convergence import val_lam_grid

        model = ctx.build_model(name)
        sampler = build_sampler(s, spec["sampler"])
        steps = s.hyper.steps or s.train.steps
        tracker = val_tracker(ctx, name, model, steps, val_lam_grid(s.n_lams), ctx.scales())
        result = _train_job(ctx, name, model, ctx.recon_task(ctx.scales()), sampler, steps, tracker)
    elif kind == "eval":
        result = _eval_job(ctx, name, spec)
    elif kind == "search":
        result = _search_job(ctx, name, spec)
    else:
        raise RunError(f"job '{name}': unknown kind '{kind}'")
    result.setdefault("device_seconds", 0.0)
    result["peak_memory_mib"] = round(peak_memory_mb(ctx.device), 1)
    result["job_wall_seconds"] = time.perf_counter() - started
    result["ran_with"] = ran_with(ctx.device, ctx.precision)
    write_json(ctx.folder.job_record(name), {"job": name, "spec": spec, **result})
    # The ledger keeps a small result; the history lives in jobs/<name>.json.
    return {k: v for k, v in result.items() if k != "history"}


def _seg_job(ctx: RunContext, name: str, model) -> dict[str, Any]:
    """The segmentation net: trained until its validation Dice plateaus within ``segmentation.steps``; then its
    Dice on the ground-truth test images (ceiling) and on the zero-filled input (floor) (hyperrecon/segref.py)."""
    from ..convergence import ValidationTracker, convergence
    from ..io import read_json
    from ..segref import dice_objective, dice_references, train_until_plateau, write_reference_csv

    s = ctx.study
    n_classes = int(ctx.bundle.n_classes)
    val = ctx.eval_data("val", s.search.n_val)
    if val.labels is None:
        raise RunError("job 'seg': the validation slices have no label maps")
    side = ctx.folder.val_history(name)
    tracker = ValidationTracker(
        model, dice_objective(val.targets, val.labels, n_classes), s.segmentation.steps, path=side
    )
    if side.exists() and ctx.folder.checkpoint(name).exists():
        tracker.history = list(read_json(side).get("history", []))  # a retried job continues its evaluations
    task = ctx.seg_task()

    def chunk(target: int) -> dict[str, Any]:
        # Constant learning rate: the net trains chunk by chunk until its Dice plateaus, so no schedule horizon is
        # known in advance. A schedule over each chunk's `target` (the study's cosine) would anneal the rate to ~0
        # at the end of every chunk, and the slow progress that follows looks like a plateau (the standard
        # sl-brain-cs run of commit 41cfaa9 stopped at 240 steps with Dice 0.28 this way).
        settings = dataclasses.replace(ctx.settings(name, target), lr_schedule="constant")
        return _train_job(ctx, name, model, task, None, target, settings=settings)

    best_path = ctx.folder.checkpoint(f"{name}-best")  # survives a retried job, as the history does

    def keep_best(step: int) -> None:
        _save_model(best_path, model)

    run = train_until_plateau(chunk, tracker, s.segmentation.steps, keep_best=keep_best)
    if best_path.exists():  # early stopping keeps the net of the best validation Dice, not the last one
        model.load_state_dict(load_weights(best_path))
        _save_model(ctx.model_path(name), model)
    result = run["result"]
    refs = dice_references(
        model.to(ctx.device), ctx.eval_data("test", s.evaluation.n_test), n_classes, batch_size=s.train.batch_size
    )
    write_reference_csv(ctx.run_dir, refs)  # the run folder's dice_reference.csv
    result["val_history"] = tracker.history
    # converged: the validation Dice plateaued (the 2 % rule on 1 - Dice would be stricter than the plateau rule)
    result["convergence"] = {**convergence(tracker.history, run["steps"]), "converged": run["plateaued"]}
    result["dice_reference"] = {
        "ceiling": refs["ceiling"],
        "floor": refs["floor"],
        "steps": run["steps"],
        "step_budget": s.segmentation.steps,
        "plateaued": run["plateaued"],
        "best_val_dice": run["best_val_dice"],
        "best_step": run["best_step"],  # the step of the net kept (the ceiling and floor are its Dice)
    }
    return result


def _scales_job(ctx: RunContext, name: str) -> dict[str, Any]:
    """Loss scales: SL from the single-term baselines (paper 4.4); AO by the two-pass median rule (scales.py)."""
    from ..scales import ao_auto_scales, sl_auto_scales
    from ..timing import DeviceTimer

    s = ctx.study
    timer = DeviceTimer(ctx.device).start()
    unit = [1.0] * len(s.loss.terms)
    val_task = ctx.recon_task(unit, split="val", limit=s.search.n_val)
    if s.kind == "sl":
        models: dict[float | tuple[float, ...], Any] = {
            0.0: ctx.load_model(ModelSpec.baseline((0.0,)).name),
            1.0: ctx.load_model(ModelSpec.baseline((1.0,)).name),
        }
        scales = sl_auto_scales(models, val_task.to(ctx.device))
        rule = "SL: s_i = mean validation value of term i for the baseline trained on term i alone (paper 4.4)"
    else:
        # Pass 1: a fresh U-Net; pass 2: a U-Net trained briefly at the equal-weight λ with the pass-1 scales.
        from ..samplers import FixedSampler
        from ..scales import equal_weight_lam
        from ..training import train

        model = build_recon_model("unet", s).to(ctx.device)
        first = ao_auto_scales(model, val_task.to(ctx.device))
        lam = equal_weight_lam(s.n_lams)[0].tolist()
        steps = max(1, min(100, (s.baselines.steps or s.train.steps) // 3))
        train(model, ctx.recon_task(first), FixedSampler(lam), ctx.settings(name, steps), device=ctx.device, name=name)
        scales = ao_auto_scales(model, ctx.recon_task(first, split="val", limit=s.search.n_val).to(ctx.device))
        rule = (
            "AO: s_i = median over validation slices of term i for a U-Net briefly trained at equal weights "
            "(two passes; see hyperrecon/scales.py)"
        )
    timer.stop()
    scales = [float(v) for v in scales]
    write_json(ctx.folder.scales_json, {"terms": list(s.loss.terms), "scales": scales, "rule": rule})
    return {"scales": scales, "device_seconds": timer.device_seconds, "wall_seconds": timer.wall_seconds}


def _eval_job(ctx: RunContext, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    from ..evaluation import evaluate_model, lam_grid
    from ..io import write_npz

    s = ctx.study
    model_name = spec["model"]
    m = ctx.model(model_name)
    model = ctx.load_model(model_name)
    seg = ctx.load_model("seg") if ctx.folder.weights("seg").exists() else None
    n_classes = int(ctx.bundle.n_classes) if seg is not None else None
    if m.kind == "baseline":
        lams = np.array([m.lam], dtype=float)
    else:
        lams = lam_grid(s.n_lams, s.evaluation.grid_points)
    metrics = eval_metrics(s, has_seg=seg is not None)
    common: dict[str, Any] = dict(
        seg_model=seg, n_classes=n_classes, device=ctx.device, precision=ctx.precision, batch_size=s.train.batch_size
    )
    test = ctx.eval_data("test", s.evaluation.n_test)

    def progress(done: int, total: int) -> None:
        if ctx.progress is not None:
            ctx.progress("eval", {"job": name, "done": done, "total": total})

    res = evaluate_model(
        model,
        model_name,
        test,
        lams,
        metrics,
        range_slices=4,
        rpsnr_threshold=s.evaluation.rpsnr_threshold,
        diverse_quantile=s.evaluation.diverse_quantile,
        progress=progress,
        **common,
    )
    out = ctx.folder
    _write_endpoints(
        out.eval_file(model_name, "-endpoints.npz"),
        model,
        test,
        lams,
        m.kind == "baseline",
        [list(b.lam or ()) for b in ctx.models if b.kind == "baseline"],
        common,
    )
    write_csv(out.eval_file(model_name), res.table)
    write_csv(out.eval_file(model_name, "-ranges.csv"), res.ranges)
    arrays = {f"example_{k}": np.asarray(v) for k, v in res.examples.items() if _is_array(v)}
    arrays.update({f"diverse_{k}": np.asarray(v) for k, v in res.diverse.items() if _is_array(v)})
    write_npz(out.eval_file(model_name, "-images.npz"), **arrays)
    meta = {
        "examples": {k: v for k, v in res.examples.items() if not _is_array(v)},
        "diverse": {k: v for k, v in res.diverse.items() if not _is_array(v)},
        "seconds": res.seconds,
    }
    result: dict[str, Any] = {
        "model": model_name,
        "seconds": res.seconds,
        "device_seconds": float(res.seconds.get("device_seconds", 0.0)),
    }
    if m.kind == "baseline":
        # The validation metrics of this baseline, fully trained: the last row of its fidelity table, which the
        # search over baselines replays.
        from ..search.runner import finish_fidelity

        train_seconds = read_json(out.job_record(model_name))["cost"]["device_seconds"]
        final = finish_fidelity(ctx, model_name, list(lams[0]), model, seg, train_seconds)
        result["val_objective"] = float(final[s.search.objective])
        result["device_seconds"] += float(final["eval_seconds"])
    write_json(out.eval_file(model_name, "-meta.json"), {**meta, **{k: v for k, v in result.items() if k != "seconds"}})
    return result


def _write_endpoints(path: Path, model, test, lams, baseline: bool, grid: list, common: dict[str, Any]) -> None:
    """The test set reconstructed at the extreme λ of the baseline grid (a baseline: at its own λ, when it is one
    of them), for the report's λ-sensitivity (:func:`hyperrecon.evaluation.endpoint_lams`)."""
    import numpy as np

    from ..evaluation import endpoint_lams, endpoint_recons
    from ..io import write_npz

    ends = endpoint_lams(grid)
    if baseline:
        ends = ends[np.all(np.abs(ends - lams[0][None, :]) < 1e-9, axis=1)][:1]
    if not len(ends):
        return
    kw = {k: common[k] for k in ("device", "precision", "batch_size")}
    recons = endpoint_recons(model, test, ends, **kw)
    ids, subjects = np.asarray(test.ids, dtype=str), np.asarray(test.subjects, dtype=str)
    write_npz(path, lams=ends, recons=recons, ids=ids, subjects=subjects)


def _is_array(v: Any) -> bool:
    return hasattr(v, "shape") and getattr(v, "ndim", 0) >= 1


def eval_metrics(study: Study, *, has_seg: bool) -> list:
    """The metrics an evaluation job computes, built with the study's parameters (``ssim`` in its
    ``[evaluation] ssim_convention``): ``[evaluation] metrics``, the search objective, and ``dice`` where the run
    has a segmentation net; a metric that needs a segmentation net is left out where there is none."""
    from ..metrics import needs_seg
    from ..resolve import build_study_metrics

    names = dict.fromkeys([*study.evaluation.metrics, study.search.objective, "dice"])
    return build_study_metrics(study, [n for n in names if has_seg or not needs_seg(n)])


def _search_job(ctx: RunContext, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    from ..search.runner import run_search_job

    return run_search_job(ctx, name, spec)
