"""Latency of one reconstruction at a new λ, batch 1: λ staged, weights generated, U-Net run (the explorer's case).

Each timed call draws a λ never used before (so no cached weights can serve it), stages it on the device the way
training does (pinned, non-blocking, with its host copy), and reconstructs one slice in eval/inference mode. A
plain U-Net's single-slice inference is the reference (no λ, no weights to generate). Times are CUDA-event device
time on a GPU (the span from the first to the last kernel's stream position, launch gaps included), wall time on
the CPU; ``wall_*`` columns are always the host's clock around the call, synchronised.

    python benchmark/new_lam.py --device cuda --sizes 256 --repeats 200 --out reports/gpu/new_lam

Writes ``<out>.csv`` and ``<out>.md``. The target (issue 19): at most 2 ms per 256x256 slice on the H200.
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
    build_model,
    check_precisions,
    device_name,
    memory_format,
    parse_list,
    precision_context,
    quartiles,
    setup_device,
    with_host_copy,
    write_outputs,
)

TARGET_MS = 2.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="256", help="image sizes H=W, comma separated")
    p.add_argument("--repeats", type=int, default=100, help="timed calls per configuration, each at a new λ")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--models", default=",".join(MODEL_NAMES))
    p.add_argument("--precisions", default=",".join(PRECISIONS), help=PRECISION_HELP)
    p.add_argument("--path", default="auto", help="HyperUNet path")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave as is)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "reports/benchmarks/new_lam"))
    return p.parse_args(argv)


def measure(
    net: torch.nn.Module, x: torch.Tensor, lams: torch.Tensor, precision: str, device: torch.device, conditional: bool
) -> tuple[list[float], list[float]]:
    """Device and wall seconds of one call per row of ``lams`` (N, 1)."""
    clock, dev_s, wall_s = Clock(device), [], []
    with torch.inference_mode(), precision_context(precision, device):
        for row in lams:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            w0 = time.perf_counter()
            clock.start()
            lam = with_host_copy(row.reshape(1, 1).clone(), device) if conditional else None
            net(x, lam)
            dev_s.append(clock.stop())  # waits for the end event: the call is complete
            wall_s.append(time.perf_counter() - w0)
    return dev_s, wall_s


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    setup_device(device)
    gen = torch.Generator().manual_seed(args.seed)
    rows = []
    for size in parse_list(args.sizes, int):
        for model in parse_list(args.models):
            for precision in check_precisions(parse_list(args.precisions)):
                fmt = memory_format(precision)
                net = build_model(model, args.path).to(device).to(memory_format=fmt).eval()
                conditional = getattr(net, "conditional", False)
                x = torch.randn(1, 2, size, size, generator=gen).to(device).contiguous(memory_format=fmt)
                # distinct λ for every call: warm-up ones first, then the timed ones
                lams = torch.rand(args.warmup + args.repeats, 1, generator=gen)
                measure(net, x, lams[: args.warmup], precision, device, conditional)
                dev_s, wall_s = measure(net, x, lams[args.warmup :], precision, device, conditional)
                q1, med, q3 = quartiles(dev_s)
                wq1, wmed, wq3 = quartiles(wall_s)
                rows.append(
                    {
                        "size": size,
                        "model": model,
                        "precision": precision,
                        "batch": 1,
                        "median_ms": round(med * 1e3, 3),
                        "iqr_ms": round((q3 - q1) * 1e3, 3),
                        "wall_median_ms": round(wmed * 1e3, 3),
                        "wall_iqr_ms": round((wq3 - wq1) * 1e3, 3),
                        "repeats": len(dev_s),
                        "new_lam_each_call": conditional,
                        "target_ms": TARGET_MS if size == 256 else "-",
                        "device": device_name(device),
                        "torch": torch.__version__,
                    }
                )
                del net
    meta = {
        "device": device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else "-",
        "repeats": args.repeats,
        "warmup": args.warmup,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "timing": "CUDA events (device)" if device.type == "cuda" else "perf_counter (wall)",
        "precisions": PRECISION_HELP,
    }
    cols = [
        "size",
        "model",
        "precision",
        "median_ms",
        "iqr_ms",
        "wall_median_ms",
        "wall_iqr_ms",
        "repeats",
        "new_lam_each_call",
    ]
    print(
        write_outputs(
            rows, Path(args.out), "One reconstruction at a new λ (batch 1, weights generated included)", meta, cols
        )
    )


if __name__ == "__main__":
    main()
