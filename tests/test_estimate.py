"""The wall-time estimate of ``hrbench run`` and ``--dry-run``: its arithmetic on a hand-made calibration, a dry
run that writes nothing and lists exactly the jobs a real run executes, and fp32 chosen under the AVX2 emulation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hyperrecon.cli import app
from hyperrecon.config import load_study
from hyperrecon.estimate import REPORT_ALLOWANCE_S, Calibration, estimate, format_seconds
from hyperrecon.jobs import study_jobs
from hyperrecon.resolve import cpu_has_fast_bf16, isa_capped_below_bf16, resolve_precision
from hyperrecon.storage import JobLedger

runner = CliRunner()


def hand_calibration() -> Calibration:
    return Calibration(
        train_s={"seg": 0.05, "unet": 0.1, "hyper-S": 0.2, "hyper-M": 0.3, "film": 0.15},
        eval_s={"unet": 0.01, "hyper-S": 0.02, "hyper-M": 0.03, "film": 0.04},
        val_s={"unet": 0.001, "hyper-S": 0.002, "hyper-M": 0.003, "film": 0.004},
        test_s={"unet": 0.5, "hyper-S": 0.6, "hyper-M": 0.7, "film": 0.8},
        trial_s=0.02,
        search_once_s=3.0,
        data_s=1.5,
    )


def test_estimate_multiplies_the_quick_ao_knee_jobs_by_the_calibration():
    # Quick ao-knee pinned to the budgets below (independent of later profile changes):
    study = load_study(
        "ao-knee",
        "quick",
        [
            "train.steps=300",
            "baselines.steps=200",
            "hyper.steps=300",
            "baselines.grid=[0.5, 0.9, 0.99]",
            "segmentation.steps=150",
            "hyper.film=true",
            'search.strategies=["grid", "random", "tpe", "gp", "qmc"]',
            "search.seeds=2",
            "search.model_seeds=2",
            "search.workers=[1]",
            "search.objective_pairs=[]",
        ],
    )
    jobs = study_jobs(study, has_labels=True)
    est = estimate(study, jobs, hand_calibration())
    got = {r["name"]: r["seconds"] for r in est.jobs}
    # Quick ao-knee: seg 150 steps; scales min(100, 200 // 3) = 66 U-Net steps; 9 baselines x 200 steps; hyper S/M
    # (uniform, dhs) and FiLM 300 steps; 11 x 11 = 121 λ per conditional model; 5 strategies x 12 trials x 2 seeds.
    assert got["seg"] == pytest.approx(150 * 0.05)
    assert got["scales"] == pytest.approx(66 * 0.1)
    # Validation passes besides the steps: 200 steps -> an evaluation every 10 (19) + one at the end, and the
    # fidelity probes at steps 7, 21, 63 (4 fidelities, factor 3): 23 passes; a conditional model: every 15 steps
    # (19) + the end, each over the 3 x 3 λ grid: 180 passes.
    assert got["baseline-0.5-0.9"] == pytest.approx(200 * 0.1 + 23 * 0.001)
    assert got["hyper-S-dhs"] == pytest.approx(300 * 0.2 + 180 * 0.002)
    assert got["hyper-M-uniform"] == pytest.approx(300 * 0.3 + 180 * 0.003)
    assert got["film-uniform"] == pytest.approx(300 * 0.15 + 180 * 0.004)
    assert got["eval-baseline-0.99-0.99"] == pytest.approx(0.01 + 0.001)  # one λ on the test set + validation
    assert got["eval-hyper-M-dhs"] == pytest.approx(121 * 0.03)
    assert got["search-baselines"] == pytest.approx(120 * 0.02)  # replayed: no forward passes
    assert got["search-film-uniform"] == pytest.approx(120 * (0.02 + 0.004) + 10 * 0.8)
    training = 7.5 + 6.6 + 9 * 20.023 + 2 * 60.36 + 2 * 90.54 + 45.72
    evaluation = 9 * 0.011 + 2 * 121 * 0.02 + 2 * 121 * 0.03 + 121 * 0.04
    search = 2.4 + 2 * (2.64 + 6) + 2 * (2.76 + 7) + (2.88 + 8)
    assert len(got) == len(jobs) == 36
    assert est.by_phase() == pytest.approx(
        {
            "training": training,
            "evaluation": evaluation,
            "search": search,
            "data": 1.5,
            "search start-up": 3.0,
            "report": REPORT_ALLOWANCE_S,
        }
    )
    assert est.total_s == pytest.approx(training + evaluation + search + 1.5 + 3.0 + REPORT_ALLOWANCE_S)


def test_search_jobs_count_the_trials_the_runner_makes():
    # Every search of a quick study as run_search_job runs it (independent of later profile changes):
    study = load_study(
        "ao-knee",
        "quick",
        [
            'search.strategies=["grid", "tpe", "gp", "random+hyperband", "tpe+median"]',
            "search.budget=12",
            "search.seeds=20",
            "search.model_seeds=3",
            "search.workers=[1, 4, 16]",
            'search.objective_pairs=[["rpsnr", "hfen"], ["rpsnr", "dice"]]',
            'search.mo_strategies=["nsga2", "tpe"]',
        ],
    )
    jobs = {j.name: j for j in study_jobs(study, has_labels=True)}
    cal = hand_calibration()
    cal.mo_trial_s = 0.005
    got = {r["name"]: r["seconds"] for r in estimate(study, list(jobs.values()), cal).jobs}
    # Baselines: 5 strategies x 12 trials x 20 seeds, replayed once per workers entry (3); multi-objective: 2 pairs
    # x 2 strategies x 12 x 20; no forward passes.
    assert got["search-baselines"] == pytest.approx(3 * 5 * 12 * 20 * 0.02 + 2 * 2 * 12 * 20 * 0.005)
    # A model: its distinct samplers (grid, tpe, gp, random) x 12 x 3 model seeds, one validation pass each; the
    # multi-objective trials (2 x 2 x 12 x 3) also one pass each; a test pass per (sampler, seed).
    trials, mo = 4 * 12 * 3, 2 * 2 * 12 * 3
    assert got["search-hyper-M-dhs"] == pytest.approx(trials * 0.02 + mo * 0.005 + (trials + mo) * 0.003 + 4 * 3 * 0.7)
    # without a segmentation net the pairs with Dice are not searched
    no_seg = [j for j in jobs.values() if j.kind != "seg"]
    got = {r["name"]: r["seconds"] for r in estimate(study, no_seg, cal).jobs}
    assert got["search-baselines"] == pytest.approx(3 * 5 * 12 * 20 * 0.02 + 1 * 2 * 12 * 20 * 0.005)


def test_an_sl_study_estimates_its_scales_job_from_validation_passes():
    study = load_study("sl-knee-cs", "quick")
    jobs = study_jobs(study, has_labels=False)
    cal = hand_calibration()
    got = {r["name"]: r for r in estimate(study, jobs, cal).jobs}
    assert got["scales"]["seconds"] == pytest.approx(2 * 0.001)
    assert got["eval-hyper-S-uniform"]["seconds"] == pytest.approx(study.evaluation.grid_points * 0.02)


def test_format_seconds():
    assert [format_seconds(x) for x in (0.4, 42.2, 60, 95.2, 1581)] == [
        "0 s",
        "42 s",
        "1 min 00 s",
        "1 min 35 s",
        "26 min 21 s",
    ]


@pytest.mark.parametrize(
    ("env", "capped"),
    [
        ({}, False),
        ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, True),
        ({"ONEDNN_MAX_CPU_ISA": "avx512_core"}, True),  # AVX-512 without bf16 dot products
        ({"DNNL_MAX_CPU_ISA": "AVX2"}, True),
        ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, False),
        ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}, False),
        ({"ONEDNN_MAX_CPU_ISA": "ALL"}, False),
        ({"ATEN_CPU_CAPABILITY": "avx2"}, True),
        ({"ATEN_CPU_CAPABILITY": "avx512"}, False),
    ],
)
def test_the_isa_caps_of_the_avx2_emulation_turn_auto_to_fp32(monkeypatch, env, capped):
    for key in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    cpu_has_fast_bf16.cache_clear()
    try:
        assert isa_capped_below_bf16() is capped
        if capped:
            assert resolve_precision("auto", "cpu") == "fp32"
            assert resolve_precision("bf16", "cpu") == "bf16"  # an explicit choice stays
    finally:
        cpu_has_fast_bf16.cache_clear()


def snapshot(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.slow
def test_dry_run_writes_nothing_and_lists_exactly_the_jobs_a_real_run_executes(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    out = tmp_path / "run"
    args = ["run", "--study", "ao-knee", "--profile", "smoke", "--out", str(out), "--json"]
    result = runner.invoke(app, [*args, "--dry-run"])
    assert result.exit_code == 0, result.output
    dry = json.loads(result.stdout)
    assert not out.exists() and snapshot(work) == []  # no run folder, not even runs/ under the working folder
    assert dry["jobs"] == [r["name"] for r in dry["estimate"]["jobs"]]
    assert dry["estimate"]["total_s"] > 0 and dry["precision"] in ("fp32", "bf16")

    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    info = json.loads((out / "run.json").read_text())
    ledger = JobLedger(str(out / info["ledger"]), info["run_id"])
    assert sorted(ledger.status()) == sorted(dry["jobs"])
    assert set(ledger.status().values()) == {"COMPLETE"}
    assert sorted(p.stem for p in (out / "jobs").glob("*.json")) == sorted(dry["jobs"])
    assert summary["estimated_wall_seconds"] > 0


def test_dry_run_table_names_every_job(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["run", "--study", "sl-knee-cs", "--profile", "smoke", "--dry-run"])
    assert result.exit_code == 0, result.output
    study = load_study("sl-knee-cs", "smoke")
    for job in study_jobs(study, has_labels=True):
        assert job.name in result.stdout
    assert "estimated wall time on this machine" in result.output and "no run folder written" in result.stdout
    assert snapshot(tmp_path) == []


def test_the_avx2_emulation_makes_a_dry_run_choose_fp32(tmp_path):
    """The environment of reports/benchmarks' AVX2 emulation is read by `train.precision = "auto"`."""
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hyperrecon.cli",
            "run",
            "--study",
            "sl-knee-denoise",
            "--profile",
            "smoke",
            "--dry-run",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["precision"] == "fp32"
    assert snapshot(tmp_path) == []
