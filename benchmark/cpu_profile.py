"""Where the time of `hrbench run` goes on a CPU, per phase and per kernel, against the FLOP count of the work and
the two-core AVX2 peak; on the native path and under an AVX2-only emulation.

Each ISA variant runs in its own process (the kernels are picked at start-up): ``native`` as the machine is,
``avx2`` with ``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2``, which makes a CPU with AVX512-BF16 behave like
an AVX2-only one (no AVX-512, no bf16 dot products; ``train.precision = "auto"`` then picks fp32, as it does on such
a CPU: hyperrecon.resolve.isa_capped_below_bf16). The variant runs the study in-process as ``hrbench run`` does
(prepare, jobs through the ledger, merge, report) into a temporary folder and measures:

- phases: data (prepare_run: data load and run folder), training, evaluation, search (each job's
  ``job_wall_seconds``), report, other (ledger, merge); the wall excludes the time spent starting, stopping and
  reading the profiler between jobs (``profiler_s`` in the notes);
- kernels: torch.profiler on a sample of each training job (``--sample`` steps after ``--skip``; the job's own step
  intervals outside the sample give the step time, so the profiler's overhead does not inflate the totals) and on
  every evaluation and search job in full. Operator self times are summed into convolution, BatchNorm, matmul
  (hypernetwork heads), optimiser (Adam), FFT (the forward model), other torch ops, and untraced time (Python,
  NumPy metrics, Optuna) = wall minus traced ops. A training job's categories = the sample's shares x its steps x
  the step time; the rest of the job (model build, checkpoints, weights) is "job overhead";
- FLOPs: torch.utils.flop_counter.FlopCounterMode over one training step (forward + backward) of each model kind
  and over one evaluation / search pass, times the work of each job (steps, λ, trials, as hyperrecon.estimate
  counts it). Convolutions and matmuls only (FFT, elementwise and metrics are not counted: a lower bound);
- the assumed peak of two AVX2 cores: cores x 2 FMA units x 8 fp32 lanes x 2 flops x clock (``cpu MHz`` of
  /proc/cpuinfo, or --ghz), and the time the counted FLOPs need at that peak.

    python benchmark/cpu_profile.py --study ao-knee --profile quick --isa native,avx2        # the table (minutes)
    python benchmark/cpu_profile.py --study sl-knee-denoise --profile smoke --isa native --out /tmp/p   # seconds
    python benchmark/cpu_profile.py --step-shares unet,hyper-M --threads 1 --out reports/benchmarks/cpu_step_shares
    python benchmark/cpu_profile.py --flops-only --study all --out reports/benchmarks/cpu_work   # counts, no timing

Writes ``<out>.csv`` (one row per variant, phase and category) and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from common import ISA_ENV  # noqa: E402  (the CPU kinds, shared with study_wall.py)

PHASES = ("data", "training", "evaluation", "search", "report", "other")
CATEGORIES = ("convolution", "batchnorm", "matmul", "optimiser", "fft", "other ops", "untraced", "job overhead")
PHASE_OF_KIND = {"eval": "evaluation", "search": "search"}
# The rate a real AVX2-only CPU reached on these convolutions: issue 16's 2-core AMD EPYC ran a 64², B = 32 U-Net
# step (40.9 GFLOP counted) in 0.65 s = 63 GFLOP/s, 38% of its two-core peak (166 GFLOP/s at 2.6 GHz); the AVX2
# emulation here reached 35-45% of one core's peak on one thread (cpu_step_shares.md, busy machine).
MEASURED_AVX2_FRACTION = 0.38
BUDGET_S, FIXED_S = 300.0, 30.0  # issue 16's 5 minutes; start-up, data, calibration, report, search samplers
FLOPS_PER_CYCLE_AVX2 = 2 * 8 * 2  # per core: 2 FMA units x 8 fp32 lanes x 2 flops (multiply + add)


def category(op: str) -> str:
    """The kernel category of a profiler operator name (``aten::mkldnn_convolution`` -> ``convolution``)."""
    name = op.lower()
    if re.search(r"conv(olution|2d|_transpose|_depthwise)", name):
        return "convolution"
    if "batch_norm" in name:
        return "batchnorm"
    if "adam" in name or name.startswith("optimizer."):
        return "optimiser"
    if "fft" in name:
        return "fft"
    if re.search(r"(^|::|_)(mm|addmm|bmm|baddbmm|matmul|linear)($|_)", name):
        return "matmul"
    return "other ops"


def op_categories(prof) -> dict[str, float]:
    """Seconds of self time per category over a finished profiler's events (CPU operators on the main thread)."""
    out = dict.fromkeys(CATEGORIES[:6], 0.0)
    for evt in prof.key_averages():
        if evt.key.startswith("ProfilerStep"):
            continue
        out[category(evt.key)] += evt.self_cpu_time_total / 1e6
    return out


