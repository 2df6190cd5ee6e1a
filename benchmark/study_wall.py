"""End-to-end wall time of `hrbench run` per study, split by phase (data, training, evaluation, search, report).

Runs each study as a user would (a subprocess of the `hrbench` command) into a fresh folder and reads the per-job
records it leaves behind. Writes reports/benchmarks/study_wall.{csv,md}.

    python benchmark/study_wall.py --studies ao-knee --profile quick
    python benchmark/study_wall.py --studies all --profile smoke --keep-runs reports   # also keeps the runs
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hyperrecon.runs.context import device_name

ROOT = Path(__file__).resolve().parents[1]
STUDIES = ["ao-knee", "ao-brain", "sl-brain-cs", "sl-knee-cs", "sl-knee-denoise", "sl-knee-sr"]
PHASES = {
    "seg": "training",
    "baseline": "training",
    "hyper": "training",
    "film": "training",
    "scales": "training",
    "eval": "evaluation",
    "search": "search",
}


def run_study(study: str, profile: str, out: Path, extra: list[str]) -> dict:
    exe = shutil.which("hrbench") or str(Path(sys.executable).parent / "hrbench")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [exe, "run", "--study", study, "--profile", profile, "--out", str(out), "--json", *extra],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"error: {study} failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    by_phase = {"training": 0.0, "evaluation": 0.0, "search": 0.0}
    for path in (out / "jobs").glob("*.json"):
        info = json.loads(path.read_text())
        kind = info["spec"]["kind"]
        seconds = info.get("job_wall_seconds", 0.0)
        by_phase[PHASES.get(kind, "training")] += float(seconds or 0.0)
    other = wall - sum(by_phase.values())
    return {
        "study": study,
        "profile": profile,
        "wall_s": round(wall, 1),
        **{f"{k}_s": round(v, 1) for k, v in by_phase.items()},
        "other_s": round(other, 1),
    }


KEEP = (
    "report.md",
    "results.csv",
    "metrics.csv",
    "costs.csv",
    "convergence.csv",
    "dice_reference.csv",
    "search.csv",
    "search_summary.csv",
    "search_parallel.csv",
    "search_mo.csv",
    "summary.json",
    "run.json",
    "config.json",
    "scales.json",
)


def keep_report(run_dir: Path, dest: Path) -> None:
    """Copy what a reader of the report needs (not weights or checkpoints) into ``dest``."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for name in KEEP:
        if (run_dir / name).exists():
            shutil.copy2(run_dir / name, dest / name)
    if (run_dir / "figures").is_dir():
        shutil.copytree(run_dir / "figures", dest / "figures")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", default="ao-knee", help="comma-separated names or 'all'")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--set", action="append", default=[], dest="sets", help="passed on to hrbench run --set")
    ap.add_argument(
        "--keep-runs",
        type=Path,
        default=None,
        help="copy each run folder to KEEP/<study>/ (e.g. reports) instead of deleting it",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "benchmarks" / "study_wall")
    args = ap.parse_args()
    studies = STUDIES if args.studies == "all" else args.studies.split(",")
    extra = [x for s in args.sets for x in ("--set", s)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for study in studies:
            out = Path(tmp) / study
            row = run_study(study, args.profile, out, extra)
            rows.append(row)
            print(
                f"{study:18s} {row['wall_s']:7.1f} s  (train {row['training_s']}, eval {row['evaluation_s']}, "
                f"search {row['search_s']}, other {row['other_s']})",
                flush=True,
            )
            if args.keep_runs is not None:
                keep_report(out, args.keep_runs / study)
    import torch

    header = (
        f"device: {device_name('cpu')} (CPU), torch {torch.__version__}, {os.cpu_count()} cores, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, profile {args.profile}, "
        f"date {time.strftime('%Y-%m-%d')}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out.with_suffix(".csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = [
        f"# `hrbench run` wall time ({args.profile})",
        "",
        header,
        "",
        "| study | wall (s) | training (s) | evaluation (s) | search (s) | data, merge, report (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['study']} | {r['wall_s']} | {r['training_s']} | {r['evaluation_s']} | {r['search_s']} | {r['other_s']} |"
        for r in rows
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
