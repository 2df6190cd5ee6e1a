"""Many workers on one run: a real PostgreSQL server (and, for comparison, the default journal file on one machine).

A coordinator makes the run and queues its jobs (``hrbench run --enqueue-only``); several ``hrbench worker``
processes share the ledger; the one running the hypernetwork is SIGKILLed in the middle of its training. Another
worker must retry that job from its checkpoint, every other job must run exactly once (counted from the workers'
own ``job-start``/``job-done`` lines and from the ledger), and ``hrbench run --resume`` then merges complete results.

Two ways a dead worker's job comes back, one scenario each:

- PostgreSQL, workers that look like three machines (``HRBENCH_HOST_ID``): only the heartbeat can tell (beat every
  0.5 s, stale after 3 s: ``HRBENCH_HEARTBEAT_S``/``HRBENCH_GRACE_S``).
- journal file, two workers on this machine with an hour of grace: the same-host dead-process rule reclaims at once.

The server is started here (``initdb`` in a temporary folder, loopback only, a free port, a Unix socket in that
folder; as the ``postgres`` user when the tests run as root) and stopped at the end. Without the PostgreSQL binaries
the PostgreSQL test is skipped, saying so; the journal test always runs.
"""

from __future__ import annotations

import glob
import json
import multiprocessing as mp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest

from hyperrecon.config import load_study
from hyperrecon.jobs import recon_models, study_jobs
from hyperrecon.storage import JobLedger, host_id

# Keep torch and pandas out of the module level: the spawned claimers of the contention test import this file.

ROOT = Path(__file__).resolve().parent.parent
STUDY = "sl-knee-denoise"
OVERRIDES = ["hyper.steps=40", "train.checkpoint_every=10"]
LONG_JOB = "hyper-S-uniform"


# ------------------------------------------------------------------------------------------------------------
# a PostgreSQL server for the session


def _pg_binaries() -> tuple[str, str] | None:
    for bindir in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        initdb, pg_ctl = Path(bindir, "initdb"), Path(bindir, "pg_ctl")
        if initdb.exists() and pg_ctl.exists():
            return str(initdb), str(pg_ctl)
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    return (initdb, pg_ctl) if initdb and pg_ctl else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp*) that listen on ``port``."""
    out = set()
    for name in ("tcp", "tcp6"):
        path = Path("/proc/net") / name
        if path.exists():
            for line in path.read_text().splitlines()[1:]:
                cols = line.split()
                addr, hex_port = cols[1].split(":")
                if cols[3] == "0A" and int(hex_port, 16) == port:
                    out.add(addr)
    return out


@pytest.fixture(scope="session")
def postgres_url():
    binaries = _pg_binaries()
    if binaries is None:
        pytest.skip(
            "PostgreSQL binaries (initdb, pg_ctl) not found: install the 'postgresql' package "
            "(.ci/run does) to run the PostgreSQL concurrency test"
        )
    psycopg2 = pytest.importorskip("psycopg2", reason="psycopg2 (the [postgres] extra) is needed to reach the server")
    initdb, pg_ctl = binaries
    prefix: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="hrbench-pg-"))  # under /tmp: every user can reach it
    if os.geteuid() == 0:  # postgres refuses to run as root: use the account the Debian package makes
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(base)
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        os.chown(base, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = base / "data", _free_port()
    subprocess.run(
        [*prefix, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
        check=True,
        capture_output=True,
    )
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off -c max_connections=50"
    started = subprocess.run(
        [*prefix, pg_ctl, "-D", str(data), "-l", str(base / "server.log"), "-o", opts, "-w", "-t", "60", "start"],
        capture_output=True,
        text=True,
    )
    if started.returncode != 0:
        log = (base / "server.log").read_text() if (base / "server.log").exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"PostgreSQL did not start: {started.stderr}{log}")
    try:
        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE hrbench")
            cur.execute("SHOW listen_addresses")
            listen = cur.fetchone()[0]
        conn.close()
        assert listen == "127.0.0.1"
        assert _listening(port) in ({"0100007F"}, set()), _listening(port)  # loopback only, never 0.0.0.0
        yield f"postgresql://postgres@127.0.0.1:{port}/hrbench"
    finally:
        _stop(data, [*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(base, ignore_errors=True)


def _stop(data: Path, pg_ctl_stop: list[str]) -> None:
    """Immediate shutdown (SIGQUIT to the postmaster), waiting for it to go; pg_ctl when that is not possible."""
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGQUIT)
    except (OSError, ValueError, IndexError):
        subprocess.run(pg_ctl_stop, capture_output=True)
        return
    deadline = time.time() + 30
    while time.time() < deadline:
        try:  # gone, or a zombie that nobody reaps in a container without an init
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break
        except (OSError, IndexError):
            break
        time.sleep(0.05)


# ------------------------------------------------------------------------------------------------------------
# the scenario


def hrbench(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "hyperrecon.cli", *map(str, args)]


def worker_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), **extra)
    if "HRBENCH_HOST_ID" not in extra:
        env.pop("HRBENCH_HOST_ID", None)
    return env


def sets() -> list[str]:
    return [x for o in OVERRIDES for x in ("--set", o)]


def run_ok(args: list[str]) -> str:
    """The coordinator's commands, in this process (the workers are separate processes)."""
    from typer.testing import CliRunner

    from hyperrecon.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


