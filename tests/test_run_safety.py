"""Run safety: one run per folder, results independent of ``--workers``, storage URLs that never show a password.

- Two ``hrbench run`` processes started at once on one ``--out``: exactly one makes the run, the other stops with
  one ``error:`` line and exit 1 having written nothing; without ``--out`` both get their own folder.
- The thread count is fixed when a run is made (``run.json`` ``threads``) and every job uses it, whatever
  ``--workers`` and the environment of a resume: a run resumed with 2 workers in an environment that says
  ``OMP_NUM_THREADS=2`` gives the bytes of a plain 1-thread run, and every job records what it ran with.
- ``--storage``: every error path (typos, unknown schemes and drivers, missing drivers, a refused connection)
  gives one line with exit 2 (1 for the connection) and never the password; ``postgres://``, ``sqlite:///`` and
  ``postgresql+psycopg2://`` are accepted, and ``run.json`` keeps the URL without its password.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_postgres import postgres_url  # noqa: F401  (the session's PostgreSQL server fixture)
from typer.testing import CliRunner

from hyperrecon.cli import app
from hyperrecon.config import load_study
from hyperrecon.errors import ConfigError, RunError
from hyperrecon.io import atomic_create_bytes
from hyperrecon.storage import find_runs, open_storage
from hyperrecon.storage_urls import normalize, public_url, redact
from hyperrecon.study import claim_run_dir, make_default_run_dir

ROOT = Path(__file__).resolve().parent.parent
STUDY = ["--study", "sl-knee-denoise", "--profile", "smoke"]
SECRET = "s3cr3t-PW"
runner = CliRunner()


def hrbench(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "hyperrecon.cli", *map(str, args)]


def env(**extra: str) -> dict[str, str]:
    e = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **extra}
    e.pop("HRBENCH_HOST_ID", None)
    return e


def one_error_line(output: str) -> str:
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if "error:" in line]
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    return lines[0]


# ------------------------------------------------------------------------------------------------------------
# one run per folder


def test_exclusive_create_has_one_winner_among_racing_threads(tmp_path: Path) -> None:
    target = tmp_path / "run.json"
    results: list[str] = []
    start = threading.Barrier(8)

    def racer(i: int) -> None:
        start.wait()
        try:
            atomic_create_bytes(target, f"racer {i}\n".encode())
            results.append(f"won {i}")
        except FileExistsError:
            results.append("lost")

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r.startswith("won")]
    assert len(winners) == 1 and results.count("lost") == 7
    assert target.read_text() == f"racer {winners[0].split()[1]}\n"  # whole, from the winner
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # no temp file left behind
    with pytest.raises(RunError, match="another run claimed this folder first"):
        claim_run_dir(tmp_path, {"run_id": "late"})
    assert target.read_text() == f"racer {winners[0].split()[1]}\n"


def test_default_run_folders_in_one_second_do_not_collide(tmp_path: Path, monkeypatch) -> None:
    import hyperrecon.study as st

    study = load_study("sl-knee-denoise", "smoke")
    fixed = tmp_path / "runs" / study.name / "20260101-000000-smoke"
    monkeypatch.setattr(st, "default_run_dir", lambda s, root=Path("runs"): fixed)  # one second for all
    made = [make_default_run_dir(study) for _ in range(3)]
    assert [p.name for p in made] == ["20260101-000000-smoke", "20260101-000000-smoke-2", "20260101-000000-smoke-3"]
    assert all(p.is_dir() for p in made)


@pytest.mark.slow
def test_two_concurrent_runs_on_one_folder(tmp_path: Path) -> None:
    out = tmp_path / "same"
    cmd = hrbench("run", *STUDY, "--out", out, "--enqueue-only", "--json")
    procs = [
        subprocess.Popen(cmd, cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    (code0, won_out, _), (code1, _, lost_err) = sorted((p.returncode, *o) for p, o in zip(procs, outs, strict=True))
    assert (code0, code1) == (0, 1), outs
    error = json.loads(lost_err)  # under --json an error is one JSON object on stderr
    assert error["exit_code"] == 1
    line = error["error"]
    assert str(out) in line and ("claimed this folder first" in line or "not empty" in line), line
    winner = json.loads(won_out)
    assert json.loads((out / "run.json").read_text())["run_id"] == winner["run_id"]
    assert find_runs(str(out / "ledger.journal")) == [winner["run_id"]]  # one run in the ledger


@pytest.mark.slow
def test_two_concurrent_runs_without_out_get_two_folders(tmp_path: Path) -> None:
    cmd = hrbench("run", *STUDY, "--enqueue-only", "--json")
    procs = [
        subprocess.Popen(cmd, cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    infos = [json.loads(o) for o, _ in outs]
    dirs = {Path(i["run_dir"]) for i in infos}
    assert len(dirs) == 2 and len({i["run_id"] for i in infos}) == 2
    for info in infos:
        d = tmp_path / info["run_dir"] if not Path(info["run_dir"]).is_absolute() else Path(info["run_dir"])
        assert json.loads((d / "run.json").read_text())["run_id"] == info["run_id"]
        assert find_runs(str(d / "ledger.journal")) == [info["run_id"]]


# ------------------------------------------------------------------------------------------------------------
# results independent of --workers


def comparable(run: Path) -> dict[str, object]:
    search = pd.read_csv(run / "search.csv")
    # timing columns, and the names of the searches' Optuna studies (they hold the run id)
    search = search.drop(columns=[c for c in search.columns if "cost" in c or "seconds" in c or c == "study"])
    weights = {p.name: torch.load(p, weights_only=True) for p in sorted((run / "models").glob("*.pt"))}
    return {"results": (run / "results.csv").read_bytes(), "search": search.to_csv(index=False), "weights": weights}


@pytest.mark.slow
def test_results_do_not_depend_on_workers_or_the_resume_environment(tmp_path: Path) -> None:
    plain, parallel = tmp_path / "plain", tmp_path / "parallel"
    done = subprocess.run(
        hrbench("run", *STUDY, "--out", plain, "--no-report"), env=env(), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    made = subprocess.run(
        hrbench("run", *STUDY, "--out", parallel, "--enqueue-only"),
        env=env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert made.returncode == 0, made.stderr
    # Finished by 2 workers in an environment that would give each 2 threads (another machine, another shell).
    resumed = subprocess.run(
        hrbench("run", *STUDY, "--out", parallel, "--resume", "--workers", "2", "--no-report"),
        env=env(OMP_NUM_THREADS="2"),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert resumed.returncode == 0, resumed.stderr
    for run in (plain, parallel):
        assert json.loads((run / "run.json").read_text())["threads"] == 1
        records = [json.loads(p.read_text()) for p in sorted((run / "jobs").glob("*.json"))]
        assert records and {r["ran_with"]["threads"] for r in records} == {1}
        assert {r["ran_with"]["device"] for r in records} == {"cpu"}
    done_lines = sum(p.read_text().count("job-done") for p in parallel.glob("worker-*.log"))
    assert done_lines == len(list((parallel / "jobs").glob("*.json")))  # the worker processes ran every job
    from hyperrecon.context import ran_with_summary

    assert ran_with_summary(parallel).startswith(f"all {len(list((parallel / 'jobs').glob('*.json')))} jobs: 1 threads")
    a, b = comparable(plain), comparable(parallel)
    assert a["results"] == b["results"] and a["search"] == b["search"]
    assert a["weights"].keys() == b["weights"].keys()
    for name, wa in a["weights"].items():
        assert all(torch.equal(wa[k], b["weights"][name][k]) for k in wa), name


def test_a_resumed_run_uses_the_thread_count_in_run_json(tmp_path: Path) -> None:
    from hyperrecon.study import context_for, enqueue, prepare_run

    out = tmp_path / "run"
    run = prepare_run(load_study("sl-knee-denoise", "smoke"), out=out, resume=False, storage=None, device="cpu")
    enqueue(run, context_for(run))
    info = json.loads((out / "run.json").read_text())
    assert info["threads"] == torch.get_num_threads() == run.threads
    info["threads"] = 2
    (out / "run.json").write_text(json.dumps(info))
    resumed = prepare_run(load_study("sl-knee-denoise", "smoke"), out=out, resume=True, storage=None, device="cpu")
    try:
        context_for(resumed)
        assert resumed.threads == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    info["threads"] = 0
    (out / "run.json").write_text(json.dumps(info))
    with pytest.raises(RunError, match="threads: expected a whole number >= 1, but got 0"):
        prepare_run(load_study("sl-knee-denoise", "smoke"), out=out, resume=True, storage=None, device="cpu")


# ------------------------------------------------------------------------------------------------------------
# storage URLs


BAD_URLS = [  # (url, exit code, what the one line must say)
    (f"postgressql://me:{SECRET}@db.example/hr", 2, "did you mean postgresql://"),
    (f"psql://me:{SECRET}@db.example/hr", 2, "did you mean postgresql://"),
    (f"mysq://me:{SECRET}@db.example/hr", 2, "did you mean mysql://"),
    (f"postgresql:/me:{SECRET}@db.example/hr", 2, "did you mean postgresql://me:***@db.example/hr"),
    (f"postgresql//me:{SECRET}@db.example/hr", 2, "did you mean postgresql://me:***@db.example/hr"),
    (f"postgresql+asyncpg://me:{SECRET}@db.example/hr", 2, "unknown driver 'asyncpg'"),
    (f"postgresql+psycopg://me:{SECRET}@db.example/hr", 2, "needs the psycopg driver"),
    (f"postgresql+pg8000://me:{SECRET}@db.example/hr", 2, "pip install pg8000"),
    (f"mysql://me:{SECRET}@db.example/hr", 2, "pip install mysqlclient"),
    (f"mysql+pymysql://me:{SECRET}@db.example/hr", 2, "pip install pymysql"),
    (f"mariadb://me:{SECRET}@db.example/hr", 2, "pip install mysqlclient"),
    (f"http://me:{SECRET}@db.example/hr", 2, "unknown scheme 'http'"),
    ("journal://runs/ledger.journal", 2, "did you mean journal:runs/ledger.journal"),
    ("sqlite://", 2, "sqlite:///PATH"),
    ("file://relative/ledger.journal", 2, "file:///PATH"),
    # the driver is there, the server is not: exit 1, the driver's message without the password
    (f"postgresql://me:{SECRET}@127.0.0.1:1/hr", 1, "cannot connect"),
]


@pytest.mark.parametrize(
    ("url", "code", "needle"), BAD_URLS, ids=[u[0].split(":")[0] + str(i) for i, u in enumerate(BAD_URLS)]
)
def test_every_storage_error_is_one_line_without_the_password(url: str, code: int, needle: str, tmp_path: Path) -> None:
    if code == 1:
        pytest.importorskip("psycopg2")
    out = tmp_path / "run"
    for args in (
        ["run", *STUDY, "--out", str(out), "--storage", url],
        ["worker", "--study", "sl-knee-denoise", "--storage", url],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == code, result.output
        line = one_error_line(result.output)
        assert needle in line and "--storage" in line, line
        assert SECRET not in result.output
    assert not out.exists()  # a bad URL fails before the run folder is made


def test_url_helpers() -> None:
    url = f"postgresql://me:{SECRET}@db.example:5432/hr"
    assert redact(url) == "postgresql://me:***@db.example:5432/hr"
    assert public_url(url) == "postgresql://me@db.example:5432/hr"
    assert redact("postgresql://me:p/a@ss@h/db") == "postgresql://me:***@h/db"  # unencoded '/' and '@'
    assert redact("postgresql://me@h/db") == "postgresql://me@h/db" == public_url("postgresql://me@h/db")
    assert normalize("postgres://me@h/db") == ("rdb", "postgresql+psycopg2://me@h/db")
    assert normalize("postgres+psycopg2://me@h/db") == ("rdb", "postgresql+psycopg2://me@h/db")
    assert normalize("postgresql:///db") == ("rdb", "postgresql+psycopg2:///db")  # the server's local socket
    assert normalize("sqlite:////abs/x.db") == ("rdb", "sqlite:////abs/x.db")
    assert normalize("file:///abs/ledger.journal") == ("journal", "/abs/ledger.journal")
    assert normalize("journal:runs/l.journal") == ("journal", "runs/l.journal")
    assert normalize("runs/a@b:c/l.journal") == ("journal", "runs/a@b:c/l.journal")
    with pytest.raises(ConfigError, match="did you mean postgresql://"):
        open_storage("postgresq://h/db")


def test_sqlite_and_file_urls_make_working_runs(tmp_path: Path) -> None:
    for i, url in enumerate([f"sqlite:///{tmp_path}/jobs.db", f"file://{tmp_path}/jobs.journal"]):
        out = tmp_path / f"run{i}"
        result = runner.invoke(app, ["run", *STUDY, "--out", str(out), "--storage", url, "--enqueue-only", "--json"])
        assert result.exit_code == 0, result.output
        run_id = json.loads(result.output)["run_id"]
        assert find_runs(url) == [run_id]
        assert json.loads((out / "run.json").read_text())["storage"] == url


@pytest.mark.postgres
def test_a_password_is_never_written_or_shown(postgres_url: str, tmp_path: Path) -> None:  # noqa: F811
    # trust authentication: the server ignores the password, so the run works and every output can be searched
    host = postgres_url.split("@", 1)[1]
    url = f"postgres://postgres:{SECRET}@{host}"  # the libpq alias, accepted
    out = tmp_path / "run"
    made = runner.invoke(app, ["run", *STUDY, "--out", str(out), "--storage", url, "--enqueue-only"])
    assert made.exit_code == 0, made.output
    assert SECRET not in made.output
    info = json.loads((out / "run.json").read_text())
    assert info["storage"] == f"postgres://postgres@{host}"
    for path in out.rglob("*"):
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path
    # A resume finds the server from run.json alone, or takes the full URL again.
    for extra in ([], ["--storage", url]):
        again = runner.invoke(app, ["run", *STUDY, "--out", str(out), "--resume", "--enqueue-only", *extra])
        assert again.exit_code == 0, again.output
        assert SECRET not in again.output
    other = runner.invoke(
        app, ["run", *STUDY, "--out", str(out), "--resume", "--storage", f"postgresql://postgres:{SECRET}@{host}x"]
    )
    assert other.exit_code == 2 and SECRET not in other.output and "postgres:***@" in one_error_line(other.output)


def test_the_report_says_when_jobs_ran_with_different_settings(tmp_path: Path) -> None:
    from hyperrecon.context import ran_with_summary

    jobs = tmp_path / "jobs"
    jobs.mkdir()
    setting = {"threads": 1, "device": "cpu", "device_name": "AMD EPYC", "precision": "bf16", "torch": "2.13.0"}
    for name in ("a", "b", "c"):
        (jobs / f"{name}.json").write_text(json.dumps({"job": name, "ran_with": setting}))
    assert ran_with_summary(tmp_path) == "all 3 jobs: 1 threads, AMD EPYC (cpu), bf16, torch 2.13.0"
    (jobs / "c.json").write_text(json.dumps({"job": "c", "ran_with": {**setting, "device_name": "Intel Xeon"}}))
    assert ran_with_summary(tmp_path) == (
        "MIXED settings (2 jobs: 1 threads, AMD EPYC (cpu), bf16, torch 2.13.0; "
        "1 jobs: 1 threads, Intel Xeon (cpu), bf16, torch 2.13.0): numbers may "
        "differ from a run on one setting"
    )
    assert ran_with_summary(tmp_path / "nothing") is None
