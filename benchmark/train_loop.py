"""Time the real training loop (``hyperrecon.training.train``) on a study's own data, loss and models.

``train_step.py`` times a bare step on random tensors; this script times what ``hrbench run`` executes for each
training job: batch indexing, the study's composite loss (e.g. AO: FFT data consistency, TV, weight L1), the λ
sampler (DHS ranks per-sample losses), the non-finite guard, Adam and the schedule. It is the per-step figure
behind the end-to-end wall time of ``study_wall.py``.

Example (the quick ao-knee jobs, fused Adam against PyTorch's default single-tensor Adam, 2 threads)::

    python benchmark/train_loop.py --study ao-knee --profile quick --threads 2 --adam fused,default --reuse on,off

Each round trains every configuration (job x Adam x weight reuse) for ``--steps`` steps from a fresh model, in
rotated order so
a busy neighbour slows all configurations alike; the first ``--skip`` steps of each call are not timed. Per-step
wall times come from the loop's ``step`` callback. Results: ``<out>.csv`` and ``<out>.md`` (default
``reports/benchmarks/train_loop``).
"""

from __future__ import annotations

import argparse
import functools
import re
import tempfile
import time
from pathlib import Path

import torch
from common import (
    ROOT,
    device_name,
    keep_freed_memory,
    parse_list,
    quartiles,
    rotated,
    wait_for_quiet,
    write_outputs,
)

from hyperrecon.config import load_study
from hyperrecon.errors import HyperReconError
from hyperrecon.resolve import build_recon_model, build_sampler, resolve
from hyperrecon.runs.orchestrate import RunContext
from hyperrecon.samplers import FixedSampler
from hyperrecon.training import train

JOBS = (
    "baseline",
    "hyper-S-uniform",
    "hyper-S-dhs",
    "hyper-M-uniform",
    "hyper-M-dhs",
    "hyper-L-uniform",
    "film-uniform",
)
_ADAM = torch.optim.Adam


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--study", default="ao-knee")
    p.add_argument("--profile", default="quick")
    p.add_argument(
        "--jobs",
        default="baseline,hyper-S-uniform,hyper-S-dhs,hyper-M-uniform,hyper-M-dhs,film-uniform",
        help=f"from {', '.join(JOBS)}",
    )
    p.add_argument(
        "--adam",
        default="fused",
        help="fused (what training uses), default (PyTorch's single-tensor "
        "loop, the CPU default) or foreach; comma list",
    )
    p.add_argument(
        "--reuse",
        default="on",
        help="HyperUNet.reuse_weights_for_l1: on (what training uses), off "
        "(the AO weight-L1 term generates the weights a second time); comma list",
    )
    p.add_argument("--steps", type=int, default=30, help="steps per training call")
    p.add_argument("--skip", type=int, default=5, help="untimed first steps of each call")
    p.add_argument("--rounds", type=int, default=2, help="training calls per configuration")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave as is)")
    p.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    p.add_argument(
        "--malloc",
        choices=("keep", "default"),
        default="default",
        help="keep: glibc keeps freed memory (hyperrecon.models.keep_freed_memory); default: as hrbench runs",
    )
    p.add_argument("--out", default=str(ROOT / "reports/benchmarks/train_loop"), help="output stem (.csv, .md)")
    return p.parse_args(argv)


def adam_factory(kind: str):
    """``torch.optim.Adam`` with the implementation forced (training.py asks for fused on CPU/CUDA)."""
    if kind == "fused":
        return _ADAM
    if kind not in ("default", "foreach"):
        raise SystemExit(f"error: --adam: expected fused, default or foreach, got {kind!r}")

    @functools.wraps(_ADAM)
    def make(params, *a, **kw):
        kw.pop("fused", None)
        return _ADAM(params, *a, foreach=(kind == "foreach"), **kw)

    return make


def _stamp(stamps: list[float], event: str, _info: dict) -> None:
    if event == "step":
        stamps.append(time.perf_counter())


def build(ctx: RunContext, job: str):
    """(model, sampler) of a job name as ``hrbench run`` builds them."""
    s = ctx.study
    if job == "baseline":
        return build_recon_model("unet", s), FixedSampler([0.5] * s.n_lams)
    kind, *rest = job.split("-")
    if kind == "hyper":
        size, sampler = rest
        return build_recon_model("hyperunet", s, size), build_sampler(s, sampler)
    return build_recon_model("film-unet", s), build_sampler(s, rest[0])