def scenario(run_dir: Path, ledger_url: str, workers: list[tuple[list[str], dict[str, str]]]) -> None:
    """Start the workers, SIGKILL the one that trains LONG_JOB mid-way, let the others finish, merge, check."""
    import pandas as pd

    from hyperrecon.checkpoints import load_checkpoint

    logs = [run_dir.parent / f"worker-{i}.err" for i in range(len(workers))]
    procs = []
    for (args, env), log in zip(workers, logs, strict=True):
        with open(log, "w") as fh:
            procs.append(
                subprocess.Popen(hrbench("worker", *args), env=worker_env(**env), stdout=subprocess.DEVNULL, stderr=fh)
            )
    info = json.loads((run_dir / "run.json").read_text())
    ledger = JobLedger(ledger_url, info["run_id"])
    victim = None
    try:
        deadline = time.time() + 240
        ckpt = run_dir / "checkpoints" / f"{LONG_JOB}.pt"
        while victim is None and time.time() < deadline:
            # The checkpoint file first (cheap), the ledger (who runs it) only then: a tight loop on fast machines.
            if ckpt.exists() and 0 < load_checkpoint(ckpt)["step"] < 40:
                running = [j for j in ledger.jobs() if j.name == LONG_JOB and j.state == "RUNNING"]
                if running:
                    pid = int(running[0].user_attrs["worker"].split(":")[1])
                    victim = next(p for p in procs if p.pid == pid)
                    victim.send_signal(signal.SIGKILL)
                    break
            assert all(p.poll() is None for p in procs), "a worker ended before the long job ran"
            time.sleep(0.02)
        assert victim is not None, "the long job never got under way"
        step = int(load_checkpoint(ckpt)["step"])
        for p in procs:
            p.wait(timeout=240)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert victim.returncode == -signal.SIGKILL
    for p, log in zip(procs, logs, strict=True):
        if p is not victim:
            assert p.returncode == 0, log.read_text()

    # Exactly once: every job started and finished once, except the killed one, which started twice.
    starts, dones = Counter(), Counter()
    for log in logs:
        for line in log.read_text().splitlines():
            event, _, name = line.strip().partition(" ")
            if event in ("job-start", "job-done"):
                (starts if event == "job-start" else dones)[name] += 1
    study = load_study(STUDY, "smoke", OVERRIDES)
    names = {j.name for j in study_jobs(study, has_labels=True)}
    assert set(dones) == names and set(dones.values()) == {1}
    assert starts == Counter({n: 2 if n == LONG_JOB else 1 for n in names})
    complete = Counter(j.name for j in ledger.jobs() if j.state == "COMPLETE")
    assert set(complete) == names and set(complete.values()) == {1}
    attempts = sorted((j.attempt, j.state) for j in ledger.jobs() if j.name == LONG_JOB)
    assert attempts == [(1, "FAIL"), (2, "COMPLETE")]
    retry = next(j for j in ledger.jobs() if j.name == LONG_JOB and j.state == "COMPLETE")
    assert int(retry.user_attrs["worker"].split(":")[1]) != victim.pid
    assert json.loads((run_dir / "jobs" / f"{LONG_JOB}.json").read_text())["resumed_from_step"] == step

    # The coordinator merges: nothing left to run, complete result tables.
    run_ok(["run", "--study", STUDY, "--profile", "smoke", *sets(), "--out", run_dir, "--resume", "--no-report"])
    results = pd.read_csv(run_dir / "results.csv")
    assert set(results.model) == {m for m, _, _ in recon_models(study)} and results.value.notna().all()
    assert (run_dir / "search_summary.csv").exists() and (run_dir / "costs.csv").exists()
    assert Counter(j.name for j in ledger.jobs() if j.state == "COMPLETE") == complete  # merging ran no job


