"""Issue 19's three GPU targets, met or missed, from the tables of one run of the benchmark scripts.

Reads ``<dir>/train_step.csv``, ``<dir>/eval_sweep.csv`` and ``<dir>/new_lam.csv`` (written by
``benchmark/train_step.py``, ``eval_sweep.py`` and ``new_lam.py`` in the same run) and writes ``<out>.md`` and
``<out>.json``:

1. one reconstruction at a new λ, batch 1, 256x256: at most 2 ms (each conditional model, fastest precision);
2. HyperUNet S/M/L training step at most 1.2x the plain U-Net's, 256x256, B = 32 (``ratio_vs_best_unet``: each in
   its fastest precision against the U-Net in its fastest);
3. λ-sweep throughput at least 0.9x plain U-Net inference (``ratio_vs_best_unet`` of eval_sweep; S/M/L and FiLM).

A missing table or row makes that target "not measured", never "met".

    python benchmark/gpu_targets.py --dir reports/gpu --out reports/gpu/targets
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

CONDITIONAL = ("hyper-S", "hyper-M", "hyper-L", "film")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", required=True, help="folder holding train_step.csv, eval_sweep.csv, new_lam.csv")
    p.add_argument("--size", type=int, default=256, help="image size the targets are stated at")
    p.add_argument("--out", required=True, help="output stem (.md, .json)")
    return p.parse_args(argv)


def read(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def best_by_model(rows: list[dict[str, str]], size: int, column: str, lowest: bool) -> dict[str, float]:
    """Per model, the best value of ``column`` over its precisions/paths at ``size``."""
    out: dict[str, float] = {}
    for r in rows:
        if int(r["size"]) != size:
            continue
        v = float(r[column])
        m = r["model"]
        if m not in out or (v < out[m] if lowest else v > out[m]):
            out[m] = v
    return out


def verdict(values: dict[str, float], models: tuple[str, ...], ok) -> str:
    have = [m for m in models if m in values]
    if not have:
        return "not measured"
    status = "met" if all(ok(values[m]) for m in have) else "missed"
    return status if len(have) == len(models) else f"{status} (only {', '.join(have)} measured)"


def evaluate(folder: Path, size: int) -> list[dict]:
    lat = best_by_model(read(folder / "new_lam.csv"), size, "median_ms", lowest=True)
    step = best_by_model(read(folder / "train_step.csv"), size, "ratio_vs_best_unet", lowest=True)
    sweep = best_by_model(read(folder / "eval_sweep.csv"), size, "ratio_vs_best_unet", lowest=False)
    hyper = ("hyper-S", "hyper-M", "hyper-L")
    return [
        {
            "target": f"one {size}x{size} reconstruction at a new λ, batch 1 (weights generated included) <= 2 ms",
            "measured": {m: lat[m] for m in (*CONDITIONAL, "unet") if m in lat},
            "unit": "ms (median)",
            "status": verdict(lat, CONDITIONAL, lambda v: v <= 2.0),
        },
        {
            "target": f"HyperUNet S/M/L training step <= 1.2x plain U-Net, {size}x{size}, B = 32",
            "measured": {m: step[m] for m in (*hyper, "film") if m in step},
            "unit": "x U-Net step (median)",
            "status": verdict(step, hyper, lambda v: v <= 1.2),
        },
        {
            "target": "λ-sweep throughput >= 0.9x plain U-Net inference",
            "measured": {m: sweep[m] for m in CONDITIONAL if m in sweep},
            "unit": "x U-Net slices/s",
            "status": verdict(sweep, CONDITIONAL, lambda v: v >= 0.9),
        },
    ]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rows = evaluate(Path(args.dir), args.size)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["# GPU targets (issue 19)", "", "| target | measured | status |", "|---|---|---|"]
    for r in rows:
        measured = ", ".join(f"{m} {v:g}" for m, v in r["measured"].items()) or "-"
        lines.append(f"| {r['target']} | {measured} ({r['unit']}) | {r['status']} |")
    text = "\n".join(lines) + "\n"
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
