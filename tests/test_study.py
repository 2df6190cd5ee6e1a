"""The study runner end to end: every study under the smoke profile, resume, two workers, costs, bad runs."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from hyperrecon.cli import app
from hyperrecon.config import load_study
from hyperrecon.errors import RunError
from hyperrecon.jobs import recon_models, study_jobs
from hyperrecon.storage import JobLedger
from hyperrecon.study import context_for, execute, prepare_run, work

runner = CliRunner()
STUDIES = ["ao-knee", "ao-brain", "sl-brain-cs", "sl-knee-cs", "sl-knee-denoise", "sl-knee-sr"]


def _check_run(run_dir: Path, study_name: str) -> None:
    study = load_study(study_name, "smoke")
    results = pd.read_csv(run_dir / "results.csv")
    lam_cols = ["lam1", "lam2"][: study.n_lams]  # a second-λ column only where the study has two (AO)
    # `subject`: each slice's subject from the data reader, the statistics' unit (issue 15)
    assert list(results.columns) == ["model", *lam_cols, "slice", "subject", "metric", "replicate", "value"]
    assert set(results.replicate) == {0}
    models = {name for name, _, _ in recon_models(study)}
    assert set(results.model) == models
    assert results.value.notna().all()
    # Conditional models are evaluated over the whole evaluation grid, baselines at their own λ.
    n_grid = study.evaluation.grid_points**study.n_lams
    for name, kind, params in recon_models(study):
        sub = results[(results.model == name) & (results.metric == "psnr")]
        n_lams = len(sub.groupby(lam_cols, dropna=False))
        assert n_lams == (1 if kind == "baseline" else n_grid), name
        if kind == "baseline":
            assert sub.lam1.iloc[0] == params["lam"][0]
    costs = pd.read_csv(run_dir / "costs.csv")
    assert models <= set(costs.model)
    assert (costs[costs.model.isin(models)].device_seconds > 0).all()
    assert (costs[costs.model.isin(models)].n_params > 0).all()
    search = pd.read_csv(run_dir / "search.csv")
    assert set(search.strategy) == set(study.search.strategies)
    assert "baselines" in set(search.target)
    summary = pd.read_csv(run_dir / "search_summary.csv")
    assert summary.best_mean.notna().all()


@pytest.mark.parametrize("study_name", STUDIES)
def test_every_study_runs_end_to_end_under_smoke(tmp_path: Path, study_name: str) -> None:
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", "--study", study_name, "--profile", "smoke", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert summary["study"] == study_name and Path(summary["report"]).exists()
    _check_run(out, study_name)


def test_resume_finishes_without_repeating_jobs(tmp_path: Path) -> None:
    study = load_study("sl-knee-denoise", "smoke")
    out = tmp_path / "run"
    run = prepare_run(study, out=out, resume=False, storage=None, device="cpu")
    ctx = context_for(run)
    from hyperrecon.study import enqueue

    enqueue(run, ctx)
    assert work(run, ctx, max_jobs=4) == 4  # "interrupted" after four jobs
    first = {p.name: p.stat().st_mtime_ns for p in (out / "jobs").glob("*.json")}
    assert len(first) == 4

    result = runner.invoke(
        app, ["run", "--study", "sl-knee-denoise", "--profile", "smoke", "--out", str(out), "--resume", "--no-report"]
    )
    assert result.exit_code == 0, result.output
    again = {p.name: p.stat().st_mtime_ns for p in (out / "jobs").glob("*.json")}
    assert all(again[name] == mtime for name, mtime in first.items())  # finished jobs were not redone
    info = json.loads((out / "run.json").read_text())
    ledger = JobLedger(info["storage"], info["run_id"])
    complete = Counter(j.name for j in ledger.jobs() if j.state == "COMPLETE")
    expected = {j.name for j in study_jobs(study, has_labels=True)}
    assert set(complete) == expected and set(complete.values()) == {1}


def test_two_local_workers_run_every_job_once(tmp_path: Path) -> None:
    study = load_study("sl-knee-sr", "smoke")
    out = tmp_path / "run"
    run = prepare_run(study, out=out, resume=False, storage=None, device="cpu")
    execute(run, workers=2, device="cpu")
    info = json.loads((out / "run.json").read_text())
    ledger = JobLedger(info["storage"], info["run_id"])
    complete = Counter(j.name for j in ledger.jobs() if j.state == "COMPLETE")
    assert set(complete.values()) == {1}
    assert len(complete) == len(study_jobs(study, has_labels=True))
    workers = {j.user_attrs["worker"].split(":")[1] for j in ledger.jobs() if j.state == "COMPLETE"}
    assert len(workers) == 2 and str(os.getpid()) not in workers  # both child processes took jobs
    _check_run(out, "sl-knee-sr")


def test_resume_refuses_a_different_config(tmp_path: Path) -> None:
    out = tmp_path / "run"
    prepare_run(load_study("ao-knee", "smoke"), out=out, resume=False, storage=None, device="cpu")
    with pytest.raises(RunError, match="different study config"):
        prepare_run(load_study("ao-knee", "smoke", ["seed=5"]), out=out, resume=True, storage=None, device="cpu")


def test_new_run_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["run", "--study", "ao-knee", "--profile", "smoke", "--out", str(out)])
    assert result.exit_code == 1
    assert "folder exists and is not empty" in result.output
    assert (out / "keep.txt").read_text() == "mine"


def test_resume_without_a_run(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["run", "--study", "ao-knee", "--profile", "smoke", "--out", str(tmp_path / "none"), "--resume"]
    )
    assert result.exit_code == 1 and "no run to resume" in result.output
