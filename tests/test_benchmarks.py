"""The benchmark scripts run, write the tables they promise, and compute their ratios within the run.

Tiny sizes only: these tests check the harness (arguments, output files, columns, reference rows), never a timing.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmark"
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py") if p.name != "common.py")


def run_script(name: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(BENCH / name), *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def read_rows(stem: Path) -> list[dict[str, str]]:
    with open(stem.with_suffix(".csv"), newline="") as fh:
        return list(csv.DictReader(fh))


def test_the_scripts_are_the_documented_ones():
    readme = (ROOT / "reports" / "benchmarks" / "README.md").read_text()
    assert SCRIPTS == [
        "bn_stats.py",
        "cpu_profile.py",
        "data_throughput.py",
        "dhs_select.py",
        "eval_sweep.py",
        "explore_latency.py",
        "gpu_study_plan.py",
        "gpu_targets.py",
        "hyper_init.py",
        "lam_response.py",
        "long_reference.py",
        "new_lam.py",
        "study_wall.py",
        "train_loop.py",
        "train_step.py",
    ]
    for name in SCRIPTS:
        assert f"benchmark/{name}" in readme, f"{name} is not described in reports/benchmarks/README.md"


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_explains_itself(name):
    out = run_script(name, "--help", timeout=60).stdout
    assert out.startswith("usage:") and "--out" in out


def test_train_step_writes_one_row_per_configuration_with_the_unet_as_reference(tmp_path):
    stem = tmp_path / "ts"
    run_script(
        "train_step.py",
        "--sizes",
        "16",
        "--batch",
        "4",
        "--repeats",
        "2",
        "--warmup",
        "1",
        "--threads",
        "1",
        "--models",
        "unet,hyper-S",
        "--precisions",
        "fp32,bf16",
        "--wait-quiet",
        "0",
        "--retries",
        "0",
        "--out",
        str(stem),
    )
    rows = read_rows(stem)
    assert [(r["model"], r["precision"]) for r in rows] == [
        ("unet", "fp32"),
        ("unet", "bf16"),
        ("hyper-S", "fp32"),
        ("hyper-S", "bf16"),
    ]
    for r in rows:
        assert float(r["median_ms"]) > 0 and int(r["repeats"]) == 2 and r["threads"] == "1"
        if r["model"] == "unet":
            assert float(r["ratio_same_prec"]) == 1.0
    unet = {r["precision"]: float(r["median_ms"]) for r in rows if r["model"] == "unet"}
    best = min(unet.values())
    for r in rows:  # the ratio is computed from the medians of this very run
        assert float(r["ratio_vs_best_unet"]) == pytest.approx(float(r["median_ms"]) / best, rel=0.02, abs=0.002)
    assert {r["chosen_path"] for r in rows if r["model"] == "hyper-S"} == {"grouped"}
    md = stem.with_suffix(".md").read_text()
    assert "- device:" in md and "- torch:" in md and "| 16 | hyper-S | bf16 |" in md


def test_eval_sweep_reports_throughput_against_unet_inference(tmp_path):
    stem = tmp_path / "es"
    run_script(
        "eval_sweep.py",
        "--sizes",
        "16",
        "--batch",
        "2",
        "--lams",
        "3",
        "--repeats",
        "2",
        "--warmup",
        "1",
        "--threads",
        "1",
        "--models",
        "unet,hyper-S,film",
        "--precisions",
        "fp32",
        "--wait-quiet",
        "0",
        "--retries",
        "0",
        "--out",
        str(stem),
    )
    rows = read_rows(stem)
    assert [r["model"] for r in rows] == ["unet", "hyper-S", "film"]
    for r in rows:
        # 3 λ x 2 slices per sweep: slices/s follows from the sweep's median time
        assert float(r["slices_per_s"]) == pytest.approx(6 / (float(r["sweep_median_ms"]) / 1e3), rel=0.02)
    assert float(rows[0]["ratio_vs_best_unet"]) == 1.0


def test_train_loop_times_the_real_jobs_of_a_study(tmp_path):
    stem = tmp_path / "tl"
    run_script(
        "train_loop.py",
        "--study",
        "ao-knee",
        "--profile",
        "smoke",
        "--jobs",
        "baseline,hyper-S-uniform",
        "--adam",
        "fused,default",
        "--reuse",
        "on,off",
        "--steps",
        "4",
        "--skip",
        "1",
        "--rounds",
        "1",
        "--threads",
        "1",
        "--out",
        str(stem),
    )
    rows = read_rows(stem)
    configs = [(r["job"], r["adam"], r["reuse_weights"]) for r in rows]
    assert configs == [
        ("baseline", "fused", "-"),
        ("baseline", "default", "-"),
        ("hyper-S-uniform", "fused", "on"),
        ("hyper-S-uniform", "fused", "off"),
        ("hyper-S-uniform", "default", "on"),
        ("hyper-S-uniform", "default", "off"),
    ]
    for r in rows:
        assert int(r["steps_timed"]) == 2 and float(r["median_ms"]) > 0 and r["size"] == "32"
    current = [r for r in rows if r["adam"] == "fused" and r["reuse_weights"] in ("on", "-")]
    assert all(float(r["vs_current"]) == 1.0 for r in current)


def test_train_loop_rejects_an_unknown_job(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH / "train_loop.py"),
            "--profile",
            "smoke",
            "--jobs",
            "hyper-X",
            "--out",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode != 0 and "unknown job 'hyper-X'" in proc.stderr
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH / "train_loop.py"),
            "--profile",
            "smoke",
            "--jobs",
            "hyper-S-bogus",
            "--out",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode != 0 and proc.stderr.strip().startswith("error:") and "'bogus'" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "x.csv").exists()


def test_study_wall_splits_a_run_into_phases_on_both_cpu_kinds(tmp_path):
    stem = tmp_path / "sw"
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- study_wall:start -->\nold table\n<!-- study_wall:end -->\nrest\n")
    run_script(
        "study_wall.py",
        *("--studies", "sl-knee-cs", "--profile", "smoke", "--out", str(stem), "--readme", str(readme)),
        timeout=400,
    )
    rows = read_rows(stem)
    assert [(r["study"], r["profile"], r["isa"]) for r in rows] == [
        ("sl-knee-cs", "smoke", "native"),
        ("sl-knee-cs", "smoke", "avx2"),
    ]
    for row in rows:
        phases = sum(float(row[k]) for k in ("training_s", "evaluation_s", "search_s"))
        assert float(row["training_s"]) > 0 and float(row["evaluation_s"]) > 0
        # the parts add up to the wall time (rounded to 0.1 s each)
        assert phases + float(row["other_s"]) == pytest.approx(float(row["wall_s"]), abs=0.25)
        # the smoke target (60 s) is stated and the verdict follows the wall time
        assert float(row["target_s"]) == 60.0 and row["met"] == ("yes" if float(row["wall_s"]) <= 60 else "no")
        assert float(row["estimate_s"]) > 0  # what hrbench run printed before training
    # the AVX2 kind runs in fp32 ("auto" under the ISA cap), whatever the CPU
    assert rows[1]["precision"] == "fp32"
    md = stem.with_suffix(".md").read_text()
    bf16 = any(f in Path("/proc/cpuinfo").read_text() for f in ("amx_bf16", "avx512_bf16"))
    avx2 = "AVX2 (emulated)" if bf16 else "AVX2"
    assert f"{avx2}: wall (s)" in md and "ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2" in md
    text = readme.read_text()
    assert text.startswith("intro\n<!-- study_wall:start -->\n| study |") and text.endswith(
        "<!-- study_wall:end -->\nrest\n"
    )
    assert "old table" not in text and f"smoke wall time, {avx2}" in text and "| sl-knee-cs |" in text


def test_timing_scripts_reject_an_unknown_precision_in_one_line(tmp_path):
    for name in ("train_step.py", "eval_sweep.py"):
        proc = subprocess.run(
            [
                sys.executable,
                str(BENCH / name),
                "--precisions",
                "fp32,fp16",
                "--sizes",
                "16",
                "--out",
                str(tmp_path / "x"),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
        assert proc.returncode != 0 and proc.stderr.strip() == (
            "error: --precisions: unknown 'fp16'; valid: fp32, fp32-cl, bf16-nchw, bf16"
        )
        assert not (tmp_path / "x.csv").exists()


def test_memory_format_and_precision_vary_independently(tmp_path):
    stem = tmp_path / "fmt"
    run_script(
        "train_step.py",
        "--sizes",
        "16",
        "--batch",
        "2",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--threads",
        "1",
        "--models",
        "unet",
        "--precisions",
        "fp32,fp32-cl,bf16-nchw,bf16",
        "--wait-quiet",
        "0",
        "--retries",
        "0",
        "--out",
        str(stem),
    )
    assert [r["precision"] for r in read_rows(stem)] == ["fp32", "fp32-cl", "bf16-nchw", "bf16"]
    sys.path.insert(0, str(BENCH))
    try:
        import torch
        from common import memory_format, precision_context
    finally:
        sys.path.remove(str(BENCH))
    assert memory_format("fp32-cl") == torch.channels_last and memory_format("bf16-nchw") == torch.contiguous_format
    with precision_context("bf16-nchw", torch.device("cpu")):
        assert torch.is_autocast_enabled("cpu")
    with precision_context("fp32-cl", torch.device("cpu")):
        assert not torch.is_autocast_enabled("cpu")
