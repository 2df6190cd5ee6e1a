"""The GPU check script and its helpers: target verdicts, study sizing, and the script's CPU dry run."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmark"))

import gpu_study_plan  # noqa: E402
import gpu_targets  # noqa: E402


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_targets_take_each_models_best_precision_and_need_every_model(tmp_path: Path) -> None:
    write_csv(
        tmp_path / "new_lam.csv",
        [
            {"size": size, "model": m, "precision": p, "median_ms": v}
            for size, m, p, v in [
                (256, "unet", "bf16", 0.4),
                (256, "hyper-S", "fp32", 2.5),
                (256, "hyper-S", "bf16", 1.1),
                (256, "hyper-M", "bf16", 1.3),
                (256, "hyper-L", "bf16", 1.9),
                (256, "film", "bf16", 0.9),
                (64, "hyper-L", "bf16", 9.0),
            ]  # another size: not read
        ],
    )
    write_csv(
        tmp_path / "train_step.csv",
        [
            {"size": 256, "model": m, "ratio_vs_best_unet": r}
            for m, r in [("unet", 1.0), ("hyper-S", 1.05), ("hyper-M", 1.21), ("hyper-L", 1.1), ("film", 1.3)]
        ],
    )
    rows = gpu_targets.evaluate(tmp_path, 256)
    latency, step, sweep = rows
    assert latency["status"] == "met" and latency["measured"]["hyper-S"] == 1.1  # bf16 beats fp32
    assert step["status"] == "missed" and step["measured"]["hyper-M"] == 1.21  # 1.21 > 1.2; FiLM not a target
    assert sweep["status"] == "not measured" and sweep["measured"] == {}  # no eval_sweep.csv: never "met"


def test_targets_name_what_was_not_measured(tmp_path: Path) -> None:
    write_csv(
        tmp_path / "eval_sweep.csv",
        [{"size": 256, "model": m, "ratio_vs_best_unet": r} for m, r in [("unet", 1.0), ("hyper-S", 0.95)]],
    )
    sweep = gpu_targets.evaluate(tmp_path, 256)[2]
    assert sweep["status"] == "met (only hyper-S measured)"


def test_study_plan_divides_the_budget_by_the_summed_step_times(tmp_path: Path) -> None:
    times = {"unet": 0.02, "hyper-S": 0.022, "hyper-M": 0.023, "hyper-L": 0.025, "film": 0.021}
    # 3 baselines + seg at the U-Net's time, S, M, L, FiLM at theirs
    per_step = 1.5 * (4 * 0.02 + 0.022 + 0.023 + 0.025 + 0.021)
    plan = gpu_study_plan.plan(times, budget=120.0, overhead=1.5, lo=100, hi=5000)
    assert plan["seconds_per_step_all_models"] == pytest.approx(per_step)
    assert plan["steps"] == int(120.0 / per_step) // 50 * 50 == 450
    assert "train.steps=450" in plan["overrides"] and "segmentation.steps=450" in plan["overrides"]
    assert gpu_study_plan.plan(times, budget=1e6, overhead=1.5, lo=100, hi=5000)["steps"] == 5000
    assert gpu_study_plan.plan(times, budget=1.0, overhead=1.5, lo=100, hi=5000)["steps"] == 100
    with pytest.raises(SystemExit, match="no 'unet' row"):
        gpu_study_plan.plan({"hyper-S": 0.1}, budget=10, overhead=1, lo=1, hi=10)


def test_study_plan_reads_the_fastest_precision(tmp_path: Path) -> None:
    write_csv(
        tmp_path / "ts.csv",
        [
            {"size": 256, "model": "unet", "median_ms": 30.0},
            {"size": 256, "model": "unet", "median_ms": 12.5},
            {"size": 64, "model": "unet", "median_ms": 1.0},
        ],
    )
    assert gpu_study_plan.step_seconds(tmp_path / "ts.csv", 256) == {"unet": 0.0125}


@pytest.mark.slow
def test_cpu_dry_run_writes_the_whole_output_tree(tmp_path: Path) -> None:
    """The script's CPU dry run: every stage ok, the same files a GPU run brings back."""
    out = tmp_path / "out"
    env = {
        **os.environ,
        "GPU_CHECK_DEVICE": "cpu",
        "GPU_CHECK_RUN": str(tmp_path / "run"),
        "OMP_NUM_THREADS": "1",
        "PYTHON": sys.executable,
    }
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmark" / "gpu_check.sh"), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    summary = (out / "SUMMARY.md").read_text()
    for stage in (
        "install",
        "environment",
        "tests",
        "train_step",
        "eval_sweep",
        "new_lam",
        "targets",
        "study",
        "collect",
    ):
        assert f"| {stage} | ok |" in summary, summary
    for f in (
        "environment.txt",
        "environment.json",
        "tests.xml",
        "bench/train_step.csv",
        "bench/eval_sweep.csv",
        "bench/new_lam.csv",
        "bench/targets.md",
        "bench/plan.json",
        "study/report.md",
        "study/costs.csv",
        "study/results.csv",
        "study/summary.json",
    ):
        assert (out / f).is_file(), f
    assert list((out / "study" / "figures").glob("*.png"))
    assert json.loads((out / "environment.json").read_text())["device"] == "cpu"
    targets = json.loads((out / "bench" / "targets.json").read_text())
    assert all(t["measured"] for t in targets)  # every target has figures (at the dry run's tiny size)
    models = {r["model"] for r in csv.DictReader(open(out / "bench" / "new_lam.csv"))}
    assert models == {"unet", "hyper-S", "hyper-M", "hyper-L", "film"}


def test_new_lam_latency_rows_per_model_and_precision(tmp_path: Path) -> None:
    stem = tmp_path / "nl"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmark" / "new_lam.py"),
            "--device",
            "cpu",
            "--sizes",
            "16",
            "--repeats",
            "3",
            "--warmup",
            "1",
            "--models",
            "unet,hyper-S",
            "--precisions",
            "fp32,bf16",
            "--out",
            str(stem),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(csv.DictReader(open(stem.with_suffix(".csv"))))
    assert [(r["model"], r["precision"], r["new_lam_each_call"]) for r in rows] == [
        ("unet", "fp32", "False"),
        ("unet", "bf16", "False"),
        ("hyper-S", "fp32", "True"),
        ("hyper-S", "bf16", "True"),
    ]
    for r in rows:
        assert int(r["repeats"]) == 3 and float(r["median_ms"]) > 0
        assert float(r["wall_median_ms"]) >= float(r["median_ms"]) * 0.5  # CPU: both are host clocks
    assert "One reconstruction at a new λ" in stem.with_suffix(".md").read_text()
