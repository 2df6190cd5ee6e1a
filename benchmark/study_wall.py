"""End-to-end wall time of `hrbench run` per study on both CPU kinds, split by phase, against the time target.

Runs each study as a user would (a subprocess of the `hrbench` command, ``train.precision = "auto"``) into a fresh
folder, once per CPU kind (``--isa``):

- ``native``: the machine as it is (on a CPU with AVX512-BF16 or AMX, ``auto`` picks bf16);
- ``avx2``: the same machine made to behave like an AVX2-only CPU (no AVX-512, no bf16 dot products) with
  ``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2``, where ``auto`` picks fp32 (hyperrecon.resolve). On a CPU
  with native bf16 this column is an *emulation*, and the table says so; on an AVX2-only CPU it is the real thing.

It reads the per-job records each run leaves behind (phases) and the estimate the run printed before training
(``estimated_wall_seconds``), and writes <out>.csv (one row per study and CPU kind), <out>.md (one row per study,
both kinds side by side, target met or missed) and, for a full quick set (``--studies all --profile quick``),
the table between the ``study_wall`` markers of README.md (``--readme ''`` to skip).

    python benchmark/study_wall.py --studies all --keep-runs reports   # both kinds; keeps the native runs
    python benchmark/study_wall.py --studies ao-knee --isa avx2         # one study, emulated AVX2 only
    python benchmark/study_wall.py --studies all --profile smoke        # every study at smoke size (60 s target)
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ISA_ENV

from hyperrecon.io import atomic_write_text
from hyperrecon.resolve import cpu_has_fast_bf16
from hyperrecon.runs.context import device_name
from hyperrecon.runs.folder import MERGED_FILES

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
TARGETS_S = {"quick": 300.0, "smoke": 60.0}  # issue 16: quick <= 5 min, smoke < 60 s, on either CPU kind
README_START, README_END = "<!-- study_wall:start -->", "<!-- study_wall:end -->"


def kind_label(isa: str, native_bf16: bool) -> str:
    """Column name of a CPU kind: ``native`` or ``AVX2``, marked ``emulated`` where the CPU has more than AVX2."""
    if isa == "native":
        return "native (bf16)" if native_bf16 else "native"
    return "AVX2 (emulated)" if native_bf16 else "AVX2"


def run_study(study: str, profile: str, out: Path, extra: list[str], isa: str) -> dict:
    exe = shutil.which("hrbench") or str(Path(sys.executable).parent / "hrbench")
    env = {**os.environ, **ISA_ENV[isa]}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [exe, "run", "--study", study, "--profile", profile, "--out", str(out), "--json", *extra],
        capture_output=True,
        text=True,
        env=env,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"error: {study} ({isa}) failed with exit {proc.returncode}: {last}")
    summary = json.loads(proc.stdout)
    by_phase = {"training": 0.0, "evaluation": 0.0, "search": 0.0}
    precision = ""
    for path in (out / "jobs").glob("*.json"):
        info = json.loads(path.read_text())
        kind = info["spec"]["kind"]
        seconds = info.get("job_wall_seconds", 0.0)
        by_phase[PHASES.get(kind, "training")] += float(seconds or 0.0)
        precision = precision or str(info.get("ran_with", {}).get("precision", ""))
    other = wall - sum(by_phase.values())
    target = TARGETS_S.get(profile)
    return {
        "study": study,
        "profile": profile,
        "isa": isa,
        "precision": precision,
        "wall_s": round(wall, 1),
        **{f"{k}_s": round(v, 1) for k, v in by_phase.items()},
        "other_s": round(other, 1),
        "estimate_s": summary.get("estimated_wall_seconds", ""),
        "target_s": target if target is not None else "",
        "met": "" if target is None else ("yes" if wall <= target else "no"),
    }


# The merged files of a run (the run folder's own list) and the files that describe it; no weights or checkpoints.
KEEP = (*MERGED_FILES, "run.json", "config.json", "scales.json")


def keep_report(run_dir: Path, dest: Path) -> None:
    """Copy what a reader of the report needs (not weights or checkpoints) into ``dest``."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for name in KEEP:
        if (run_dir / name).exists():
            shutil.copy2(run_dir / name, dest / name)
    if (run_dir / "figures").is_dir():
        shutil.copytree(run_dir / "figures", dest / "figures")
    for path in sorted((run_dir / "reference").glob("long-baseline.*")):  # the long-run reference, when made
        (dest / "reference").mkdir(exist_ok=True)
        shutil.copy2(path, dest / "reference" / path.name)


