"""Time one training step (forward, backward, Adam) of each model, relative to a plain U-Net in the same run.

Example (this project's CPU, 2 threads)::

    python benchmark/train_step.py --sizes 64 --batch 32 --threads 2 --repeats 15 \
        --models unet,hyper-S,hyper-M,hyper-L,film --precisions fp32,bf16 --paths auto --groups 4

Configurations (model x precision x path) are interleaved round-robin within each repeat, so that noise from other
processes on shared cores hits all of them alike. ``bf16`` means ``torch.autocast(dtype=bfloat16)`` plus
channels_last model and inputs; ``fp32`` is plain float32 NCHW. The ratio column divides each median by the plain
U-Net's median in its fastest precision at the same image size (``ratio_same_prec``: by the U-Net in the same
precision). ``cpu_*`` columns use process CPU time (all threads), which is less sensitive to other processes on
shared cores than wall time (but counts OpenMP spin-waiting). Results: ``<out>.csv`` and ``<out>.md`` (default
``reports/benchmarks/train_step``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import (
    MODEL_NAMES,
    PRECISION_HELP,
    PRECISIONS,
    ROOT,
    Clock,
    add_machine_args,
    build_model,
    check_precisions,
    device_name,
    keep_freed_memory,
    lam_batch,
    memory_format,
    parse_list,
    precision_context,
    quartiles,
    rotated,
    setup_device,
    timed_quiet,
    wait_for_quiet,
    write_outputs,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", default="64", help="image sizes H=W, comma separated (e.g. 64,128,256)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=10, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per configuration first")
    p.add_argument("--models", default=",".join(MODEL_NAMES), help=f"from {', '.join(MODEL_NAMES)}")
    p.add_argument("--precisions", default=",".join(PRECISIONS), help=PRECISION_HELP)
    p.add_argument(
        "--paths", default="auto", help="HyperUNet paths: auto, grouped, factorised, per-sample-grouped-conv, reference"
    )
    p.add_argument("--groups", type=int, default=4, help="distinct λ per mini-batch (0: every sample its own)")
    p.add_argument(
        "--adam", default="fused", help="Adam implementation(s): fused, foreach (comma list; same for every model)"
    )
    p.add_argument("--compile", default="off", help="torch.compile the model (inductor): off, on or off,on")
    p.add_argument("--seed", type=int, default=0)
    add_machine_args(p, "step")
    p.add_argument("--out", default=str(ROOT / "reports/benchmarks/train_step"), help="output stem (.csv, .md)")
    return p.parse_args(argv)


class Config:
    """One model x precision x path with its own optimiser and data."""

    def __init__(
        self,
        args: argparse.Namespace,
        size: int,
        model: str,
        precision: str,
        path: str,
        adam: str,
        compiled: str = "off",
    ) -> None:
        self.size, self.model_name, self.precision, self.path, self.adam = size, model, precision, path, adam
        self.compiled = compiled
        self.device = torch.device(args.device)
        fmt = memory_format(precision)
        self.net = build_model(model, path).to(self.device).to(memory_format=fmt).train()
        if adam not in ("foreach", "fused"):
            raise SystemExit(f"error: --adam: expected foreach or fused, got {adam!r}")
        kw = {"fused": True} if adam == "fused" else {"foreach": True}
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-3, **kw)
        if compiled not in ("off", "on"):
            raise SystemExit(f"error: --compile: expected off or on, got {compiled!r}")
        self.run = torch.compile(self.net) if compiled == "on" else self.net
        g = torch.Generator().manual_seed(args.seed)
        self.x = torch.randn(args.batch, 2, size, size, generator=g).to(self.device).contiguous(memory_format=fmt)
        self.y = torch.rand(args.batch, 1, size, size, generator=g).to(self.device)
        self.gen, self.batch, self.groups = g, args.batch, args.groups
        self.conditional = getattr(self.net, "conditional", False)
        lam = lam_batch(self.batch, self.groups, g, self.device)
        self.chosen = self.net.select_path(lam) if hasattr(self.net, "select_path") else "-"
        self.times: list[float] = []
        self.cpu_times: list[float] = []
        self.others: list[float] = []
        self.clock = Clock(self.device)

    def step(self) -> float:
        lam = lam_batch(self.batch, self.groups, self.gen, self.device) if self.conditional else None
        c0 = time.process_time()
        self.clock.start()
        self.opt.zero_grad(set_to_none=True)
        with precision_context(self.precision, self.device):
            out = self.run(self.x, lam)
        loss = F.mse_loss(out.float(), self.y)
        loss.backward()
        self.opt.step()
        dt = self.clock.stop()
        self.cpu_times.append(time.process_time() - c0)
        return dt


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    malloc = "keep" if args.malloc == "keep" and keep_freed_memory() else "default"
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    setup_device(device)
    models, precisions, paths = (
        parse_list(args.models),
        check_precisions(parse_list(args.precisions)),
        parse_list(args.paths),
    )
    adams = parse_list(args.adam)
    rows = []
    for size in parse_list(args.sizes, int):
        configs = [
            Config(args, size, m, prec, path, adam, comp)
            for m in models
            for prec in precisions
            for path in (paths if m.startswith("hyper-") else ["-"])
            for adam in adams
            for comp in parse_list(args.compile)
        ]
        for c in configs:
            for _ in range(args.warmup):
                c.step()
            c.cpu_times.clear()
        t_start = time.perf_counter()
        cpu_only = device.type == "cpu"
        for r in range(args.repeats):
            if cpu_only and args.wait_quiet > 0:
                wait_for_quiet(args.wait_quiet, args.quiet)
            for c in rotated(configs, r):
                if cpu_only:
                    n_cpu = len(c.cpu_times)
                    dt, others = timed_quiet(c.step, args.retries, args.quiet)
                    del c.cpu_times[n_cpu:-1]  # keep the CPU time of the kept attempt only
                    c.others.append(others)
                else:
                    dt = c.step()
                c.times.append(dt)
        print(
            f"size {size}: {len(configs)} configurations x {args.repeats} repeats in "
            f"{time.perf_counter() - t_start:.1f}s"
        )
        # the U-Net reference of a configuration: same Adam, fastest precision (or the same precision)
        # (a compiled configuration is compared with the compiled U-Net of its precision, the best with the best)
        unet = {(c.precision, c.adam, c.compiled): quartiles(c.times)[1] for c in configs if c.model_name == "unet"}
        unet_cpu = {
            (c.precision, c.adam, c.compiled): quartiles(c.cpu_times)[1] for c in configs if c.model_name == "unet"
        }
        for c in configs:
            q1, med, q3 = quartiles(c.times)
            same = unet.get((c.precision, c.adam, c.compiled), float("nan"))
            best = min((v for (_, a, _), v in unet.items() if a == c.adam), default=float("nan"))
            best_cpu = min((v for (_, a, _), v in unet_cpu.items() if a == c.adam), default=float("nan"))
            cpu = quartiles(c.cpu_times)[1]
            rows.append(
                {
                    "size": size,
                    "batch": args.batch,
                    "model": c.model_name,
                    "precision": c.precision,
                    "path": c.path,
                    "chosen_path": c.chosen,
                    "groups": args.groups if c.conditional else "-",
                    "median_ms": round(med * 1e3, 1),
                    "q1_ms": round(q1 * 1e3, 1),
                    "q3_ms": round(q3 * 1e3, 1),
                    "iqr_ms": round((q3 - q1) * 1e3, 1),
                    "repeats": len(c.times),
                    "unclean": sum(o >= args.quiet for o in c.others),
                    "others_load": round(statistics.mean(c.others), 2) if c.others else "-",
                    "ratio_vs_best_unet": round(med / best, 3),
                    "ratio_same_prec": round(med / same, 3),
                    "cpu_median_ms": round(cpu * 1e3, 1),
                    "cpu_ratio_vs_best_unet": round(cpu / best_cpu, 3),
                    "device": device_name(device),
                    "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                    "adam": c.adam,
                    "compiled": c.compiled,
                }
            )
    meta = {
        "device": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "groups (distinct λ/batch)": args.groups,
        "adam": args.adam,
        "compile": args.compile,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "malloc": malloc,
        "clean step": f"other processes used < {args.quiet:.0%} of the CPUs during it (else retried up to "
        f"{args.retries}x; `unclean` counts kept steps that never got a quiet slot; `others_load` is the mean "
        "fraction of all CPUs other processes used during the kept steps)",
        "precisions": PRECISION_HELP,
    }
    cols = [
        "size",
        "model",
        "precision",
        "path",
        "chosen_path",
        "adam",
        "compiled",
        "median_ms",
        "iqr_ms",
        "unclean",
        "others_load",
        "ratio_vs_best_unet",
        "ratio_same_prec",
        "cpu_median_ms",
        "cpu_ratio_vs_best_unet",
    ]
    print(write_outputs(rows, Path(args.out), "Training step time (forward + backward + Adam)", meta, cols))


if __name__ == "__main__":
    main()
