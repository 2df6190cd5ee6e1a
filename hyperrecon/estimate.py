"""Wall-time estimate of a run on this machine, from a short measured calibration (``hrbench run [--dry-run]``).

Two steps, kept apart so that the arithmetic can be checked on a hand-made calibration:

1. :func:`calibrate` measures, at the run's image size, batch size, device and precision, with the study's own
   data, loss and models (untrained weights: the cost of a step does not depend on them):

   - ``train_s[kind]``: seconds per training step of each model kind the run trains (``unet`` for the baselines
     and the AO ``scales`` job, ``hyper-<size>``, ``film``, ``seg``): the median of the real training loop's step
     intervals (:func:`hyperrecon.training.train`, its ``step`` callback) after ``warmup`` untimed steps;
   - ``eval_s[kind]``: seconds to evaluate one λ over the test slices (forward passes and every metric);
   - ``val_s[kind]``, ``test_s[kind]``: one search objective pass over the validation / test slices;
   - ``trial_s``: the search library's own cost per trial (Optuna samplers, GP included), from a search with the
     run's strategies and budget on an objective that costs nothing, run twice; ``search_once_s``: what the first
     of the two took more than the second (imports, the first GP fit), counted once; ``mo_trial_s``: the same for
     the multi-objective strategies (``search.mo_strategies``), when the run has objective pairs.

2. :func:`estimate` multiplies these by each job's work (steps, λ, trials) as :mod:`hyperrecon.runs.executors` runs it
   (a search job's trials and forward passes: :func:`search_counts`), and adds the data load it measured and a
   fixed allowance for merging and the report (:data:`REPORT_ALLOWANCE_S`, not calibrated: it does not scale with
   the models).

The estimate is for one worker; it ignores what the calibration cannot see (a busy machine later on, checkpoint
writes, Python overhead between jobs). Units: seconds throughout.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .config import Study
from .errors import ConfigError
from .runs.jobs import JobSpec, study_jobs
from .runs.models import model_specs

REPORT_ALLOWANCE_S = 8.0
"""Merge tables and write report.md with its figures: 5-8 s measured for the quick studies on the 2-core CPU
(reports/benchmarks/study_wall.md, "data, merge, report" less the data load)."""


@dataclass
class Calibration:
    """Measured unit costs (seconds) on one machine; see the module doc for each field."""

    train_s: dict[str, float]
    eval_s: dict[str, float]
    val_s: dict[str, float]
    test_s: dict[str, float]
    trial_s: float
    search_once_s: float = 0.0  # paid once per process: imports, first GP fit
    mo_trial_s: float = 0.0  # per multi-objective trial (search.mo_strategies), the objective costing nothing
    data_s: float = 0.0
    seconds: float = 0.0  # what the calibration itself took
    device: str = "cpu"
    precision: str = "fp32"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Estimate:
    total_s: float
    jobs: list[dict[str, Any]]  # name, phase, kind, work (what was multiplied), seconds
    fixed_s: dict[str, float] = field(default_factory=dict)  # data, report
    calibration: Calibration | None = None

    def by_phase(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for j in self.jobs:
            key = _PHASE_NAMES.get(j["kind"], "training")
            out[key] = out.get(key, 0.0) + j["seconds"]
        return {**out, **self.fixed_s}

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_s": round(self.total_s, 1),
            "by_phase": {k: round(v, 1) for k, v in self.by_phase().items()},
            "jobs": self.jobs,
            "calibration": self.calibration.to_dict() if self.calibration else None,
        }


_PHASE_NAMES = {"eval": "evaluation", "search": "search"}


def model_kind(study: Study, job: JobSpec) -> str:
    """The calibration key of the model a job trains or reads: ``unet``, ``hyper-<size>``, ``film`` or ``seg``."""
    kind = job.kind if job.kind not in ("eval", "search") else job.params.get("model_kind", "")
    specs = {m.name: m for m in model_specs(study)}
    if job.kind == "search":
        target = job.params["target"]
        spec = specs.get(target)
        kind, params = (spec.kind, spec.params) if spec is not None else ("baseline", {})
    elif job.kind == "eval":
        spec = specs.get(job.params["model"])
        params = spec.params if spec is not None else {}
    else:
        params = job.params
    if kind in ("baseline", "scales"):
        return "unet"
    if kind == "hyper":
        return f"hyper-{params['size']}"
    return kind  # film, seg


def _n_eval_lams(study: Study) -> int:
    return int(study.evaluation.grid_points) ** int(study.n_lams)


@dataclass(frozen=True)
class SearchCounts:
    """The work of one search job (:func:`hyperrecon.search.runner.run_search_job`): single-objective sampler
    trials, multi-objective trials, and forward passes over the validation / test slices (none for the baselines:
    their searches replay the trained grid)."""

    trials: int
    mo_trials: int
    val_passes: int
    test_passes: int


def search_counts(study: Study, job: JobSpec, *, has_seg: bool = True) -> SearchCounts:
    """Trials and passes of a search job as the runner runs it: the baselines' searches with every strategy
    (sampler+pruner) and seed, once per ``search.workers`` entry; a model's with its distinct samplers and
    ``search.model_seeds``, one validation pass per trial and a test pass per (strategy, seed); multi-objective
    searches with ``search.mo_strategies`` per objective pair (pairs with Dice only when ``has_seg``)."""
    from .search.plan import model_strategies, objective_pairs, search_seeds

    s = study.search
    budget = int(s.budget)
    models = job.params["target"] != "baselines"
    seeds = len(search_seeds(study, models=models))
    mo = len(objective_pairs(study, has_seg=has_seg)) * len(s.mo_strategies) * budget * seeds
    if not models:
        runs = 1 + sum(1 for w in s.workers if int(w) > 1)
        return SearchCounts(len(s.strategies) * budget * seeds * runs, mo, 0, 0)
    n_st = len(model_strategies(study))
    trials = n_st * budget * seeds
    return SearchCounts(trials, mo, trials + mo, n_st * seeds)


def probe_passes(study: Study, job: JobSpec) -> int:
    """Validation passes a training job makes besides its steps: the convergence check's evaluations
    (:class:`hyperrecon.convergence.ValidationTracker`: about 20 and one at the end, each over the model's λ or the
    fixed λ grid of a conditional model) and a baseline's fidelity probes for the multi-fidelity searches."""
    from .convergence import eval_every, val_lam_grid
    from .search.plan import baseline_fidelity_steps

    s = study
    if job.kind == "baseline":
        steps = int(s.baselines.steps or s.train.steps)
        return len(range(eval_every(steps), steps, eval_every(steps))) + 1 + len(baseline_fidelity_steps(s)) - 1
    if job.kind in ("hyper", "film"):
        steps = int(s.hyper.steps or s.train.steps)
        evals = len(range(eval_every(steps), steps, eval_every(steps))) + 1
        return evals * len(val_lam_grid(s.n_lams))
    return 0


