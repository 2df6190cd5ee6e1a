"""Size the GPU check's study run from measured step times: training steps per model that fit a time budget.

Reads the ``train_step.csv`` of the same run (``benchmark/train_step.py`` at the study's image size and batch) and
prints the ``--set`` overrides of the study run, one per line (for ``hrbench run ... --set LINE``), and writes them
with the estimate to ``<out>.json``. The study trains every model for the same number of steps (equal budgets):

    steps = budget_s / (overhead * sum over models of its step time)   (rounded down to 50, clamped)

Models: the baselines on the grid and the segmentation U-Net at the U-Net's step time, HyperUNet S/M/L and FiLM at
theirs, each in its fastest precision. ``overhead`` covers the real loop's extras over the benchmark step (SSIM loss
instead of MSE, staging, logging); evaluation and search come on top (sized by the fixed settings below).

    python benchmark/gpu_study_plan.py --steps-csv reports/gpu/train_step.csv --budget 120 --out reports/gpu/plan
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

BASELINE_GRID = [0.0, 0.5, 1.0]
HYPER_SIZES = ["S", "M", "L"]
# Fixed settings of the study run besides the steps (sl-brain-cs, paper profile, 256x256, B = 32).
FIXED = [
    "model.residual=true",  # a few thousand steps: start from the zero-filled image (as the quick profile does)
    f"baselines.grid={json.dumps(BASELINE_GRID)}",
    f"hyper.sizes={json.dumps(HYPER_SIZES)}",
    'hyper.samplers=["uniform"]',
    "hyper.groups=4",
    "hyper.film=true",
    "evaluation.grid_points=21",
    "evaluation.n_test=32",
    "search.budget=10",
    "search.seeds=2",
    "search.n_val=16",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps-csv", required=True, help="train_step.csv of this run")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--budget", type=float, required=True, help="seconds of training for all models together")
    p.add_argument("--overhead", type=float, default=1.6, help="real loop step / benchmark step")
    p.add_argument("--min-steps", type=int, default=100)
    p.add_argument("--max-steps", type=int, default=5000)
    p.add_argument("--out", required=True, help="output stem (.json)")
    return p.parse_args(argv)


def step_seconds(path: Path, size: int) -> dict[str, float]:
    """Per model, its fastest median step (s) at ``size``."""
    best: dict[str, float] = {}
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            if int(r["size"]) == size:
                v = float(r["median_ms"]) / 1e3
                best[r["model"]] = min(v, best.get(r["model"], math.inf))
    return best


def plan(times: dict[str, float], budget: float, overhead: float, lo: int, hi: int) -> dict:
    if "unet" not in times:
        raise SystemExit("error: --steps-csv: no 'unet' row at this size; run benchmark/train_step.py with unet first")
    unet = times["unet"]
    per_model = {f"baseline-{v:g}": unet for v in BASELINE_GRID}
    per_model["seg"] = unet
    for size in HYPER_SIZES:
        per_model[f"hyper-{size}"] = times.get(f"hyper-{size}", 1.2 * unet)
    per_model["film"] = times.get("film", 1.2 * unet)
    one_step = overhead * sum(per_model.values())
    steps = int(max(lo, min(hi, budget / one_step)) // 50 * 50) or lo
    return {
        "steps": steps,
        "seconds_per_step_all_models": one_step,
        "estimated_training_s": steps * one_step,
        "step_seconds": per_model,
        "overrides": [*FIXED, f"train.steps={steps}", f"segmentation.steps={steps}", f"train.checkpoint_every={steps}"],
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    p = plan(step_seconds(Path(args.steps_csv), args.size), args.budget, args.overhead, args.min_steps, args.max_steps)
    out = Path(args.out).with_suffix(".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(p, indent=2) + "\n")
    print("\n".join(p["overrides"]))


if __name__ == "__main__":
    main()