def verdict(row: dict | None) -> str:
    if row is None:
        return "—"
    if not row["met"]:
        return f"{row['wall_s']}"
    return f"{row['wall_s']} ({'met' if row['met'] == 'yes' else 'missed'})"


def side_by_side(rows: list[dict], isas: list[str], native_bf16: bool) -> tuple[list[str], list[list[str]]]:
    """(header, cells) of the per-study table: wall time, target verdict and phases of each CPU kind."""
    header = ["study"]
    for isa in isas:
        label = kind_label(isa, native_bf16)
        header += [f"{label}: wall (s)", f"{label}: estimate (s)", f"{label}: training / evaluation / search / other"]
    cells = []
    for study in dict.fromkeys(r["study"] for r in rows):
        line = [study]
        for isa in isas:
            row = next((r for r in rows if r["study"] == study and r["isa"] == isa), None)
            line.append(verdict(row))
            line.append(str(row["estimate_s"]) if row else "—")
            line.append(
                " / ".join(str(row[k]) for k in ("training_s", "evaluation_s", "search_s", "other_s")) if row else "—"
            )
        cells.append(line)
    return header, cells


def markdown_table(header: list[str], cells: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|---|" + "---:|" * (len(header) - 1),
        *("| " + " | ".join(c) + " |" for c in cells),
    ]


def readme_table(rows: list[dict], isas: list[str], native_bf16: bool, profile: str) -> list[str]:
    """The README's short table: the wall time of each CPU kind, target met or missed."""
    header = ["study", *(f"{profile} wall time, {kind_label(i, native_bf16)}" for i in isas)]
    cells = []
    for study in dict.fromkeys(r["study"] for r in rows):
        line = [study]
        for isa in isas:
            row = next((r for r in rows if r["study"] == study and r["isa"] == isa), None)
            line.append("—" if row is None else f"{row['wall_s']:.0f} s" + (" (missed)" if row["met"] == "no" else ""))
        cells.append(line)
    return markdown_table(header, cells)