def job_work(study: Study, job: JobSpec, *, has_seg: bool = True) -> tuple[str, float, str]:
    """(calibration entry, how many of it, description) for one job, as :mod:`hyperrecon.runs.executors` runs it (a
    search: its validation passes; :func:`search_counts` has the rest)."""
    s = study
    mk = model_kind(s, job)
    if job.kind == "seg":
        return f"train_s.{mk}", float(s.segmentation.steps), f"{s.segmentation.steps} steps"
    if job.kind == "baseline":
        n = s.baselines.steps or s.train.steps
        return f"train_s.{mk}", float(n), f"{n} steps"
    if job.kind in ("hyper", "film"):
        n = s.hyper.steps or s.train.steps
        return f"train_s.{mk}", float(n), f"{n} steps"
    if job.kind == "scales":
        if s.kind == "ao":  # two validation passes around a short equal-weight training (executors._scales_job)
            n = max(1, min(100, (s.baselines.steps or s.train.steps) // 3))
            return f"train_s.{mk}", float(n), f"{n} steps"
        return "val_s.unet", 2.0, "2 validation passes"
    if job.kind == "eval":
        n = 1 if job.params["model_kind"] == "baseline" else _n_eval_lams(s)
        return f"eval_s.{mk}", float(n), f"{n} λ x {s.evaluation.n_test} test slices"
    if job.kind == "search" and job.params["target"] == "baselines-live":  # trials train (hyperrecon.search.live)
        from .search.plan import live_steps

        n = _n_live_trials(s)
        return f"train_s.{mk}", float(n * live_steps(s)), f"{n} trials of {live_steps(s)} steps"
    if job.kind == "search":
        c = search_counts(s, job, has_seg=has_seg)
        what = f"{c.trials} trials" + (f" + {c.mo_trials} multi-objective" if c.mo_trials else "")
        return f"search.{mk}", float(c.val_passes), what
    return "", 0.0, "not estimated"


def _n_live_trials(study: Study) -> int:
    from .search.plan import live_budget

    return len(study.search.live.strategies) * live_budget(study) * int(study.search.live.seeds)


def estimate(study: Study, jobs: Sequence[JobSpec], cal: Calibration) -> Estimate:
    """Seconds per job and in total from a calibration (pure arithmetic; no timing here)."""
    rows: list[dict[str, Any]] = []
    has_seg = any(j.kind == "seg" for j in jobs)
    for job in jobs:
        entry, n, what = job_work(study, job, has_seg=has_seg)
        mk = model_kind(study, job)
        if job.kind == "search" and job.params["target"] == "baselines-live":  # at most: no trial pruned
            from .search.fidelity import fidelity_steps
            from .search.plan import live_steps

            reports = len(fidelity_steps(live_steps(study), study.search.fidelities, study.search.reduction_factor))
            n_live = _n_live_trials(study)
            seconds = n * cal.train_s[mk] + n_live * (cal.trial_s + reports * cal.val_s[mk])
        elif job.kind == "search":
            c = search_counts(study, job, has_seg=has_seg)
            seconds = c.trials * cal.trial_s + c.mo_trials * cal.mo_trial_s  # the samplers' own cost
            if c.val_passes:  # a model: forward passes (the baselines' searches replay the trained grid)
                seconds += n * cal.val_s[mk] + c.test_passes * cal.test_s[mk]
        elif job.kind == "eval":
            seconds = n * cal.eval_s[mk] + (cal.val_s[mk] if job.params["model_kind"] == "baseline" else 0.0)
        elif entry:
            table, key = entry.split(".", 1)
            seconds = n * getattr(cal, table)[key] + probe_passes(study, job) * cal.val_s.get(mk, 0.0)
        else:
            seconds = 0.0
        rows.append({"name": job.name, "phase": job.phase, "kind": job.kind, "work": what, "seconds": seconds})
    if any(j.kind == "search" for j in jobs):
        fixed_search = {"search start-up": cal.search_once_s}
    else:
        fixed_search = {}
    fixed = {"data": cal.data_s, **fixed_search, "report": REPORT_ALLOWANCE_S}
    total = sum(r["seconds"] for r in rows) + sum(fixed.values())
    return Estimate(total_s=total, jobs=rows, fixed_s=fixed, calibration=cal)


# ---------------------------------------------------------------------------------------------------------------
# Calibration


def _needed_kinds(study: Study, jobs: Sequence[JobSpec]) -> tuple[list[str], list[str]]:
    """(kinds trained, kinds evaluated or searched), in job order."""
    trained = list(dict.fromkeys(model_kind(study, j) for j in jobs if j.kind not in ("eval", "search")))
    read = list(
        dict.fromkeys(
            model_kind(study, j)
            for j in jobs
            if j.kind == "eval" or (j.kind == "search" and j.params["target"] != "baselines")
        )
    )
    if any(j.kind == "scales" for j in jobs) and study.kind == "sl" and "unet" not in read:
        read.append("unet")
    return trained, read


def model_of_kind(study: Study, kind: str, n_classes: int | None = None):
    """A fresh model of a calibration kind (``unet``, ``hyper-<size>``, ``film``, ``seg``) as the run builds it."""
    from .resolve import build_recon_model, build_seg_model

    if kind == "seg":
        if n_classes is None:
            raise ConfigError("model_of_kind: the 'seg' model needs n_classes")
        return build_seg_model(study, int(n_classes))
    if kind == "unet":
        return build_recon_model("unet", study)
    if kind == "film":
        return build_recon_model("film-unet", study)
    return build_recon_model("hyperunet", study, kind.split("-", 1)[1])


def task_of_kind(ctx: Any, kind: str) -> tuple[Any, Any]:
    """(training task, λ sampler) a model of ``kind`` trains on: unit loss scales (the step costs the same),
    λ = 0.5 for the U-Net, the uniform sampler (with the study's λ groups) for conditional models."""
    from .resolve import build_sampler
    from .samplers import FixedSampler

    s = ctx.study
    if kind == "seg":
        return ctx.seg_task(), None
    task = ctx.recon_task([1.0] * len(s.loss.terms))
    return task, FixedSampler([0.5] * s.n_lams) if kind == "unet" else build_sampler(s, "uniform")


def _step_seconds(model, task, sampler, settings, device: str, warmup: int) -> float:
    from .training import train

    stamps: list[float] = []

    def on_step(event: str, info: dict[str, Any]) -> None:
        if event == "step":
            stamps.append(time.perf_counter())

    train(model, task, sampler, settings, device=device, callbacks=[on_step], name="calibration")
    gaps = [b - a for a, b in zip(stamps[warmup:], stamps[warmup + 1 :], strict=False)]
    return statistics.median(gaps) if gaps else float("nan")


def calibrate(
    study: Study,
    bundle: Any,
    jobs: Sequence[JobSpec],
    *,
    device: str,
    precision: str,
    steps: int = 4,
    warmup: int = 2,
    data_s: float = 0.0,
) -> Calibration:
    """Measure the unit costs the run's ``jobs`` need (see the module doc); writes nothing.

    ``steps`` timed training steps per model kind after ``warmup`` untimed ones; evaluation and search passes are
    timed once after one untimed pass. ``bundle``: the run's loaded data (:func:`hyperrecon.runs.context.load_bundle`).
    """
    import dataclasses

    import numpy as np
    import torch

    from .evaluation import evaluate_model
    from .metrics import needs_seg
    from .runs.context import RunContext
    from .runs.executors import eval_metrics
    from .search import make_model_objective, search_model

    t_start = time.perf_counter()
    s = study
    ctx = RunContext(Path("calibration-not-written"), s, device, precision)  # nothing reads or writes run_dir
    ctx.bundle = bundle
    lam0 = [0.5] * s.n_lams
    trained, read = _needed_kinds(s, jobs)
    models: dict[str, Any] = {}

    def build(kind: str):
        if kind not in models:
            models[kind] = model_of_kind(s, kind, bundle.n_classes)
        return models[kind]

    train_s: dict[str, float] = {}
    with torch.random.fork_rng():
        torch.manual_seed(s.seed)
        for kind in trained:
            settings = dataclasses.replace(
                ctx.settings("calibration", warmup + steps + 1), checkpoint_every=0, log_every=warmup + steps + 1
            )
            task, sampler = task_of_kind(ctx, kind)
            train_s[kind] = _step_seconds(build(kind), task, sampler, settings, device, warmup)

        eval_s: dict[str, float] = {}
        val_s: dict[str, float] = {}
        test_s: dict[str, float] = {}
        seg = build("seg").to(device).eval() if needs_seg(s.search.objective) and bundle.n_classes else None
        metrics = eval_metrics(s, has_seg=seg is not None)
        objective = next(m for m in metrics if m.name == s.search.objective)
        n_classes = int(bundle.n_classes) if seg is not None else None
        test = ctx.eval_data("test", s.evaluation.n_test)
        val = ctx.eval_data("val", s.search.n_val)
        lams = np.array([lam0], dtype=float)
        for kind in read:
            model = build(kind).to(device).eval()
            common: dict[str, Any] = dict(
                seg_model=seg, n_classes=n_classes, device=device, precision=precision, batch_size=s.train.batch_size
            )
            eval_s[kind] = _timed(
                functools.partial(evaluate_model, model, kind, test, lams, metrics, range_slices=0, **common)
            )
            for data, out in ((val, val_s), (test, test_s)):
                fn = make_model_objective(
                    model,
                    data,
                    objective,
                    device=device,
                    precision=precision,
                    batch_size=s.train.batch_size,
                    seg_model=seg,
                    n_classes=n_classes,
                )
                out[kind] = _timed(lambda fn=fn: fn(np.array(lam0)))

    # The search library's own cost per trial (samplers, GP fits) on an objective that costs nothing: the run's
    # strategies and budget, twice (seeds s, s+1). The first call also pays what a process pays once (imports, the
    # first GP fit): counted once in the estimate, not per trial.
    trial_s = search_once_s = 0.0
    if any(j.kind == "search" for j in jobs) and s.search.budget > 0:

        def cheap(lam: np.ndarray) -> tuple[float, float]:
            return float(-np.square(lam - 0.3).sum()), 0.0

        times = []
        for seed in (s.seed, s.seed + 1):
            t0 = time.perf_counter()
            search_model(
                cheap,
                list(s.search.strategies),
                budget=s.search.budget,
                seeds=[seed],
                n_lams=s.n_lams,
                maximize=True,
                target="calibration",
            )
            times.append(time.perf_counter() - t0)
        trial_s = times[1] / (len(s.search.strategies) * s.search.budget)
        search_once_s = max(0.0, times[0] - times[1])
    mo_trial_s = 0.0
    if any(j.kind == "search" for j in jobs) and s.search.budget > 0 and s.search.objective_pairs:
        from .search.multi import search_multi

        t0 = time.perf_counter()
        search_multi(
            lambda lam: ((float(lam.sum()), float(np.square(lam).sum())), 0.0, lam),
            ["psnr", "hfen"],
            [True, False],
            list(s.search.mo_strategies),
            budget=s.search.budget,
            seeds=[s.seed],
            n_lams=s.n_lams,
            target="calibration",
            strategy_params=s.search.strategy_params,
        )
        mo_trial_s = (time.perf_counter() - t0) / (len(s.search.mo_strategies) * s.search.budget)
    return Calibration(
        train_s=train_s,
        eval_s=eval_s,
        val_s=val_s,
        test_s=test_s,
        trial_s=trial_s,
        search_once_s=search_once_s,
        mo_trial_s=mo_trial_s,
        data_s=data_s,
        seconds=time.perf_counter() - t_start,
        device=device,
        precision=precision,
    )


def _timed(fn) -> float:
    fn()  # untimed: first-call allocations and kernel selection
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------------------------
# Plans: the job list and its estimate, without a run folder


@dataclass
class Plan:
    jobs: list[JobSpec]
    estimate: Estimate
    device: str
    precision: str


def plan(study: Study, *, device: str = "auto", bundle: Any = None, jobs: Sequence[JobSpec] | None = None) -> Plan:
    """The jobs a new run of ``study`` executes and their estimated wall time; writes nothing (no run folder).

    ``bundle``: the data when already loaded (else loaded here, and its load time counted in the estimate).
    """
    from .resolve import resolve, resolve_device, resolve_precision
    from .runs.context import load_bundle

    resolve(study)
    dev = resolve_device(device)
    precision = resolve_precision(study.train.precision, dev)
    data_s = 0.0
    if bundle is None:
        t0 = time.perf_counter()
        bundle = load_bundle(study)
        data_s = time.perf_counter() - t0
    if jobs is None:
        has_labels = bundle.train.labels is not None and bundle.n_classes is not None
        jobs = study_jobs(study, has_labels=has_labels)
    cal = calibrate(study, bundle, jobs, device=dev, precision=precision, data_s=data_s)
    return Plan(jobs=list(jobs), estimate=estimate(study, jobs, cal), device=dev, precision=precision)


def format_seconds(seconds: float) -> str:
    """``95.2`` -> ``"1 min 35 s"``; under a minute ``"42 s"``."""
    s = int(round(seconds))
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"
