"""Replicates in the job graph and end to end: ``replicates = N`` repeats training and evaluation with seed
``seed + r`` in ``replicates/r<r>/``; results.csv and costs.csv carry the replicate; the report's intervals are over
replicates."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from hyperrecon.cli import app
from hyperrecon.config import PROFILES, load_study
from hyperrecon.errors import ConfigError
from hyperrecon.jobs import replicate_dir, split_replicate, study_jobs

runner = CliRunner()
STUDIES = ["ao-knee", "ao-brain", "sl-brain-cs", "sl-knee-cs", "sl-knee-denoise", "sl-knee-sr"]


def test_replicate_jobs_repeat_everything_but_the_searches() -> None:
    one = study_jobs(load_study("ao-knee", "smoke"), has_labels=True)
    three = study_jobs(load_study("ao-knee", "smoke", ["replicates=3"]), has_labels=True)
    assert [j.name for j in three[: len(one)]] == [j.name for j in one]  # replicate 0 keeps its names
    extra = three[len(one) :]
    base = [j for j in one if j.kind != "search"]
    assert len(extra) == 2 * len(base)
    for r in (1, 2):
        mine = [j for j in extra if j.name.startswith(f"r{r}/")]
        assert [split_replicate(j.name) for j in mine] == [(r, j.name) for j in base]
        assert [j.phase for j in mine] == [j.phase for j in base]
        assert all(j.params["replicate"] == r for j in mine)
    assert split_replicate("search-baselines") == (0, "search-baselines")
    assert replicate_dir(Path("run"), 0) == Path("run") and replicate_dir(Path("run"), 2) == Path("run/replicates/r2")


def test_replicates_key_is_checked() -> None:
    with pytest.raises(ConfigError, match="replicates"):
        load_study("sl-knee-sr", "smoke", ["replicates=0"])
    assert load_study("sl-knee-sr", "smoke").replicates == 1


@pytest.mark.parametrize("study_name", STUDIES)
def test_every_study_has_a_standard_profile_with_replicates(study_name: str) -> None:
    assert "standard" in PROFILES
    s = load_study(study_name, "standard")
    assert s.replicates >= 3 and set(s.hyper.sizes) == {"S", "M", "L"}
    # equal budgets: the baselines train as long as the hypernetworks
    assert (s.baselines.steps or s.train.steps) == (s.hyper.steps or s.train.steps)


@pytest.mark.slow
def test_two_replicates_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "run",
            "--study",
            "sl-knee-denoise",
            "--profile",
            "smoke",
            "--out",
            str(out),
            "--set",
            "replicates=2",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    results = pd.read_csv(out / "results.csv")
    assert set(results.replicate) == {0, 1}
    r0 = results[results.replicate == 0].reset_index(drop=True)
    r1 = results[results.replicate == 1].reset_index(drop=True)
    assert len(r0) == len(r1) and list(r0.model) == list(r1.model)
    assert not r0.value.equals(r1.value)  # another seed: other subjects, noise and initialisation
    assert (out / "replicates" / "r1" / "models").is_dir() and (out / "replicates" / "r1" / "jobs").is_dir()
    assert not (out / "replicates" / "r1" / "search").exists()  # searches run on replicate 0 only
    costs = pd.read_csv(out / "costs.csv")
    assert set(costs.replicate) == {0, 1}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["replicates"] == 2
    assert [c["id"] for c in summary["claims"]] == list("abcdef")  # the report put its claims table there
    rep = json.loads(runner.invoke(app, ["report", str(out), "--json"]).stdout)
    assert rep["replicates"]["n"] == 2 and [c["id"] for c in rep["claims"]] == list("abcdef")
    assert (out / "eval" / "baseline-0-endpoints.npz").exists()
    assert "What this run cannot test" in (out / "report.md").read_text()


@pytest.mark.slow
def test_a_run_with_replicates_resumes_without_repeating_jobs(tmp_path: Path) -> None:
    from collections import Counter

    from hyperrecon.storage import JobLedger
    from hyperrecon.study import context_for, enqueue, prepare_run, work

    study = load_study("sl-knee-sr", "smoke", ["replicates=2"])
    out = tmp_path / "run"
    run = prepare_run(study, out=out, resume=False, storage=None, device="cpu")
    ctx = context_for(run)
    enqueue(run, ctx)
    assert work(run, ctx, max_jobs=6) == 6  # phase 0 of both replicates and more: "interrupted"
    done_r1 = {p.name: p.stat().st_mtime_ns for p in (out / "replicates" / "r1" / "jobs").glob("*.json")}
    assert done_r1  # replicate 1 had started
    result = runner.invoke(
        app,
        [
            "run",
            "--study",
            "sl-knee-sr",
            "--profile",
            "smoke",
            "--set",
            "replicates=2",
            "--out",
            str(out),
            "--resume",
            "--no-report",
        ],
    )
    assert result.exit_code == 0, result.output
    again = {p.name: p.stat().st_mtime_ns for p in (out / "replicates" / "r1" / "jobs").glob("*.json")}
    assert all(again[n] == t for n, t in done_r1.items())
    info = json.loads((out / "run.json").read_text())
    complete = Counter(j.name for j in JobLedger(info["storage"], info["run_id"]).jobs() if j.state == "COMPLETE")
    assert set(complete) == {j.name for j in study_jobs(study, has_labels=True)} and set(complete.values()) == {1}
