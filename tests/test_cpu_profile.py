"""benchmark/cpu_profile.py: kernel categories, the AVX2 peak, FLOP counts against a hand count, and (slow) a whole
tiny run on the native path and under the AVX2 emulation. The harness only; no timing is asserted."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmark"))

import cpu_profile  # noqa: E402


@pytest.mark.parametrize(
    ("op", "cat"),
    [
        ("aten::mkldnn_convolution", "convolution"),
        ("aten::convolution_backward", "convolution"),
        ("aten::conv2d", "convolution"),
        ("aten::_slow_conv2d_forward", "convolution"),
        ("aten::native_batch_norm", "batchnorm"),
        ("aten::native_batch_norm_backward", "batchnorm"),
        ("aten::_fused_adam_", "optimiser"),
        ("Optimizer.step#Adam.step", "optimiser"),
        ("Optimizer.zero_grad#Adam.zero_grad", "optimiser"),
        ("aten::_fft_c2c", "fft"),
        ("aten::fft_ifft2", "fft"),
        ("aten::mm", "matmul"),
        ("aten::addmm", "matmul"),
        ("aten::bmm", "matmul"),
        ("aten::linear", "matmul"),
        ("aten::add_", "other ops"),
        ("aten::_to_copy", "other ops"),
        ("aten::index", "other ops"),
        ("aten::_convert_indices_from_coo_to_csr", "other ops"),
        ("aten::mean", "other ops"),
    ],
)
def test_operators_fall_into_their_kernel_category(op, cat):
    assert cpu_profile.category(op) == cat


def test_the_avx2_peak_is_cores_times_fma_units_lanes_flops_and_clock():
    assert cpu_profile.peak_gflops(2, 2.6) == pytest.approx(2 * 2 * 8 * 2 * 2.6)  # 166.4 GFLOP/s
    assert cpu_profile.peak_gflops(1, 3.0) == pytest.approx(96.0)


def test_flop_count_of_an_evaluation_pass_matches_a_hand_count_of_the_unet_convolutions():
    import torch

    from hyperrecon.config import load_study
    from hyperrecon.context import RunContext, load_bundle
    from hyperrecon.estimate import model_of_kind

    study = load_study("sl-knee-denoise", "smoke")
    ctx = RunContext(Path("not-written"), study, "cpu", "fp32")
    ctx.bundle = load_bundle(study)
    flops = cpu_profile.count_flops(study, ctx, ["unet"], ["unet"])
    # By hand: every Conv2d of the U-Net, 2 x Cout x Hout x Wout x Cin x k x k per slice, shapes from forward hooks.
    model, per_slice = model_of_kind(study, "unet"), []

    def hook(mod, inputs, out):
        per_slice.append(
            2
            * out.shape[1]
            * out.shape[2]
            * out.shape[3]
            * mod.in_channels
            // mod.groups
            * mod.kernel_size[0]
            * mod.kernel_size[1]
        )

    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(hook)
    size = study.data.image_size
    with torch.no_grad():
        cin = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)).in_channels
        model.eval()(torch.zeros(1, cin, size, size))
    n_test = len(ctx.eval_data("test", study.evaluation.n_test))
    assert flops["eval"]["unet"] == sum(per_slice) * n_test
    assert flops["val"]["unet"] == sum(per_slice) * len(ctx.eval_data("val", study.search.n_val))
    # Training: forward + backward, about 3x the forward of a batch (no input gradient for the first conv).
    b = study.train.batch_size
    assert 2.5 * sum(per_slice) * b < flops["train"]["unet"] < 3.01 * sum(per_slice) * b


def test_bad_options_are_one_error_line():
    for args in (["--isa", "avx3"], ["--skip", "1"]):
        proc = subprocess.run(
            [sys.executable, str(ROOT / "benchmark" / "cpu_profile.py"), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode != 0 and proc.stderr.strip().startswith("error:"), proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_tiny_run_is_split_into_phases_and_kernels_on_both_isas(tmp_path):
    stem = tmp_path / "cp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmark" / "cpu_profile.py"),
            "--study",
            "sl-knee-denoise",
            "--profile",
            "smoke",
            "--isa",
            "native,avx2",
            "--skip",
            "2",
            "--sample",
            "1",
            "--out",
            str(stem),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(stem.with_suffix(".csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["isa"] for r in rows} == {"native", "avx2"}
    assert {r["precision"] for r in rows if r["isa"] == "avx2"} == {"fp32"}  # the emulation turns auto to fp32
    for isa in ("native", "avx2"):
        phases = {r["phase"]: float(r["seconds"]) for r in rows if r["isa"] == isa and not r["category"]}
        assert list(phases) == list(cpu_profile.PHASES) and all(v >= 0 for v in phases.values())
        for phase in ("training", "evaluation", "search"):
            cats = [float(r["seconds"]) for r in rows if r["isa"] == isa and r["phase"] == phase and r["category"]]
            assert len(cats) == len(cpu_profile.CATEGORIES)
            assert sum(cats) == pytest.approx(phases[phase], rel=0.05, abs=0.1)
    gflop = {(r["isa"], r["phase"]): r["gflop"] for r in rows if not r["category"]}
    assert float(gflop[("native", "training")]) > 0
    assert all(gflop[("native", p)] == gflop[("avx2", p)] for p in cpu_profile.PHASES)  # the same work
    md = stem.with_suffix(".md").read_text()
    assert "ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2" in md and "x 2 FMA units x 8 fp32 lanes" in md


def test_flops_only_counts_the_work_and_divides_it_by_the_stated_peak(tmp_path):
    stem = tmp_path / "work"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmark" / "cpu_profile.py"),
            "--flops-only",
            "--study",
            "sl-knee-denoise",
            "--profile",
            "smoke",
            "--cores",
            "2",
            "--ghz",
            "2.5",
            "--out",
            str(stem),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(stem.with_suffix(".csv"), newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    phases = [float(row[f"{p}_gflop"]) for p in ("training", "evaluation", "search")]
    assert float(row["total_gflop"]) == pytest.approx(sum(phases), abs=0.15)
    assert float(row["seconds_at_peak"]) == pytest.approx(float(row["total_gflop"]) / 160.0, abs=0.05)  # 2 x 32 x 2.5
    assert all(v > 0 for v in phases)
    assert (
        "160.0 GFLOP/s = 2 cores x 2 FMA units x 8 fp32 lanes x 2 flops x 2.50 GHz"
        in stem.with_suffix(".md").read_text()
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work.csv", "work.md"]  # no run folder


def test_step_shares_split_the_profiled_steps_of_each_model_kind(tmp_path):
    stem = tmp_path / "sh"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmark" / "cpu_profile.py"),
            "--step-shares",
            "unet,hyper-S",
            "--study",
            "sl-knee-denoise",
            "--profile",
            "smoke",
            "--isa",
            "avx2",
            "--skip",
            "2",
            "--sample",
            "1",
            "--threads",
            "1",
            "--out",
            str(stem),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(stem.with_suffix(".csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["isa"], r["precision"], r["model"]) for r in rows] == [
        ("avx2", "fp32", "unet"),
        ("avx2", "fp32", "hyper-S"),
    ]
    for r in rows:
        shares = [float(r[c]) for c in (*cpu_profile.CATEGORIES[:6], "untraced")]
        assert all(v >= 0 for v in shares) and sum(shares) == pytest.approx(1.0, abs=0.01)
        assert float(r["convolution"]) > 0 and float(r["step_s"]) > 0
    assert float(rows[0]["matmul"]) == 0.0 < float(rows[1]["matmul"])  # only the hypernetwork has heads
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sh.csv", "sh.md"]
