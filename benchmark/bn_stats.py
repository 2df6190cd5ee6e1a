"""Is a collapsed λ-conditioned model broken, or only its BatchNorm running statistics? (issue 15, item 2)

Evaluates trained models of a finished run on its test slices at a few λ twice: as the run evaluates them (eval
mode: BatchNorm normalises with the running statistics gathered over the mixed-λ training batches) and with
BatchNorm on the statistics of the test batch itself (one λ per batch; running statistics left untouched). A model
whose PSNR recovers with batch statistics learnt weights that work, and fails only because one set of running
statistics cannot serve every λ. A third column re-estimates the statistics at each λ on training slices
(``--calibration N``; ``hyperrecon.models.bn_calibration``, what ``evaluation.bn_calibration`` does in a run): no
test slice is used, so it is a legitimate evaluation, where test-batch statistics are only a diagnosis.

    python benchmark/bn_stats.py runs/ao-knee/<run> --replicate 0 --models hyper-M-dhs,hyper-M-uniform
    python benchmark/bn_stats.py runs/sl-brain-cs/<run> --replicate 1 --models hyper-S-uniform --out bn.csv

Prints one line per model and λ: mean PSNR (dB) over the test slices in both modes.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hyperrecon.evaluation import lam_grid  # noqa: E402
from hyperrecon.metrics import psnr  # noqa: E402
from hyperrecon.models.bn_calibration import PerLamBatchNorm, batch_statistics  # noqa: E402
from hyperrecon.runs.context import RunContext  # noqa: E402
from hyperrecon.runs.folder import RunFolder  # noqa: E402
from hyperrecon.runs.orchestrate import study_from_dict_resolved  # noqa: E402


@torch.no_grad()
def mean_psnr(model: torch.nn.Module, data, lam: np.ndarray, batch_stats: bool) -> float:
    """Mean PSNR over the test slices at one λ, in eval mode or with BatchNorm on each test batch's statistics."""
    model.eval()
    x, target = data.inputs, data.targets
    row = torch.as_tensor(lam, dtype=torch.float32).expand(x.shape[0], -1)
    with batch_statistics(model) if batch_stats else contextlib.nullcontext():
        out = model(x, row)
    return float(psnr(out.float(), target).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--replicate", type=int, default=0)
    ap.add_argument("--models", required=True, help="comma-separated λ-conditioned model names of the run")
    ap.add_argument("--points", type=int, default=3, help="λ values per axis (evaluation-grid style)")
    ap.add_argument("--calibration", type=int, default=64, help="training slices for the per-λ statistics")
    ap.add_argument("--out", default=None, help="append the rows to this CSV")
    args = ap.parse_args()
    if args.calibration < 1:
        ap.error(f"--calibration: expected at least 1 training slice, got {args.calibration}")
    info = RunFolder(args.run_dir).read_info()
    study = study_from_dict_resolved(info.study)
    ctx = RunContext(info.folder.root, study, "cpu", "fp32")
    if args.replicate:
        ctx = ctx.for_replicate(args.replicate)
    data = ctx.eval_data("test", study.evaluation.n_test)
    train = ctx.eval_data("train", None)
    order = np.random.default_rng(study.seed).permutation(len(train))[: args.calibration]  # as the run does
    calib = train.subset(order.tolist())
    rows = []
    for name in args.models.split(","):
        model = ctx.load_model(name).float()
        wrapped = PerLamBatchNorm(model, calib.inputs)
        for lam in lam_grid(study.n_lams, args.points):
            running, batch = mean_psnr(model, data, lam, False), mean_psnr(model, data, lam, True)
            calibrated = mean_psnr(wrapped, data, lam, False)
            wrapped.restore()
            rows.append(
                {
                    "run": info.folder.root.name,
                    "replicate": args.replicate,
                    "model": name,
                    "lam": " ".join(f"{v:g}" for v in lam),
                    "psnr_running_stats": round(running, 3),
                    "psnr_batch_stats": round(batch, 3),
                    "psnr_calibrated": round(calibrated, 3),
                }
            )
            print(
                f"r{args.replicate} {name:18s} λ=({rows[-1]['lam']}): running {running:7.2f} dB  "
                f"batch {batch:7.2f} dB  "
                f"calibrated {calibrated:7.2f} dB"
            )
    if args.out:
        path = Path(args.out)
        new = not path.exists()
        with path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            if new:
                w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    main()