def peak_gflops(cores: int, ghz: float) -> float:
    """The fp32 AVX2 peak in GFLOP/s: cores x 2 FMA units x 8 lanes x 2 flops x GHz."""
    return cores * FLOPS_PER_CYCLE_AVX2 * ghz


def cpu_ghz() -> float | None:
    """The clock from /proc/cpuinfo's first ``cpu MHz`` line, in GHz (None where there is none)."""
    try:
        m = re.search(r"^cpu MHz\s*:\s*([0-9.]+)", Path("/proc/cpuinfo").read_text(), re.M)
    except OSError:
        return None
    return float(m.group(1)) / 1000 if m else None


# ---------------------------------------------------------------------------------------------------------------
# One variant (child process)


class Profiler:
    """The run's progress hook: profiles a sample of each training job and every evaluation/search job in full."""

    def __init__(self, skip: int, sample: int) -> None:
        self.skip, self.sample = skip, sample
        self.jobs: dict[str, dict] = {}
        self._prof = None
        self._job = None
        self._stamps: list[float] = []
        self.overhead_s = 0.0

    def __call__(self, event: str, info: dict) -> None:
        t0 = time.perf_counter()
        self._handle(event, info)
        if event != "step":
            self.overhead_s += time.perf_counter() - t0  # starting, stopping and reading the profiler

    def _handle(self, event: str, info: dict) -> None:
        import torch.profiler as tp

        if event == "job-start":
            self._job, self._stamps = info["job"], [time.perf_counter()]
            self._sampled = False
            self._prof = tp.profile(activities=[tp.ProfilerActivity.CPU], schedule=self._schedule(info["job"]))
            self._prof.__enter__()
        elif event == "step" and self._prof is not None and info.get("job") == self._job:
            self._stamps.append(time.perf_counter())
            self._prof.step()
        elif event in ("job-done", "job-superseded") and self._prof is not None:
            self._prof.__exit__(None, None, None)
            cats = op_categories(self._prof)
            self.jobs[self._job] = {"categories": cats, "stamps": self._stamps, "end": time.perf_counter()}
            self._prof = None

    def _schedule(self, job: str):
        import torch.profiler as tp

        if job.startswith(("eval-", "search-")) or job == "scales":
            return None  # the whole job
        # Steps (ProfilerStep) skip..skip+sample-1 are recorded; the rest run unprofiled.
        return tp.schedule(wait=max(self.skip - 1, 0), warmup=1, active=self.sample, repeat=1)


def count_flops(study, ctx, kinds_trained: list[str], kinds_read: list[str]) -> dict[str, dict[str, float]]:
    """FLOPs (convolutions and matmuls) of one training step per kind, and of one evaluation / validation / test
    pass per kind (all slices of the split at one λ), by torch.utils.flop_counter.FlopCounterMode."""
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from hyperrecon.estimate import model_of_kind, task_of_kind
    from hyperrecon.evaluation import _forward, _inference, _lam_row

    n_classes = ctx.bundle.n_classes
    out: dict[str, dict[str, float]] = {"train": {}, "eval": {}, "val": {}, "test": {}}
    b = study.train.batch_size
    gen = torch.Generator().manual_seed(0)
    for kind in kinds_trained:
        model = model_of_kind(study, kind, n_classes)
        task, sampler = task_of_kind(ctx, kind)
        idx = torch.arange(min(b, task.n_samples))
        lam = sampler.sample(len(idx), task.n_lams, gen, 0) if sampler is not None else None
        counter = FlopCounterMode(display=False)
        with counter:
            total, dc, _ = task.batch_loss(model, idx, lam)
            (sampler.reduce(total, dc, 0) if sampler is not None else total.mean()).backward()
        out["train"][kind] = counter.get_total_flops() * b / len(idx)
    splits = {
        "eval": ("test", study.evaluation.n_test),
        "val": ("val", study.search.n_val),
        "test": ("test", study.evaluation.n_test),
    }
    for kind in kinds_read:
        model = model_of_kind(study, kind, n_classes)
        for key, (split, limit) in splits.items():
            data = ctx.eval_data(split, limit)
            counter = FlopCounterMode(display=False)
            with counter, _inference([model], torch.device("cpu"), "fp32"):
                row = _lam_row(model, np.full(study.n_lams, 0.5), torch.device("cpu"))
                for start in range(0, len(data), b):
                    _forward(model, data.inputs[start : start + b], row)
            out[key][kind] = counter.get_total_flops()
    return out


