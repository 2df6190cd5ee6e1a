"""Does DHS select λ at quick scale? Train one DHS HyperRecon on an AO study's quick data and test its kept λ.

    OMP_NUM_THREADS=1 nice -n 10 python benchmark/dhs_select.py --study ao-knee --size S --steps 250

Uses the quick profile (λ groups, top_k, warm-up) and the committed quick report's loss scales; prints the
kept-λ uniformity test of :mod:`hyperrecon.dhs_check` (after the warm-up) and the mean kept λ.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hyperrecon.config import load_study  # noqa: E402
from hyperrecon.dhs_check import kept_uniformity  # noqa: E402
from hyperrecon.resolve import build_recon_model, build_sampler  # noqa: E402
from hyperrecon.runs.context import RunContext  # noqa: E402
from hyperrecon.training import train  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", default="ao-knee")
    ap.add_argument("--size", default="S")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--set", action="append", default=[], help="study override, e.g. hyper.groups=8")
    ap.add_argument("--out", default=None, help="also write the check as JSON to this path")
    args = ap.parse_args()
    study = load_study(args.study, "quick", overrides=args.set)
    ctx = RunContext(Path("/tmp/dhs-select"), study, "cpu", "fp32")
    scales = json.loads((ROOT / "reports" / args.study / "scales.json").read_text())["scales"]
    torch.manual_seed(0)
    model = build_recon_model("hyperunet", study, args.size)
    sampler = build_sampler(study, "dhs")
    steps = args.steps or study.hyper.steps or study.train.steps
    train(model, ctx.recon_task(scales), sampler, ctx.settings(f"hyper-{args.size}-dhs", steps), name="dhs")
    check = kept_uniformity(
        sampler.kept_lams().numpy(), sampler.kept_steps().numpy(), warmup_steps=sampler.warmup_steps
    )
    print(json.dumps(check.to_dict()))
    if args.out:
        Path(args.out).write_text(
            json.dumps({"study": args.study, "size": args.size, "steps": steps, **check.to_dict()}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
