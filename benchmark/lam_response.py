"""How strongly do the SL conditional models respond to λ, next to per-λ baselines? (issue 15, item 2)

Trains, on the quick-profile data of a study (default ``sl-knee-cs``: 64 px, 12 training subjects), the two
single-term baselines (λ = 0: MAE alone, λ = 1: 1-SSIM alone) and one or more conditional models (HyperRecon S/M,
FiLM) with the project's own training loop, then evaluates the test slices at λ = 0 and λ = 1 with the project's
metrics. Each variant changes one suspect: the hypernetwork initialisation, the λ input encoding, the
normalisation (``--norm batch|instance|lam-affine``, ``HyperUNet(norm=)``) or the λ sampling. ``--seed`` sets the
initialisation, data order and λ draws. Prints one line per model with the image change mean |x̂(λ=1) − x̂(λ=0)|
(for the baselines: between the two U-Nets); ``--out`` also writes a CSV.

    OMP_NUM_THREADS=1 nice -n 10 python benchmark/lam_response.py --steps 300 --models hyper-S,hyper-M
    OMP_NUM_THREADS=1 nice -n 10 python benchmark/lam_response.py --study sl-brain-cs --models hyper-M \
        --norm instance --seed 1 --out lam.csv

Scales are the quick report's (``reports/<study>/scales.json``) so that no scales job is needed.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hyperrecon.config import load_study  # noqa: E402
from hyperrecon.metrics import psnr, ssim  # noqa: E402
from hyperrecon.models.bn_calibration import batch_statistics  # noqa: E402
from hyperrecon.resolve import build_recon_model, build_sampler  # noqa: E402
from hyperrecon.runs.context import RunContext  # noqa: E402
from hyperrecon.samplers import FixedSampler  # noqa: E402
from hyperrecon.training import train  # noqa: E402


@torch.no_grad()
def evaluate(model, data, lams: list[float], batch_stats: bool = False) -> dict[float, dict[str, float]]:
    """Test metrics at each λ; ``batch_stats``: BatchNorm on the statistics of the (single-λ) test batch instead
    of the running statistics gathered over mixed-λ training batches (a diagnosis, not an evaluation mode)."""
    model.eval()
    out = {}
    x, target = data
    for lv in lams:
        lam = torch.full((x.shape[0], 1), lv)
        with batch_statistics(model) if batch_stats else contextlib.nullcontext():  # restores the model after
            x_hat = model(x, lam) if getattr(model, "conditional", False) else model(x)
        out[lv] = {
            "ssim": float(ssim(x_hat, target).mean()),
            "psnr": float(psnr(x_hat, target).mean()),
            "mae": float((x_hat - target).abs().mean()),
        }
        RECONS[lv] = x_hat
    if len(lams) == 2:  # image change over λ: mean |x̂(λ=1) − x̂(λ=0)|
        out[lams[1]]["change"] = out[lams[0]]["change"] = float((RECONS[lams[1]] - RECONS[lams[0]]).abs().mean())
    return out


RECONS: dict[float, torch.Tensor] = {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", default="sl-knee-cs")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--models", default="baseline,hyper-S,hyper-M", help="baseline, hyper-S/M/L, film")
    ap.add_argument("--set", action="append", default=[], help="study override, e.g. hyper.groups=16")
    ap.add_argument("--init", default=None, help="HyperUNet init override (kaiming/default/auto)")
    ap.add_argument("--lam-share", type=float, default=None, help="LAMBDA_VARIANCE_SHARE override")
    ap.add_argument("--embed-init", default="he", help="HyperUNet embed_init (he/default)")
    ap.add_argument("--norm", default="batch", help="HyperUNet norm (batch/instance/lam-affine)")
    ap.add_argument("--no-unit-embed", action="store_true", help="he embedding without the E|e|² = 1 rescale")
    ap.add_argument("--tag", default="")
    ap.add_argument("--seed", type=int, default=0, help="initialisation seed")
    ap.add_argument("--bn-batch", action="store_true", help="also evaluate with BatchNorm on test-batch statistics")
    ap.add_argument("--profile", default="quick", help="the study profile whose data and training settings to use")
    ap.add_argument(
        "--scales-from", default=None, help="a run folder whose scales.json to use (default: the quick report's)"
    )
    ap.add_argument("--test", type=int, default=16, help="test slices evaluated")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    if args.lam_share is not None:
        import hyperrecon.models.hyper as hyper_mod

        hyper_mod.LAMBDA_VARIANCE_SHARE = args.lam_share
    if args.no_unit_embed:
        import hyperrecon.models.hyper as hyper_mod

        hyper_mod.EMBED_UNIT_SCALE = False
    study = load_study(args.study, args.profile, overrides=args.set)
    ctx = RunContext(Path("/tmp/lam-response"), study, "cpu", "fp32")
    scales_json = (
        Path(args.scales_from) / "scales.json" if args.scales_from else ROOT / "reports" / args.study / "scales.json"
    )
    scales = json.loads(scales_json.read_text())["scales"]
    task = ctx.recon_task(scales)
    test = ctx.recon_task(scales, split="test", limit=args.test)
    data = (test.inputs, test.targets)
    rows: list[dict] = []
    for name in args.models.split(","):
        t0 = time.perf_counter()
        torch.manual_seed(args.seed)  # the same initialisation for every variant
        settings = dataclasses.replace(ctx.settings(name, args.steps), seed=args.seed)  # data order and λ draws
        if name == "baseline":
            for lv in (0.0, 1.0):
                torch.manual_seed(args.seed)
                model = build_recon_model("unet", study)
                train(model, task, FixedSampler(lv), settings, name=f"baseline-{lv}")
                res = evaluate(model, data, [lv])
                rows.append({"model": "baseline", "tag": args.tag, "lam": lv, **res[lv]})
            change = float((RECONS[1.0] - RECONS[0.0]).abs().mean())
            for r in rows[-2:]:
                r["change"] = change
        else:
            if name.startswith("hyper"):
                model = build_recon_model("hyperunet", study, name.split("-")[1])
                if args.init is not None or args.embed_init != "he" or args.norm != "batch":
                    from hyperrecon.models import HyperUNet

                    model = HyperUNet(
                        1,
                        size=name.split("-")[1],
                        width=study.model.width,
                        residual=study.model.residual,
                        init=args.init or "auto",
                        embed_init=args.embed_init,
                        norm=args.norm,
                    )
            else:
                model = build_recon_model("film-unet", study)
            train(model, task, build_sampler(study, "uniform"), settings, name=name)
            res = evaluate(model, data, [0.0, 1.0])
            rows += [{"model": name, "tag": args.tag, "lam": lv, **res[lv]} for lv in (0.0, 1.0)]
            if args.bn_batch:
                res = evaluate(model, data, [0.0, 1.0], batch_stats=True)
                rows += [{"model": name, "tag": args.tag + "+bn-batch", "lam": lv, **res[lv]} for lv in (0.0, 1.0)]
        print(
            f"{name:10s} {args.tag:12s} "
            + "  ".join(
                f"λ={r['lam']:.0f}: SSIM {r['ssim']:.4f} PSNR {r['psnr']:.2f} MAE {r['mae']:.4f}"
                for r in rows
                if r["model"] == name
            ),
            f"change {rows[-1]['change']:.4f}",
            f"({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    if args.out:
        path = Path(args.out)
        new = not path.exists()
        with path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["model", "tag", "lam", "ssim", "psnr", "mae", "change"])
            if new:
                w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    main()