def job_flops(study, job, flops: dict[str, dict[str, float]]) -> float:
    """Counted FLOPs of one job: its work (hyperrecon.estimate.job_work) x the FLOPs of one unit of it."""
    from hyperrecon.estimate import job_work, model_kind, probe_passes, search_counts

    entry, n, _ = job_work(study, job)
    kind = model_kind(study, job)
    if job.kind == "search":
        c = search_counts(study, job)  # the baselines' searches replay the trained grid: no passes
        return c.val_passes * flops["val"].get(kind, 0.0) + c.test_passes * flops["test"].get(kind, 0.0)
    if job.kind == "eval":
        return n * flops["eval"][kind] + (flops["val"][kind] if job.params["model_kind"] == "baseline" else 0.0)
    if entry.startswith("train_s."):  # + the convergence check's and the fidelity probes' validation passes
        return n * flops["train"][kind] + probe_passes(study, job) * flops["val"].get(kind, 0.0)
    if entry.startswith("val_s."):
        return n * flops["val"][kind]
    return 0.0


def run_variant(args: argparse.Namespace) -> dict:
    import torch

    from hyperrecon.config import load_study
    from hyperrecon.estimate import _needed_kinds
    from hyperrecon.reporting import write_report
    from hyperrecon.runs.jobs import study_jobs
    from hyperrecon.runs.orchestrate import context_for, execute, prepare_run

    if args.threads:
        torch.set_num_threads(args.threads)
    study = load_study(args.study, args.profile, args.sets)
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        run = prepare_run(study, out=Path(tmp) / "run", resume=False, storage=None, device="cpu")
        t_data = time.perf_counter() - t_start
        hook = Profiler(args.skip, args.sample)
        execute(run, progress=hook, device="cpu")
        t0 = time.perf_counter()
        write_report(run.run_dir)
        t_report = time.perf_counter() - t0
        wall = time.perf_counter() - t_start
        records = {p.stem: json.loads(p.read_text()) for p in (run.run_dir / "jobs").glob("*.json")}
        ctx = context_for(run)
        has_labels = ctx.bundle.train.labels is not None and ctx.bundle.n_classes is not None
        jobs = study_jobs(study, has_labels=has_labels)
        flops = count_flops(study, ctx, *_needed_kinds(study, jobs))
    phases = dict.fromkeys(PHASES, 0.0)
    phases.update(data=t_data, report=t_report)
    cats: dict[str, dict[str, float]] = {
        p: dict.fromkeys(CATEGORIES, 0.0) for p in ("training", "evaluation", "search")
    }
    gflop = dict.fromkeys(("training", "evaluation", "search"), 0.0)
    for job in jobs:
        rec, prof = records[job.name], hook.jobs.get(job.name)
        phase = PHASE_OF_KIND.get(job.kind, "training")
        job_wall = float(rec["job_wall_seconds"])
        phases[phase] += job_wall
        gflop[phase] += job_flops(study, job, flops) / 1e9
        if prof is None:
            cats[phase]["untraced"] += job_wall
            continue
        share, traced_wall = _shares(prof, args.skip, args.sample)
        if traced_wall is None:  # profiled in full
            traced = sum(prof["categories"].values())
            for c, v in prof["categories"].items():
                cats[phase][c] += v
            cats[phase]["untraced"] += max(job_wall - traced, 0.0)
            continue
        steps_s = traced_wall  # the job's step time x its steps (unprofiled steps' median)
        for c, v in share.items():
            cats[phase][c] += v * steps_s
        cats[phase]["job overhead"] += max(job_wall - steps_s, 0.0)
    # The profiler starts and stops between jobs (outside job_wall_seconds): not part of the run.
    phases["other"] = max(wall - sum(phases.values()) - hook.overhead_s, 0.0)
    wall -= hook.overhead_s
    return {
        "isa": args.isa,
        "env": ISA_ENV[args.isa],
        "wall_s": wall,
        "profiler_s": hook.overhead_s,
        "phases": phases,
        "categories": cats,
        "gflop": gflop,
        "flops_per_unit": flops,
        "precision": run.precision,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
    }


