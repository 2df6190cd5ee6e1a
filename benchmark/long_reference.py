"""Train the best baseline of a finished run for longer and compare: how far is the run's budget from converged?

    python benchmark/long_reference.py runs/sl-brain-cs/<run> --factor 3
    hrbench report runs/sl-brain-cs/<run>          # the report's training section then shows the comparison

Writes ``reference/long-baseline.{csv,json}`` into the run folder (:mod:`hyperrecon.long_reference`); a killed
call resumes from ``reference/*.pt``. ``--replicates 0`` limits the long runs to replicate 0 (no interval then).
Bad input: one ``error:`` line and exit 2 (a bad option) or 1 (not a finished run).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hyperrecon.errors import ConfigError, HyperReconError  # noqa: E402
from hyperrecon.long_reference import DEFAULT_FACTOR, run_long_reference  # noqa: E402


def _replicates(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated replicate numbers such as 0,1,2, got '{text}'"
        ) from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path, help="a finished run folder (made by `hrbench run`)")
    ap.add_argument("--factor", type=int, default=DEFAULT_FACTOR, help="times the baseline's training steps")
    ap.add_argument("--replicates", type=_replicates, default=None, help="e.g. 0 or 0,1,2 (default: all)")
    ap.add_argument("--metric", default="psnr", help="the metric that picks the best baseline")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--out", type=Path, default=None, help="also copy reference/long-baseline.json to this path")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    try:
        path = run_long_reference(
            args.run_dir,
            factor=args.factor,
            replicates=args.replicates,
            metric=args.metric,
            device=args.device,
            progress=lambda msg: print(msg, flush=True),
        )
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except HyperReconError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.out is not None:
        from hyperrecon.io import atomic_write_text

        atomic_write_text(args.out, path.read_text())
        print(f"wrote {args.out}")
    print(f"wrote {path} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