def replace_between_markers(text: str, lines: list[str], where: str) -> str:
    """``text`` with the lines between the study_wall markers replaced by ``lines``."""
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise SystemExit(f"error: {where}: no '{README_START}' ... '{README_END}' markers to put the table between")
    return text[: start + len(README_START)] + "\n" + "\n".join(lines) + "\n" + text[end:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", default="all", help="comma-separated names or 'all'")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--isa", default="native,avx2", help=f"CPU kinds, a comma list of {', '.join(ISA_ENV)}")
    ap.add_argument("--set", action="append", default=[], dest="sets", help="passed on to hrbench run --set")
    ap.add_argument(
        "--keep-runs",
        type=Path,
        default=None,
        help="copy each native run folder to KEEP/<study>/ (e.g. reports) instead of deleting it "
        "(the first kind of --isa when native is not in it)",
    )
    ap.add_argument(
        "--readme",
        default=None,
        help="README whose study_wall table to rewrite (default: README.md for --studies all --profile quick "
        "without --set; '' to skip)",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "benchmarks" / "study_wall")
    args = ap.parse_args()
    studies = STUDIES if args.studies == "all" else [s for s in args.studies.split(",") if s]
    isas = [x for x in args.isa.split(",") if x]
    bad = [x for x in isas if x not in ISA_ENV]
    if bad or not isas:
        raise SystemExit(
            f"error: --isa: unknown {', '.join(map(repr, bad)) or 'empty list'}; valid: {', '.join(ISA_ENV)}"
        )
    if args.readme is None:
        full = args.studies == "all" and args.profile == "quick" and not args.sets
        args.readme = str(ROOT / "README.md") if full else ""
    keep_isa = "native" if "native" in isas else isas[0]
    extra = [x for s in args.sets for x in ("--set", s)]
    native_bf16 = cpu_has_fast_bf16()  # this process runs uncapped: the CPU as it is
    load_start = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for study in studies:
            for isa in isas:
                out = Path(tmp) / f"{study}-{isa}"
                row = run_study(study, args.profile, out, extra, isa)
                rows.append(row)
                print(
                    f"{study:16s} {kind_label(isa, native_bf16):16s} {row['wall_s']:7.1f} s (estimate "
                    f"{row['estimate_s']} s; train {row['training_s']}, eval {row['evaluation_s']}, "
                    f"search {row['search_s']}, other {row['other_s']})",
                    flush=True,
                )
                if args.keep_runs is not None and isa == keep_isa:
                    keep_report(out, args.keep_runs / study)
                shutil.rmtree(out, ignore_errors=True)  # weights and checkpoints: not needed any more
    import torch

    target = TARGETS_S.get(args.profile)
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    notes = [
        f"- device: {device_name('cpu')} (CPU), {os.cpu_count()} cores, "
        f"{'AVX512-BF16/AMX' if native_bf16 else 'no native bf16'}; torch {torch.__version__}; "
        f"OMP_NUM_THREADS={threads}",
        f"- profile: {args.profile}" + (f"; overrides: {' '.join(args.sets)}" if args.sets else ""),
        "- CPU kinds: "
        + "; ".join(
            f"{kind_label(i, native_bf16)}: "
            + (" ".join(f"{k}={v}" for k, v in ISA_ENV[i].items()) or "the machine as it is")
            + f", precision {next((r['precision'] for r in rows if r['isa'] == i), '?')}"
            for i in isas
        ),
        "- emulated: the AVX2 kernels and fp32 of a CPU without native bf16, run on this CPU (its clock, caches "
        "and memory)"
        if native_bf16 and "avx2" in isas
        else "- measured on the CPU kind named",
        "- target: " + (f"{target:.0f} s per study (issue 16)" if target else "none for this profile"),
        "- estimate: what `hrbench run` printed before training (its calibration included in the wall time); "
        "other: the wall time outside the jobs (start-up and imports, data, calibration, ledger, merge, report)",
        f"- load average at start: {load_start:.2f}; date {time.strftime('%Y-%m-%d %H:%M')}",
    ]
    met = [r for r in rows if r["met"]]
    if met:
        missed = [
            f"{r['study']} ({kind_label(r['isa'], native_bf16)}, {r['wall_s']} s)" for r in met if r["met"] == "no"
        ]
        notes.append(
            f"- target met by {len(met) - len(missed)} of {len(met)} runs"
            + (f"; missed: {', '.join(missed)}" if missed else "")
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(args.out.with_suffix(".csv"), buf.getvalue())
    header, cells = side_by_side(rows, isas, native_bf16)
    lines = [
        f"# `hrbench run` wall time ({args.profile}), both CPU kinds",
        "",
        *notes,
        "",
        *markdown_table(header, cells),
    ]
    atomic_write_text(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    print(f"wrote {args.out.with_suffix('.md')}")
    if args.readme:
        readme = Path(args.readme)
        text = replace_between_markers(readme.read_text(), readme_table(rows, isas, native_bf16, args.profile), readme)
        atomic_write_text(readme, text)
        print(f"updated the table in {readme}")


if __name__ == "__main__":
    main()
