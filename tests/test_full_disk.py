"""A full disk: every writer stops with one line naming its file and "no space left", nothing is damaged, and a
resume after space is freed gives the uninterrupted result. A read-only run folder is never written by
``hrbench report RUN -o ELSEWHERE``.

The disk is a real, small tmpfs mounted for the test (``mount -t tmpfs -o size=...``), filled with a preallocated
file that leaves a chosen number of bytes; the read-only folder is a read-only bind mount. Both need root (as CI
runs, since it installs PostgreSQL with apt-get); without it those tests are skipped, saying so, and the ENOSPC case
injected in-process still runs.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from hyperrecon.cli import app
from hyperrecon.errors import RunError
from hyperrecon.io import NoSpaceError, atomic_create_bytes, write_csv, write_json, write_npz
from hyperrecon.storage import JobLedger

ROOT = Path(__file__).resolve().parent.parent
STUDY = ["--study", "sl-knee-denoise", "--profile", "smoke"]
runner = CliRunner()


def env() -> dict[str, str]:
    e = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    e.pop("HRBENCH_HOST_ID", None)
    return e


def hrbench(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "hyperrecon.cli", *map(str, args)]


def one_error_line(output: str) -> str:
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if "error:" in line]
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    return lines[0]


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _mount(args: list[str], target: Path) -> None:
    done = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True)
    if done.returncode != 0:
        why = done.stderr.strip() or "mount failed"
        pytest.skip(f"cannot mount a small tmpfs or a read-only bind mount here ({why}): needs root")


@pytest.fixture
def small_disk(tmp_path: Path):
    """A fresh tmpfs of the given size (bytes); unmounted at the end."""
    mounted: list[Path] = []

    def make(size: int, name: str = "disk") -> Path:
        target = tmp_path / name
        target.mkdir()
        _mount(["-t", "tmpfs", "-o", f"size={size}", "tmpfs"], target)
        mounted.append(target)
        return target

    yield make
    for target in mounted:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def fill(disk: Path, leave: int = 0) -> Path:
    """Preallocate a filler file so that about ``leave`` bytes stay free (0: none at all)."""
    filler = disk / ".filler"
    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        os.posix_fallocate(fd, 0, max(0, free - leave))
        if leave == 0:  # every last page
            try:
                while True:
                    os.write(fd, b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


# ------------------------------------------------------------------------------------------------------------
# each writer alone


def test_every_writer_on_a_full_disk_names_its_file_and_keeps_the_old_one(small_disk) -> None:
    from hyperrecon.checkpoints import read_torch_file, save_checkpoint
    from hyperrecon.reporting.figures import new_figure, save

    disk = small_disk(4 << 20)
    old = {
        "results.csv": b"model,value\na,1.0\n",
        "summary.json": b"{}\n",
        "images.npz": b"old",
        "checkpoint.pt": None,
        "figure.png": b"old png",
    }
    for name, data in old.items():
        if data is not None:
            (disk / name).write_bytes(data)
    save_checkpoint(disk / "checkpoint.pt", {"w": torch.zeros(4)})
    old["checkpoint.pt"] = (disk / "checkpoint.pt").read_bytes()
    url = str(disk / "ledger.journal")
    ledger = JobLedger(url, "r", create=True)
    ledger.enqueue("a", 0, {})
    before = snapshot(disk)
    fig = new_figure(3, 3)
    fig.add_subplot().plot(np.arange(10))
    fill(disk)
    writers = {
        "results.csv": lambda p: write_csv(p, pd.DataFrame({"model": ["b"] * 2000, "value": np.arange(2000.0)})),
        "summary.json": lambda p: write_json(p, {"x": list(range(5000))}),
        "images.npz": lambda p: write_npz(p, a=np.random.default_rng(0).random((64, 64))),
        "checkpoint.pt": lambda p: save_checkpoint(p, {"w": torch.randn(20000)}),
        "figure.png": lambda p: save(fig, p),
        "run.json": lambda p: atomic_create_bytes(p, b"{}" * 4096),
        "ledger.journal": lambda p: ledger.set_meta("big", "x" * 20000),  # needs new pages
    }
    for name, write in writers.items():
        with pytest.raises(NoSpaceError) as info:
            write(disk / name)
        message = str(info.value)
        assert message.startswith(f"{disk / name}: cannot write (no space left on device)"), message
        assert "\n" not in message
    after = snapshot(disk)
    after.pop(".filler")
    assert after == before  # every old file whole, no new file, no temp file left behind
    assert torch.equal(read_torch_file(disk / "checkpoint.pt")["w"], torch.zeros(4))
    assert JobLedger(url, "r").status() == {"a": "WAITING"}  # the ledger opens, the failed append left nothing
    (disk / ".filler").unlink()
    ledger.set_meta("big", "x" * 20000)
    assert JobLedger(url, "r").meta()["big"] == "x" * 20000


def test_caches_on_a_full_disk_do_not_stop_a_run(small_disk, monkeypatch, tmp_path: Path) -> None:
    """A cache is an optimisation: on a full disk the value is computed and returned, just not remembered."""
    from hyperrecon.config import load_study
    from hyperrecon.context import load_bundle
    from hyperrecon.masks import poisson_disc_mask

    disk = small_disk(1 << 20)
    fill(disk)
    monkeypatch.setenv("HRBENCH_CACHE", str(disk))
    mask = poisson_disc_mask((32, 24), 4.0, seed=3, cache_dir=disk / "masks")
    assert np.array_equal(mask, poisson_disc_mask((32, 24), 4.0, seed=3, cache_dir=tmp_path / "masks"))
    bundle = load_bundle(load_study("sl-knee-denoise", "smoke"))
    assert "no space left" in bundle.meta["cache_error"].lower()
    assert [p.name for p in disk.rglob("*") if p.is_file()] == [".filler"]


def test_enospc_without_a_mount_still_names_the_file(tmp_path: Path, monkeypatch) -> None:
    """Where no tmpfs can be mounted: ENOSPC injected at fsync gives the same one-line error, the old file kept."""
    import hyperrecon.io as hio

    target = tmp_path / "results.csv"
    target.write_text("old\n")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(hio.os, "fsync", full)
    with pytest.raises(NoSpaceError, match=r"results\.csv: cannot write \(no space left on device\)"):
        write_csv(target, pd.DataFrame({"a": [1]}))
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["results.csv"]


# ------------------------------------------------------------------------------------------------------------
# whole runs


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("full-disk") / "reference"
    done = subprocess.run(
        hrbench("run", *STUDY, "--out", out, "--no-report"), env=env(), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    return out


def equal_results(a: Path, b: Path) -> None:
    assert (a / "results.csv").read_bytes() == (b / "results.csv").read_bytes()
    sa, sb = pd.read_csv(a / "search.csv"), pd.read_csv(b / "search.csv")
    # timing columns, and the Optuna study names (they hold the run id)
    timing = [c for c in sa.columns if "cost" in c or "seconds" in c or c == "study"]
    pd.testing.assert_frame_equal(sa.drop(columns=timing), sb.drop(columns=timing))
    for p in sorted((a / "models").glob("*.pt")):
        wa, wb = torch.load(p, weights_only=True), torch.load(b / "models" / p.name, weights_only=True)
        assert all(torch.equal(wa[k], wb[k]) for k in wa), p.name


@pytest.mark.slow
@pytest.mark.parametrize(("free_mb", "workers"), [(2, 1), (9, 1), (17, 1), (9, 2)])
def test_a_run_that_fills_the_disk_resumes_to_the_uninterrupted_result(
    reference: Path, small_disk, free_mb: int, workers: int
) -> None:
    disk = small_disk(48 << 20)
    filler = fill(disk, leave=free_mb << 20)
    run = disk / "run"
    failed = subprocess.run(
        hrbench("run", *STUDY, "--out", run, "--no-report", "--workers", workers),
        env=env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert failed.returncode == 1, failed.stderr
    line = one_error_line(failed.stderr)
    assert "no space left on device" in line and f"{run}/" in line, line
    filler.unlink()  # space freed
    resumed = subprocess.run(
        hrbench("run", *STUDY, "--out", run, "--resume", "--no-report"),
        env=env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    equal_results(reference, run)
    # The report on a full disk: one line naming a figure or the report, no report.md; then written when there is room.
    fill(disk)
    before = snapshot(run)
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 1
    line = one_error_line(result.output)
    assert "no space left on device" in line and str(run) in line, line
    assert snapshot(run) == before
    (disk / ".filler").unlink()
    assert runner.invoke(app, ["report", str(run)]).exit_code == 0 and (run / "report.md").is_file()


@pytest.mark.slow
def test_report_elsewhere_writes_nothing_into_a_read_only_run(reference: Path, tmp_path: Path) -> None:
    run = tmp_path / "ro"
    shutil.copytree(reference, run)
    before = snapshot(run)
    _mount(["--bind", str(run)], run)  # then read-only: even root cannot write there
    try:
        _mount(["-o", "remount,bind,ro"], run)
        with pytest.raises(OSError):
            (run / "probe").write_text("")
        out = tmp_path / "elsewhere" / "report.md"
        result = runner.invoke(app, ["report", str(run), "-o", str(out)])
        assert result.exit_code == 0, result.output
        assert out.is_file() and any((out.parent / "figures").glob("*.png"))
        assert "](figures/" in out.read_text()
    finally:
        subprocess.run(["umount", "-l", str(run)], capture_output=True)
    assert snapshot(run) == before and not (run / "figures").exists()


def test_a_torn_ledger_on_a_full_disk_is_left_as_it_was(small_disk) -> None:
    """No room for the backup: the torn tail is not cut (never make it worse); one line; then, with room, cut."""
    disk = small_disk(1 << 20)
    url = str(disk / "ledger.journal")
    JobLedger(url, "r", create=True).enqueue("a", 0, {})
    with open(url, "ab") as fh:
        fh.write(b'{"op_code":6,"worker_id":"w","trial_id":0,"sta')
    torn = Path(url).read_bytes()
    fill(disk)
    with pytest.raises(RunError) as info:
        JobLedger(url, "r")
    message = str(info.value)
    assert message.startswith(f"{url}: ") and "\n" not in message, message
    assert "no space left" in message or "no backup can be written" in message, message
    assert Path(url).read_bytes() == torn and not list(disk.glob("ledger.journal.torn-*"))
    (disk / ".filler").unlink()
    assert JobLedger(url, "r").status() == {"a": "WAITING"}
    assert (disk / "ledger.journal.torn-1").read_bytes() == torn
