"""The job ledger on a real Optuna journal file: exactly-once claims, phases, retries, stale-worker reclaim."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import pytest

from hyperrecon.errors import ConfigError, RunError
from hyperrecon.storage import JobLedger, find_runs


def _drain(url: str, run_id: str, out_dir: str, delay: float) -> None:
    ledger = JobLedger(url, run_id)
    while True:
        job = ledger.claim()
        if job is None:
            if ledger.current_phase() is None:
                return
            time.sleep(0.05)
            continue
        with ledger.heartbeat(job):
            # Each execution leaves one file behind; a job run twice would leave two.
            Path(out_dir, f"{job.name}.{os.getpid()}.{time.time_ns()}").write_text(json.dumps(job.spec))
            time.sleep(delay)
        ledger.complete(job, {"device_seconds": delay})


def test_two_processes_run_every_job_exactly_once(tmp_path: Path) -> None:
    url = str(tmp_path / "ledger.journal")
    ledger = JobLedger(url, "r1", create=True)
    jobs = [(f"a{i}", 0, {"i": i}) for i in range(6)] + [(f"b{i}", 1, {"i": i}) for i in range(6)]
    assert len(ledger.enqueue_missing(jobs)) == 12
    out = tmp_path / "out"
    out.mkdir()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_drain, args=(url, "r1", str(out), 0.05)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    names = sorted(f.name.split(".")[0] for f in out.iterdir())
    assert names == sorted(n for n, _, _ in jobs)  # every job once, none twice
    assert set(ledger.status().values()) == {"COMPLETE"}
    # Phase order: every phase-1 job finished after every phase-0 job.
    done = {j.name: j.user_attrs["finished"] for j in ledger.jobs()}
    assert max(done[f"a{i}"] for i in range(6)) <= min(done[f"b{i}"] for i in range(6))
    # Enqueueing again adds nothing: finished work is never redone.
    assert ledger.enqueue_missing(jobs) == []
    assert find_runs(url) == ["r1"]


def test_failed_job_is_retried_then_given_up(tmp_path: Path) -> None:
    ledger = JobLedger(str(tmp_path / "l.journal"), "r", create=True, max_attempts=2)
    ledger.enqueue_missing([("x", 0, {})])
    job = ledger.claim()
    assert job is not None and job.attempt == 1
    assert ledger.fail(job, "boom") is True
    job2 = ledger.claim()
    assert job2 is not None and job2.name == "x" and job2.attempt == 2
    assert ledger.fail(job2, "boom again") is False
    assert ledger.failed_for_good() == {"x": "boom again"}
    assert ledger.claim() is None


def _claim_and_hang(url: str, run_id: str) -> None:
    ledger = JobLedger(url, run_id)
    job = ledger.claim()
    assert job is not None
    time.sleep(60)


def test_killed_worker_job_is_reclaimed(tmp_path: Path) -> None:
    url = str(tmp_path / "l.journal")
    ledger = JobLedger(url, "r", create=True, grace_s=3600)
    ledger.enqueue_missing([("only", 0, {"k": 1})])
    p = mp.get_context("spawn").Process(target=_claim_and_hang, args=(url, "r"))
    p.start()
    deadline = time.time() + 30
    # Claimed, and its worker recorded (the claim writes RUNNING first, then the worker: a kill between the two
    # leaves a job that only the grace period reclaims, which is not what this test is about).
    while "heartbeat" not in next(iter(ledger.jobs())).user_attrs and time.time() < deadline:
        time.sleep(0.05)
    assert ledger.status()["only"] == "RUNNING"
    assert ledger.claim() is None  # nothing else to take while it runs
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    # Same host, dead pid: stale at once, despite the hour-long grace period.
    assert ledger.reclaim_stale() == ["only"]
    job = ledger.claim()
    assert job is not None and job.name == "only" and job.attempt == 2 and job.spec == {"k": 1}
    ledger.complete(job)
    assert ledger.status() == {"only": "COMPLETE"}


def test_stale_by_heartbeat_age(tmp_path: Path) -> None:
    ledger = JobLedger(str(tmp_path / "l.journal"), "r", create=True, grace_s=0.2, heartbeat_s=0.05)
    ledger.enqueue_missing([("j", 0, {})])
    job = ledger.claim()
    with ledger.heartbeat(job):
        time.sleep(0.4)
        assert ledger.reclaim_stale() == []  # beating: alive
    # No beat and pretend the worker lives elsewhere: stale after the grace period.
    job = ledger.jobs()[0]
    job.user_attrs["worker"] = "elsewhere:1:x"
    assert ledger.is_stale(job, now=time.time() + 1.0)


def test_unknown_run_and_bad_urls(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no job ledger for run 'nope'"):
        JobLedger(str(tmp_path / "l.journal"), "nope")
    with pytest.raises(ConfigError, match="expected a file path"):
        JobLedger("ftp://example/x", "r", create=True)