@pytest.mark.postgres
@pytest.mark.slow
def test_workers_on_postgres_with_a_killed_remote_worker(postgres_url: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    out = run_ok(
        [
            "run",
            "--study",
            STUDY,
            "--profile",
            "smoke",
            *sets(),
            "--out",
            run_dir,
            "--storage",
            postgres_url,
            "--enqueue-only",
            "--json",
        ]
    )
    assert json.loads(out)["storage"] == postgres_url and len(json.loads(out)["enqueued"]) == 15
    beat = {"HRBENCH_HEARTBEAT_S": "0.5", "HRBENCH_GRACE_S": "3"}
    workers = [
        (["--study", STUDY, "--storage", postgres_url, "--device", "cpu"], {**beat, "HRBENCH_HOST_ID": f"machine-{i}"})
        for i in range(3)
    ]
    scenario(run_dir, postgres_url, workers)


@pytest.mark.slow
def test_workers_on_the_journal_with_a_killed_local_worker(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_ok(["run", "--study", STUDY, "--profile", "smoke", *sets(), "--out", run_dir, "--enqueue-only"])
    # An hour of grace: only the same-host dead-process rule can give the killed worker's job back.
    workers = [(["--run-dir", run_dir, "--device", "cpu"], {"HRBENCH_GRACE_S": "3600"}) for _ in range(2)]
    scenario(run_dir, str(run_dir / "ledger.journal"), workers)


# ------------------------------------------------------------------------------------------------------------
# the ledger rules the scenarios rely on, on both storages


@pytest.fixture(params=["journal", pytest.param("postgresql", marks=pytest.mark.postgres)])
def ledger_url(request, tmp_path: Path) -> str:
    if request.param == "journal":
        return str(tmp_path / "ledger.journal")
    return request.getfixturevalue("postgres_url")


def _claim_all(url: str, run_id: str, out: str) -> None:
    ledger = JobLedger(url, run_id)
    names = []
    while (job := ledger.claim()) is not None:
        names.append(job.name)
        ledger.complete(job, {})
    Path(out).write_text("\n".join(names))


def test_claims_are_exactly_once_under_contention(ledger_url: str, tmp_path: Path) -> None:
    run_id = f"contention-{tmp_path.name}"
    ledger = JobLedger(ledger_url, run_id, create=True)
    ledger.enqueue_missing([(f"j{i:02d}", 0, {}) for i in range(16)])
    ctx = mp.get_context("spawn")
    outs = [tmp_path / f"claimed-{i}.txt" for i in range(3)]
    procs = [ctx.Process(target=_claim_all, args=(ledger_url, run_id, str(o))) for o in outs]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    claimed = [n for o in outs for n in o.read_text().split()]
    assert sorted(claimed) == [f"j{i:02d}" for i in range(16)]  # each job claimed by exactly one process
    assert set(ledger.status().values()) == {"COMPLETE"}


def test_a_worker_reclaimed_while_alive_hands_its_result_to_the_retry(ledger_url: str, tmp_path: Path) -> None:
    run_id = f"alive-{tmp_path.name}"
    slow = JobLedger(ledger_url, run_id, create=True)
    slow.enqueue_missing([("a", 0, {"k": 1}), ("b", 0, {"k": 2})])
    job_a, job_b = slow.claim(), slow.claim()
    other = JobLedger(ledger_url, run_id, grace_s=0.0)  # judges every beat too old
    time.sleep(0.01)
    assert sorted(other.reclaim_stale()) == ["a", "b"]
    # a: its retry still waits, so the slow worker's result completes it; nobody runs "a" again.
    assert slow.complete(job_a, {"device_seconds": 1.0}) is True
    # b: another worker took the retry first; the slow worker's result is dropped, the retry's counts.
    retry_b = other.claim()
    assert retry_b is not None and retry_b.name == "b" and retry_b.attempt == 2
    assert slow.complete(job_b, {"device_seconds": 2.0}) is False
    assert other.complete(retry_b, {"device_seconds": 3.0}) is True
    complete = [j for j in other.jobs() if j.state == "COMPLETE"]
    assert sorted(j.name for j in complete) == ["a", "b"]
    assert json.loads(next(j for j in complete if j.name == "b").user_attrs["result"])["device_seconds"] == 3.0


def test_failures_that_would_recur_stop_every_worker_and_interrupts_cost_no_attempt(
    ledger_url: str, tmp_path: Path
) -> None:
    run_id = f"fail-{tmp_path.name}"
    ledger = JobLedger(ledger_url, run_id, create=True, max_attempts=3)
    ledger.enqueue_missing([("corrupt", 0, {}), ("interrupted", 0, {})])
    job = ledger.claim()
    assert ledger.fail(job, "checkpoint corrupt", retry=False) is False
    assert ledger.failed_for_good() == {"corrupt": "checkpoint corrupt"}  # at attempt 1: nobody waits for it
    job = ledger.claim()
    assert job.name == "interrupted"
    assert ledger.fail(job, "KeyboardInterrupt", count=False) is True
    again = ledger.claim()
    assert again.name == "interrupted" and again.attempt == 1
    # --resume queues the failed job afresh (the user removed the corrupt file).
    assert ledger.enqueue_missing([("corrupt", 0, {})]) == ["corrupt"]
    assert ledger.failed_for_good() == {}


def test_same_hostname_on_another_machine_is_not_judged_by_pid(tmp_path: Path, monkeypatch) -> None:
    ledger = JobLedger(str(tmp_path / "l.journal"), "r", create=True, grace_s=3600)
    ledger.enqueue_missing([("j", 0, {})])
    ledger.claim()
    job = ledger.jobs()[0]
    dead_pid = 2**22 + 12345  # above the default pid_max of small machines
    hostname = socket.gethostname()
    # Same hostname and digest (this machine) with a dead pid: stale at once.
    job.user_attrs["worker"] = f"{host_id()}:{dead_pid}:x"
    assert ledger.is_stale(job)
    # Same hostname, another boot or process table (a container elsewhere): only the heartbeat can tell.
    job.user_attrs["worker"] = f"{hostname}~00000000:{dead_pid}:x"
    assert not ledger.is_stale(job)
    monkeypatch.setenv("HRBENCH_HOST_ID", "rack1:node7")
    assert host_id() == "rack1_node7"  # ':' separates the fields of a worker id