def check_jobs(jobs: list[str]) -> None:
    """``baseline``, ``hyper-<S|M|L>-<sampler>`` or ``film-<sampler>``; one error line otherwise."""
    for job in jobs:
        if not re.fullmatch(r"baseline|hyper-[SML]-[\w-]+|film-[\w-]+", job):
            raise SystemExit(
                f"error: --jobs: unknown job {job!r}; expected baseline, hyper-<S|M|L>-<sampler> or "
                f"film-<sampler>, e.g. {', '.join(JOBS)}"
            )


def main(argv: list[str] | None = None) -> None:
    try:
        run(parse_args(argv))
    except HyperReconError as exc:  # a bad study, profile or sampler name: one line, no traceback
        raise SystemExit(f"error: {exc}") from None


def run(args: argparse.Namespace) -> None:
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    check_jobs(parse_list(args.jobs))
    malloc = "keep" if args.malloc == "keep" and keep_freed_memory() else "default"
    study = load_study(args.study, profile=args.profile)
    resolve(study)
    jobs, adams, reuses = parse_list(args.jobs), parse_list(args.adam), parse_list(args.reuse)
    if any(r not in ("on", "off") for r in reuses):
        raise SystemExit(f"error: --reuse: expected on or off, got {args.reuse!r}")
    configs = [
        (job, adam, reuse) for job in jobs for adam in adams for reuse in (reuses if job.startswith("hyper") else ["-"])
    ]
    times: dict[tuple[str, str, str], list[float]] = {c: [] for c in configs}
    with tempfile.TemporaryDirectory() as tmp:
        ctx = RunContext(Path(tmp), study, "cpu", args.precision)
        # The loss scales change the numbers, not the work; ones avoid the calibration job.
        task = ctx.recon_task([1.0] * len(study.loss.terms))
        t_start = time.perf_counter()
        for r in range(args.rounds):
            wait_for_quiet(5.0, 0.1)
            for job, adam, reuse in rotated(configs, r):
                torch.manual_seed(r)
                model, sampler = build(ctx, job)
                if reuse != "-":
                    model.reuse_weights_for_l1 = reuse == "on"
                stamps: list[float] = []
                torch.optim.Adam = adam_factory(adam)
                try:
                    train(
                        model,
                        task,
                        sampler,
                        ctx.settings(job, args.steps),
                        device="cpu",
                        name=job,
                        callbacks=[functools.partial(_stamp, stamps)],
                    )
                finally:
                    torch.optim.Adam = _ADAM
                gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
                times[(job, adam, reuse)] += gaps[args.skip :]
        print(f"{len(configs)} configurations x {args.rounds} rounds in {time.perf_counter() - t_start:.1f}s")
    current = {c[0]: quartiles(times[c])[1] for c in configs if c[1] == "fused" and c[2] in ("on", "-")}
    first = quartiles(times[configs[0]])[1]
    rows = []
    for c in configs:
        job, adam, reuse = c
        q1, med, q3 = quartiles(times[c])
        rows.append(
            {
                "study": args.study,
                "profile": args.profile,
                "job": job,
                "adam": adam,
                "reuse_weights": reuse,
                "size": study.data.image_size,
                "batch": study.train.batch_size,
                "precision": args.precision,
                "median_ms": round(med * 1e3, 1),
                "iqr_ms": round((q3 - q1) * 1e3, 1),
                "steps_timed": len(times[c]),
                "vs_current": round(med / current[job], 3) if job in current else "-",
                "vs_first": round(med / first, 3),
                "device": device_name(torch.device("cpu")),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
            }
        )
    meta = {
        "device": device_name(torch.device("cpu")),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "study": f"{args.study} ({args.profile}): {study.data.image_size}², B = {study.train.batch_size}, "
        f"loss {' + '.join(study.loss.terms)}, hyper.groups = {study.hyper.groups}",
        "precision": args.precision,
        "steps per call": f"{args.steps} ({args.skip} untimed)",
        "rounds": args.rounds,
        "malloc": malloc,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "columns": "median/IQR of per-step wall time; reuse_weights: HyperUNet.reuse_weights_for_l1; vs_current: "
        "against the same job as training runs it (fused Adam, reuse on); vs_first: against the first row",
    }
    cols = ["job", "adam", "reuse_weights", "median_ms", "iqr_ms", "steps_timed", "vs_current", "vs_first"]
    print(write_outputs(rows, Path(args.out), "Training loop time per step (real jobs of a study)", meta, cols))


if __name__ == "__main__":
    main()
