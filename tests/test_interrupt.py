"""Interrupted runs: SIGKILL ``hrbench run`` in the middle of a training job, ``--resume`` finishes it.

One AO smoke run is killed twice (while its 2 x 2 baseline grid trains, then, resumed, while the DHS hypernetwork
trains) and resumed to the end. Checked against an uninterrupted run with the same seeds: no finished job is repeated
(its ``jobs/<name>.json`` keeps its mtime, the ledger holds one COMPLETE per job), each killed job continues from its
last checkpoint (its record says from which step) and the weights and results are bitwise equal: a checkpoint holds
the model, optimiser, scheduler, data order, sampler state and every RNG state, and every other job is a
deterministic function of the study seed and the job name (one thread per process). Every file a killed run left is
complete (written to a temp file and renamed), and the running ``hrbench`` never listens on a network port.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from hyperrecon.checkpoints import load_checkpoint
from hyperrecon.cli import app
from hyperrecon.config import Study, load_study
from hyperrecon.io import check_zip
from hyperrecon.jobs import study_jobs
from hyperrecon.storage import JobLedger

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def hrbench(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "hyperrecon.cli", *map(str, args)]


def env() -> dict[str, str]:
    e = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    e.pop("HRBENCH_HOST_ID", None)
    return e


def listening_inodes() -> set[str]:
    """Socket inodes in LISTEN state (TCP) or bound (UDP) on this machine, from /proc/net."""
    inodes = set()
    for name in ("tcp", "tcp6", "udp", "udp6"):
        path = Path("/proc/net") / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            cols = line.split()
            if name.startswith("udp") or cols[3] == "0A":
                inodes.add(cols[9])
    return inodes


def socket_inodes(pid: int) -> set[str]:
    out = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        for fd in fd_dir.iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                out.add(target[len("socket:[") : -1])
    except OSError:
        pass
    return out


def kill_mid_training(args: list[str], run_dir: Path, job: str, total: int, after: tuple[str, ...] = ()) -> int:
    """Start ``hrbench run``; SIGKILL it once ``job`` has a checkpoint before its last step (and the jobs in
    ``after`` are finished). Returns the checkpoint's step. Meanwhile, its sockets never listen."""
    proc = subprocess.Popen(hrbench(*args), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = run_dir / "checkpoints" / f"{job}.pt"
    deadline = time.time() + 240
    step = None
    try:
        while time.time() < deadline and proc.poll() is None:
            if Path("/proc/net/tcp").exists():
                assert not socket_inodes(proc.pid) & listening_inodes(), "hrbench listens on a network port"
            done = all((run_dir / "jobs" / f"{a}.json").exists() for a in after)
            if done and ckpt.exists():
                step = int(load_checkpoint(ckpt)["step"])
                if 0 < step < total:
                    proc.send_signal(signal.SIGKILL)
                    break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.kill()
        stderr = proc.communicate(timeout=30)[1].decode(errors="replace")
    assert proc.returncode == -signal.SIGKILL, f"the run ended before it could be killed:\n{stderr}"
    step = int(load_checkpoint(ckpt)["step"])  # what the killed process left
    assert 0 < step < total
    return step


def check_left_files(run_dir: Path) -> None:
    """Whatever the kill interrupted, each result file is complete: parseable JSON/CSV, checkpoints whose archive
    checksums match. Only hidden temp files (``.name.xxx.tmp``) may be partial."""
    for path in run_dir.rglob("*"):
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".csv":
            pd.read_csv(path)
        elif path.suffix == ".pt":
            check_zip(path)
            torch.load(path, weights_only=True)


def check_resumed(run_dir: Path, clean_dir: Path, study: Study, killed: dict[str, int], before: dict[str, int]) -> None:
    """``killed``: job -> the checkpoint step its killed attempt left; ``before``: jobs/*.json mtimes at the kills."""
    # No finished job was redone.
    after = {p.name: p.stat().st_mtime_ns for p in (run_dir / "jobs").glob("*.json")}
    assert {k: after[k] for k in before} == before
    # One COMPLETE per job; each killed job went back to the queue once.
    info = json.loads((run_dir / "run.json").read_text())
    ledger = JobLedger(str(run_dir / info["ledger"]), info["run_id"])
    complete = Counter(j.name for j in ledger.jobs() if j.state == "COMPLETE")
    assert set(complete) == {j.name for j in study_jobs(study, has_labels=True)}
    assert set(complete.values()) == {1}
    for name, step in killed.items():
        assert sorted((j.attempt, j.state) for j in ledger.jobs() if j.name == name) == [(1, "FAIL"), (2, "COMPLETE")]
        # It continued from the checkpoint the killed process wrote.
        assert json.loads((run_dir / "jobs" / f"{name}.json").read_text())["resumed_from_step"] == step
        assert json.loads((clean_dir / "jobs" / f"{name}.json").read_text())["resumed_from_step"] == 0
        w1 = torch.load(run_dir / "models" / f"{name}.pt", weights_only=True)
        w2 = torch.load(clean_dir / "models" / f"{name}.pt", weights_only=True)
        assert w1.keys() == w2.keys() and all(torch.equal(w1[k], w2[k]) for k in w1), name
        # The loss history too, exactly, the record whose averaging window straddles the resume step included:
        # the checkpoint holds the running sums of the open log window.
        h1 = json.loads((run_dir / "jobs" / f"{name}.json").read_text())["history"]
        h2 = json.loads((clean_dir / "jobs" / f"{name}.json").read_text())["history"]
        assert [r["step"] for r in h1] == [r["step"] for r in h2]
        assert h1 == h2, name
    # Same results as the uninterrupted run, bitwise: deterministic jobs, exact resume, one thread.
    a, b = pd.read_csv(run_dir / "results.csv"), pd.read_csv(clean_dir / "results.csv")
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    s1, s2 = pd.read_csv(run_dir / "search.csv"), pd.read_csv(clean_dir / "search.csv")
    same = [c for c in s1.columns if c.startswith(("lam", "best_lam", "objective", "best_so_far"))]
    pd.testing.assert_frame_equal(s1[same], s2[same], check_exact=True)


def test_kill_during_the_baseline_grid_and_during_hypernetwork_training_then_resume(tmp_path: Path) -> None:
    # AO smoke: a 2 x 2 baseline grid trained one after the other, then two hypernetworks (UHS, DHS) and FiLM.
    # 40 steps log every 2 steps; checkpoints every 5 fall inside a log window (the resume must restore its sums).
    overrides = ["baselines.steps=40", "hyper.steps=40", "train.checkpoint_every=5"]
    args = [
        "run",
        "--study",
        "ao-knee",
        "--profile",
        "smoke",
        "--no-report",
        "--device",
        "cpu",
        *(x for o in overrides for x in ("--set", o)),
    ]
    study = load_study("ao-knee", "smoke", overrides)
    clean, run_dir = tmp_path / "clean", tmp_path / "run"
    result = runner.invoke(app, [*args, "--out", str(clean)])  # the uninterrupted reference, in this process
    assert result.exit_code == 0, result.output

    # 1. Killed while the second baseline trains.
    killed = {
        "baseline-0.5-1": kill_mid_training(
            [*args, "--out", run_dir], run_dir, "baseline-0.5-1", 40, after=("baseline-0.5-0.5",)
        )
    }
    check_left_files(run_dir)
    before = {p.name: p.stat().st_mtime_ns for p in (run_dir / "jobs").glob("*.json")}
    assert {"seg.json", "scales.json", "baseline-0.5-0.5.json"} <= set(before)
    assert "baseline-0.5-1.json" not in before

    # 2. Resumed, and killed again while the DHS hypernetwork trains (its sampler keeps a loss history).
    killed["hyper-S-dhs"] = kill_mid_training(
        [*args, "--out", run_dir, "--resume"], run_dir, "hyper-S-dhs", 40, after=("hyper-S-uniform",)
    )
    check_left_files(run_dir)
    before.update({p.name: p.stat().st_mtime_ns for p in (run_dir / "jobs").glob("*.json") if p.name not in before})
    # (a retried job goes to the back of its phase: baseline-0.5-1 runs again after the hypernetworks)
    assert "hyper-S-uniform.json" in before and "hyper-S-dhs.json" not in before

    # 3. Resumed to the end.
    result = runner.invoke(app, [*args, "--out", str(run_dir), "--resume"])
    assert result.exit_code == 0, result.output
    check_resumed(run_dir, clean, study, killed, before)


def test_sigterm_requeues_the_running_job_without_counting_an_attempt(tmp_path: Path) -> None:
    """A scheduler's SIGTERM stops a worker like Ctrl-C: one error line, exit 130, its job back in the queue at
    once (no waiting for a stale heartbeat) with the same attempt number."""
    from hyperrecon.study import context_for, run_for_worker, work

    sets = [x for o in ("hyper.steps=40", "train.checkpoint_every=10") for x in ("--set", o)]
    run_dir = tmp_path / "run"
    result = runner.invoke(
        app, ["run", "--study", "sl-knee-denoise", "--profile", "smoke", *sets, "--out", str(run_dir), "--enqueue-only"]
    )
    assert result.exit_code == 0, result.output
    run = run_for_worker(run_dir=run_dir, storage=None, study_name=None, device="cpu")
    assert work(run, context_for(run), max_jobs=5) == 5  # up to baseline-0.5; next: the hypernetwork

    proc = subprocess.Popen(
        hrbench("worker", "--run-dir", run_dir, "--device", "cpu"),
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    ckpt = run_dir / "checkpoints" / "hyper-S-uniform.pt"
    deadline = time.time() + 240
    while proc.poll() is None and time.time() < deadline:
        if ckpt.exists() and 0 < load_checkpoint(ckpt)["step"] < 40:
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.02)
    stderr = proc.communicate(timeout=60)[1].decode(errors="replace")
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert [line for line in stderr.splitlines() if "error:" in line] == [
        "error: interrupted; run again with --resume to continue"
    ]
    ledger = JobLedger(run.storage, run.run_id)
    attempts = sorted(
        (j.attempt, j.state, j.user_attrs.get("error", "")) for j in ledger.jobs() if j.name == "hyper-S-uniform"
    )
    assert attempts == [(1, "FAIL", "KeyboardInterrupt: "), (1, "WAITING", "")]
