"""λ-sweep reconstruction throughput (slices/s) of each model against plain U-Net inference, in the same run.

A sweep reconstructs one batch of ``--batch`` slices for each of ``--lams`` λ values (eval mode, inference mode).
A conditional model gets the whole batch at one λ, so the hypernetwork generates the conv weights once per λ and
runs dense convolutions; the plain U-Net runs the same number of forwards (one per-λ baseline each). Models are
interleaved round-robin within each repeat. ``bf16`` = autocast bfloat16 + channels_last.

    python benchmark/eval_sweep.py --sizes 64 --batch 32 --lams 8 --threads 2 --repeats 10

Writes ``<out>.csv`` and ``<out>.md`` (default ``reports/benchmarks/eval_sweep``); ``ratio_vs_best_unet`` is the
throughput divided by the U-Net's in its fastest precision (>= 1 means at least as fast); ``cpu_*`` columns use
process CPU time, less sensitive to other processes on shared cores.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
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
    memory_format,
    parse_list,
    precision_context,
    quartiles,
    rotated,
    setup_device,
    timed_quiet,
    wait_for_quiet,
    with_host_copy,
    write_outputs,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="64", help="image sizes H=W, comma separated")
    p.add_argument("--batch", type=int, default=32, help="slices reconstructed per λ")
    p.add_argument("--lams", type=int, default=8, help="λ values per sweep")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--models", default=",".join(MODEL_NAMES))
    p.add_argument("--precisions", default=",".join(PRECISIONS), help=PRECISION_HELP)
    p.add_argument("--path", default="auto", help="HyperUNet path")
    add_machine_args(p, "sweep")
    p.add_argument("--out", default=str(ROOT / "reports/benchmarks/eval_sweep"))
    return p.parse_args(argv)


class Sweep:
    def __init__(self, args: argparse.Namespace, size: int, model: str, precision: str) -> None:
        self.device = torch.device(args.device)
        self.model_name, self.precision = model, precision
        fmt = memory_format(precision)
        self.net = build_model(model, args.path).to(self.device).to(memory_format=fmt).eval()
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(args.batch, 2, size, size, generator=g).to(self.device).contiguous(memory_format=fmt)
        self.lams = torch.linspace(0, 1, args.lams).tolist()  # host values, staged per λ as the GPU path does
        self.conditional = getattr(self.net, "conditional", False)
        self.times: list[float] = []
        self.cpu_times: list[float] = []
        self.others: list[float] = []
        self.clock = Clock(self.device)

    def run(self) -> float:
        b = self.x.shape[0]
        c0 = time.process_time()
        self.clock.start()
        with torch.inference_mode(), precision_context(self.precision, self.device):
            for lv in self.lams:
                lam = with_host_copy(torch.full((b, 1), lv), self.device) if self.conditional else None
                self.net(self.x, lam)
        dt = self.clock.stop()
        self.cpu_times.append(time.process_time() - c0)
        return dt


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    malloc = "keep" if args.malloc == "keep" and keep_freed_memory() else "default"
    device = torch.device(args.device)
    setup_device(device)
    rows = []
    for size in parse_list(args.sizes, int):
        sweeps = [
            Sweep(args, size, m, p)
            for m in parse_list(args.models)
            for p in check_precisions(parse_list(args.precisions))
        ]
        for s in sweeps:
            for _ in range(args.warmup):
                s.run()
            s.cpu_times.clear()
        cpu_only = device.type == "cpu"
        for r in range(args.repeats):
            if cpu_only and args.wait_quiet > 0:
                wait_for_quiet(args.wait_quiet, args.quiet)
            for s in rotated(sweeps, r):
                if cpu_only:
                    n_cpu = len(s.cpu_times)
                    dt, others = timed_quiet(s.run, args.retries, args.quiet)
                    del s.cpu_times[n_cpu:-1]  # keep the CPU time of the kept attempt only
                    s.others.append(others)
                else:
                    dt = s.run()
                s.times.append(dt)
        n = args.batch * args.lams
        unet = {s.precision: n / quartiles(s.times)[1] for s in sweeps if s.model_name == "unet"}
        best = max(unet.values()) if unet else float("nan")
        unet_cpu = {s.precision: n / quartiles(s.cpu_times)[1] for s in sweeps if s.model_name == "unet"}
        best_cpu = max(unet_cpu.values()) if unet_cpu else float("nan")
        for s in sweeps:
            q1, med, q3 = quartiles(s.times)
            rows.append(
                {
                    "size": size,
                    "batch": args.batch,
                    "lams": args.lams,
                    "model": s.model_name,
                    "precision": s.precision,
                    "sweep_median_ms": round(med * 1e3, 1),
                    "sweep_iqr_ms": round((q3 - q1) * 1e3, 1),
                    "slices_per_s": round(n / med, 1),
                    "ratio_vs_best_unet": round(n / med / best, 3),
                    "ratio_same_prec": round(n / med / unet.get(s.precision, float("nan")), 3),
                    "cpu_slices_per_s": round(n / quartiles(s.cpu_times)[1], 1),
                    "cpu_ratio_vs_best_unet": round(n / quartiles(s.cpu_times)[1] / best_cpu, 3),
                    "repeats": len(s.times),
                    "unclean": sum(o >= args.quiet for o in s.others),
                    "others_load": round(sum(s.others) / len(s.others), 2) if s.others else "-",
                    "device": device_name(device),
                    "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                }
            )
    meta = {
        "device": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch (slices per λ)": args.batch,
        "λ per sweep": args.lams,
        "repeats": args.repeats,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "malloc": malloc,
        "precisions": PRECISION_HELP,
    }
    cols = [
        "size",
        "model",
        "precision",
        "sweep_median_ms",
        "sweep_iqr_ms",
        "unclean",
        "slices_per_s",
        "ratio_vs_best_unet",
        "ratio_same_prec",
        "cpu_slices_per_s",
        "cpu_ratio_vs_best_unet",
    ]
    print(write_outputs(rows, Path(args.out), "λ-sweep reconstruction throughput (eval, inference mode)", meta, cols))


if __name__ == "__main__":
    main()