def run_step_shares(args: argparse.Namespace) -> dict:
    """``--step-shares``: kernel shares of the real training loop's steps, per model kind, in this process's ISA.

    Shares of one profiled span are ratios of times measured together, so they hold up better on a busy machine
    than the absolute times (which the table also gives, with the load)."""
    import dataclasses

    import torch
    import torch.profiler as tp

    from hyperrecon.config import load_study
    from hyperrecon.estimate import model_of_kind, task_of_kind
    from hyperrecon.resolve import resolve_precision
    from hyperrecon.runs.context import RunContext, load_bundle
    from hyperrecon.training import train

    if args.threads:
        torch.set_num_threads(args.threads)
    study = load_study(args.study, args.profile, args.sets)
    precision = resolve_precision(study.train.precision, "cpu")
    ctx = RunContext(Path("not-written"), study, "cpu", precision)
    ctx.bundle = load_bundle(study)
    kinds = {}
    for kind in [k.strip() for k in args.step_shares.split(",") if k.strip()]:
        model = model_of_kind(study, kind, ctx.bundle.n_classes)
        task, sampler = task_of_kind(ctx, kind)
        warm = dataclasses.replace(ctx.settings("profile", args.skip), checkpoint_every=0)
        train(model, task, sampler, warm, device="cpu")  # untimed: first-call allocations, kernel choice
        timed = dataclasses.replace(ctx.settings("profile", args.sample), checkpoint_every=0)
        t0 = time.perf_counter()
        with tp.profile(activities=[tp.ProfilerActivity.CPU]) as prof:
            train(model, task, sampler, timed, device="cpu")
        wall = time.perf_counter() - t0
        cats = op_categories(prof)
        kinds[kind] = {
            "step_s": wall / args.sample,
            **{c: v / wall for c, v in cats.items()},
            "untraced": max(1.0 - sum(cats.values()) / wall, 0.0),
        }
    return {
        "isa": args.isa,
        "env": ISA_ENV[args.isa],
        "precision": precision,
        "kinds": kinds,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
    }


def write_share_table(results: list[dict], out: Path, meta: dict) -> str:
    rows = [
        {
            "isa": r["isa"],
            "precision": r["precision"],
            "model": k,
            "step_s": round(v["step_s"], 4),
            **{c: round(v[c], 3) for c in (*CATEGORIES[:6], "untraced")},
        }
        for r in results
        for k, v in r["kinds"].items()
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    cols = (*CATEGORIES[:6], "untraced")
    lines = [f"# Kernel shares of a training step ({meta['study']}, {meta['profile']})", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items()]
    lines += ["", "| variant | model | step (s) | " + " | ".join(cols) + " |", "|---|---|---:|" + "---:|" * len(cols)]
    for r in rows:
        lines.append(
            f"| {r['isa']} ({r['precision']}) | {r['model']} | {r['step_s']:.3f} | "
            + " | ".join(f"{100 * r[c]:.0f}%" for c in cols)
            + " |"
        )
    table = "\n".join(lines) + "\n"
    out.with_suffix(".md").write_text(table)
    return table


def _shares(prof: dict, skip: int, sample: int) -> tuple[dict[str, float], float | None]:
    """(category shares of the sampled steps' wall, the job's total step seconds) of a sampled training job; (.., None)
    for a job profiled in full (no step events)."""
    import statistics

    stamps = prof["stamps"]
    gaps = [b - a for a, b in zip(stamps[:-1], stamps[1:], strict=True)]  # gaps[0]: start -> end of step 1
    if len(gaps) < 2:
        return {}, None
    sampled = gaps[skip : skip + sample]
    plain = gaps[1:skip] + gaps[skip + sample :]  # neither the first step nor the profiled ones
    step_s = statistics.median(plain) if plain else statistics.median(sampled)
    sampled_wall = sum(sampled)
    traced = prof["categories"]
    share = {c: v / sampled_wall for c, v in traced.items()}
    share["untraced"] = max(1.0 - sum(share.values()), 0.0)
    return share, step_s * len(gaps)


def study_work(name: str, profile: str, sets: list[str]) -> dict:
    """Counted GFLOP per phase of a study's run and per training step of each model kind; no timing."""
    from hyperrecon.config import load_study
    from hyperrecon.estimate import _needed_kinds
    from hyperrecon.runs.context import RunContext, load_bundle
    from hyperrecon.runs.jobs import study_jobs

    study = load_study(name, profile, sets)
    ctx = RunContext(Path("not-written"), study, "cpu", "fp32")
    ctx.bundle = load_bundle(study)
    has_labels = ctx.bundle.train.labels is not None and ctx.bundle.n_classes is not None
    jobs = study_jobs(study, has_labels=has_labels)
    flops = count_flops(study, ctx, *_needed_kinds(study, jobs))
    gflop = dict.fromkeys(("training", "evaluation", "search"), 0.0)
    for job in jobs:
        gflop[PHASE_OF_KIND.get(job.kind, "training")] += job_flops(study, job, flops) / 1e9
    return {
        "study": name,
        "gflop": gflop,
        "step_gflop": {k: v / 1e9 for k, v in flops["train"].items()},
        "size": study.data.image_size,
        "batch": study.train.batch_size,
    }


def write_work_table(rows: list[dict], out: Path, peak: float, meta: dict) -> str:
    """The counted work of each study against the AVX2 peak (``--flops-only``)."""
    flat = [
        {
            "study": r["study"],
            **{f"{k}_gflop": round(v, 1) for k, v in r["gflop"].items()},
            "total_gflop": round(sum(r["gflop"].values()), 1),
            "seconds_at_peak": round(sum(r["gflop"].values()) / peak, 1),
            **{f"step_gflop_{k}": round(v, 3) for k, v in r["step_gflop"].items()},
        }
        for r in rows
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(k for f in flat for k in f))
    with open(out.with_suffix(".csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(flat)
    lines = ["# Counted work of `hrbench run` against the two-core AVX2 peak", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items()]
    lines += [
        "",
        "| study | size, batch | training GFLOP | evaluation GFLOP | search GFLOP | seconds at AVX2 peak | "
        f"seconds at {MEASURED_AVX2_FRACTION:.0%} of peak | fits 5 min | GFLOP per training step |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r, f in zip(rows, flat, strict=True):
        steps = ", ".join(f"{k} {v:.2f}" for k, v in r["step_gflop"].items())
        at_rate = f["seconds_at_peak"] / MEASURED_AVX2_FRACTION
        lines.append(
            f"| {r['study']} | {r['size']}², B = {r['batch']} | {f['training_gflop']} | "
            f"{f['evaluation_gflop']} | {f['search_gflop']} | {f['seconds_at_peak']} | "
            f"{at_rate:.1f} | {'yes' if at_rate + FIXED_S <= BUDGET_S else 'no'} | {steps} |"
        )
    table = "\n".join(lines) + "\n"
    out.with_suffix(".md").write_text(table)
    return table


# ---------------------------------------------------------------------------------------------------------------
# Parent: one child per variant, then the tables


def write_tables(results: list[dict], out: Path, meta: dict) -> str:
    rows = []
    for r in results:
        for phase, sec in r["phases"].items():
            rows.append(
                {
                    "isa": r["isa"],
                    "precision": r["precision"],
                    "phase": phase,
                    "category": "",
                    "seconds": round(sec, 2),
                    "gflop": round(r["gflop"].get(phase, 0.0), 2),
                }
            )
        for phase, cats in r["categories"].items():
            for c, sec in cats.items():
                rows.append(
                    {
                        "isa": r["isa"],
                        "precision": r["precision"],
                        "phase": phase,
                        "category": c,
                        "seconds": round(sec, 2),
                        "gflop": "",
                    }
                )
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    names = [f"{r['isa']} ({r['precision']})" for r in results]
    peak = meta["peak_gflops"]
    lines = [f"# Where the time of `hrbench run` goes ({meta['study']}, {meta['profile']})", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items()]
    lines += [
        "",
        "## Phases (wall seconds) and counted work",
        "",
        "| phase | "
        + " | ".join(f"{n} s" for n in names)
        + " | GFLOP (conv + matmul) | "
        + " | ".join(f"{n} GFLOP/s" for n in names)
        + " | at AVX2 peak (s) |",
        "|---|" + "---:|" * (2 * len(names) + 2),
    ]
    for phase in PHASES:
        g = results[0]["gflop"].get(phase, 0.0)
        secs = [r["phases"][phase] for r in results]
        rates = [f"{g / s:.1f}" if g and s else "" for s in secs]
        work = [f"{g:.1f}", *rates, f"{g / peak:.2f}"] if g else [""] * (len(secs) + 2)
        lines.append(f"| {phase} | " + " | ".join([f"{s:.1f}" for s in secs] + work[:1] + work[1:]) + " |")
    total_g = sum(results[0]["gflop"].values())
    lines.append(
        "| **total** | "
        + " | ".join(f"**{r['wall_s']:.1f}**" for r in results)
        + f" | {total_g:.1f} | "
        + " | ".join(f"{total_g / r['wall_s']:.1f}" for r in results)
        + f" | {total_g / peak:.2f} |"
    )
    for phase in ("training", "evaluation", "search"):
        lines += [
            "",
            f"## {phase}: kernels (seconds, share of the phase)",
            "",
            "| category | " + " | ".join(names) + " |",
            "|---|" + "---:|" * len(names),
        ]
        for c in CATEGORIES:
            cells = []
            for r in results:
                v, tot = r["categories"][phase][c], max(r["phases"][phase], 1e-9)
                cells.append(f"{v:.1f} ({100 * v / tot:.0f}%)")
            lines.append(f"| {c} | " + " | ".join(cells) + " |")
    conv = [(r["categories"]["training"]["convolution"], r) for r in results]
    lines += [
        "",
        "Convolution throughput in training (counted training GFLOP, nearly all convolutions, over the "
        "convolution kernels' time): "
        + ", ".join(f"{r['isa']} {results[0]['gflop']['training'] / c:.1f} GFLOP/s" for c, r in conv if c > 0)
        + f"; AVX2 peak {peak:.0f} GFLOP/s.",
    ]
    table = "\n".join(lines) + "\n"
    out.with_suffix(".md").write_text(table)
    return table


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    ap.add_argument("--study", default="ao-knee")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--set", action="append", default=[], dest="sets", help="study override key=value (repeatable)")
    ap.add_argument("--isa", default="native,avx2", help=f"comma list of {', '.join(ISA_ENV)}")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave as is)")
    ap.add_argument("--skip", type=int, default=5, help="unprofiled first steps of each training job")
    ap.add_argument("--sample", type=int, default=5, help="profiled steps of each training job")
    ap.add_argument("--ghz", type=float, default=0.0, help="clock for the peak (0: cpu MHz of /proc/cpuinfo)")
    ap.add_argument("--cores", type=int, default=0, help="cores for the peak (0: os.cpu_count())")
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "benchmarks" / "cpu_profile")
    ap.add_argument(
        "--flops-only",
        action="store_true",
        help="count the work of --study (a comma list or 'all') "
        "against the peak; run nothing, time nothing (valid on a busy machine)",
    )
    ap.add_argument(
        "--step-shares",
        default="",
        metavar="KINDS",
        help="instead of a whole run: kernel shares of --sample training steps (after --skip untimed "
        "ones) of each model kind (comma list of unet, hyper-S, hyper-M, hyper-L, film, seg)",
    )
    ap.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    ghz = args.ghz or cpu_ghz() or 0.0
    cores = args.cores or os.cpu_count() or 1
    peak = peak_gflops(cores, ghz)
    rule = f"{cores} cores x 2 FMA units x 8 fp32 lanes x 2 flops x {ghz:.2f} GHz (AVX2, fp32)"
    if args.flops_only:
        from hyperrecon.config import bundled_studies

        names = list(bundled_studies()) if args.study == "all" else args.study.split(",")
        rows = [study_work(n, args.profile, args.sets) for n in names]
        meta = {
            "profile": args.profile,
            "sets": " ".join(args.sets) or "none",
            "counted": "convolutions and matmuls by torch.utils.flop_counter.FlopCounterMode (FFT, elementwise, "
            "BatchNorm and metrics not counted: a lower bound); training = forward + backward, and the validation "
            "passes of the convergence check and the fidelity probes",
            "peak": f"{peak:.1f} GFLOP/s = {rule}",
            "measured rate": f"{MEASURED_AVX2_FRACTION:.0%} of that peak (issue 16's AVX2 CPU: a 40.9 GFLOP U-Net step "
            "in 0.65 s); fits 5 min: the counted work at that rate plus "
            f"{FIXED_S:.0f} s (start-up, data, calibration, report, search samplers) <= {BUDGET_S:.0f} s",
            "date": time.strftime("%Y-%m-%d"),
        }
        print(write_work_table(rows, args.out, peak, meta))
        return
    isas = [x.strip() for x in args.isa.split(",") if x.strip()]
    bad = [x for x in isas if x not in ISA_ENV]
    if bad or not isas:
        raise SystemExit(
            f"error: --isa: unknown {', '.join(map(repr, bad)) or 'empty list'}; valid: {', '.join(ISA_ENV)}"
        )
    if args.skip < 2 or args.sample < 1:
        raise SystemExit(f"error: --skip must be >= 2 and --sample >= 1, got {args.skip} and {args.sample}")
    if args.child is not None:
        args.isa = isas[0]
        args.child.write_text(json.dumps(run_step_shares(args) if args.step_shares else run_variant(args)))
        return
    results = []
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        for isa in isas:
            dest = Path(tmp) / f"{isa}.json"
            cmd = [
                sys.executable,
                __file__,
                *(argv if argv is not None else sys.argv[1:]),
                "--isa",
                isa,
                "--child",
                str(dest),
            ]
            proc = subprocess.run(cmd, env={**os.environ, **ISA_ENV[isa]}, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(
                    f"error: variant {isa} failed (exit {proc.returncode}): "
                    f"{proc.stderr.strip().splitlines()[-1:] or ''}"
                )
            results.append(json.loads(dest.read_text()))
            r = results[-1]
            if args.step_shares:
                continue
            print(
                f"{isa:7s} {r['precision']}  wall {r['wall_s']:.1f} s  "
                + ", ".join(f"{k} {v:.1f}" for k, v in r["phases"].items()),
                flush=True,
            )
    from hyperrecon.runs.context import device_name

    if args.step_shares:
        meta = {
            "device": f"{device_name('cpu')} (CPU), {cores} cores",
            "torch": results[0]["torch"],
            "threads": results[0]["threads"],
            "variants": "; ".join(
                f"{r['isa']}: {' '.join(f'{k}={v}' for k, v in r['env'].items()) or 'as is'}"
                f", ATen {r['cpu_capability']}, precision {r['precision']}"
                for r in results
            ),
            "study": args.study,
            "profile": args.profile,
            "sets": " ".join(args.sets) or "none",
            "steps": f"{args.sample} profiled after {args.skip} untimed, real training loop (study data and loss)",
            "shares": "operator self time / wall of the profiled steps; untraced = the rest (Python, sync)",
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "load average at start": round(load0, 2),
        }
        print(write_share_table(results, args.out, meta))
        return
    meta = {
        "device": f"{device_name('cpu')} (CPU), {cores} cores, clock {ghz:.2f} GHz",
        "torch": results[0]["torch"],
        "threads": results[0]["threads"],
        "variants": "; ".join(
            f"{r['isa']}: {' '.join(f'{k}={v}' for k, v in r['env'].items()) or 'as is'}, "
            f"ATen {r['cpu_capability']}, precision {r['precision']} (train.precision = auto)"
            for r in results
        ),
        "study": args.study,
        "profile": args.profile,
        "sets": " ".join(args.sets) or "none",
        "peak_gflops": round(peak, 1),
        "peak rule": rule,
        "kernels": f"torch.profiler self times; training jobs sampled ({args.sample} steps after {args.skip}), "
        "evaluation and search in full",
        "profiler start/stop (excluded from the walls)": ", ".join(
            f"{r['isa']} {r['profiler_s']:.1f} s" for r in results
        ),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "load average at start": round(load0, 2),
    }
    print(write_tables(results, args.out, meta))


if __name__ == "__main__":
    main()
