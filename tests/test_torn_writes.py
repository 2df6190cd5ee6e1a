"""Torn writes: a run whose last write was cut at any byte (a crash, a full disk) resumes to the uninterrupted result.

The job ledger (an Optuna journal, appended to) is cut inside its last record at every byte offset: opening it
keeps a backup, cuts the partial record and shows the state of the records before it; resuming such runs gives
results equal to the uninterrupted run. Files that are rewritten (result tables, job records, checkpoints, figures,
the report) go through a temp file and a rename: a writer killed at any byte leaves the old file intact. Caches
(data bundles, sampling masks) cut at any byte are rebuilt with the same content.
"""

from __future__ import annotations

import json
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
from hyperrecon.storage import JobLedger

ROOT = Path(__file__).resolve().parent.parent
STUDY = ["--study", "sl-knee-denoise", "--profile", "smoke"]
runner = CliRunner()
TIMING = ("cost_seconds", "cum_cost_seconds")  # measured wall/device time: differs between any two runs


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted smoke run, made by another process (its worker is gone, as after a crash)."""
    out = tmp_path_factory.mktemp("torn") / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("HRBENCH_HOST_ID", None)
    proc = subprocess.run(
        [sys.executable, "-m", "hyperrecon.cli", "run", *STUDY, "--out", str(out), "--no-report"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return out


def records(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def cut(run: Path, n_records: int, offset: int) -> bytes:
    """Keep the first ``n_records`` whole records of the ledger and ``offset`` bytes of the next one."""
    lines = records(run / "ledger.journal")
    torn = b"".join(lines[:n_records]) + lines[n_records][:offset]
    (run / "ledger.journal").write_bytes(torn)
    return torn


def run_id(run: Path) -> str:
    return json.loads((run / "run.json").read_text())["run_id"]


def test_a_ledger_torn_at_every_byte_of_its_last_record_opens_with_a_backup(finished: Path, tmp_path: Path) -> None:
    lines = records(finished / "ledger.journal")
    whole = b"".join(lines[:-1])
    last = json.loads(lines[-1])
    assert last["op_code"] == 6 and last["state"] == 1  # the last record: a job's COMPLETE
    full = JobLedger(str(finished / "ledger.journal"), run_id(finished)).status()
    assert set(full.values()) == {"COMPLETE"}
    # The job whose COMPLETE was cut: the trial the last record names.
    ledger = JobLedger(str(finished / "ledger.journal"), run_id(finished))
    cut_job = next(j.name for j in ledger.jobs() if j.number == last["trial_id"])
    expected = {**full, cut_job: "RUNNING"}
    for offset in range(len(lines[-1])):  # 0: the record cleanly absent; len - 1: all but its newline
        run = tmp_path / f"o{offset}"
        run.mkdir()
        shutil.copy(finished / "ledger.journal", run / "ledger.journal")
        torn = cut(run, len(lines) - 1, offset)
        assert JobLedger(str(run / "ledger.journal"), run_id(finished)).status() == expected, offset
        assert (run / "ledger.journal").read_bytes() == whole, offset  # the partial record cut, nothing else
        backups = sorted(run.glob("ledger.journal.torn-*"))
        if offset == 0:
            assert backups == []  # nothing was torn: nothing to back up
        else:
            assert [b.name for b in backups] == ["ledger.journal.torn-1"] and backups[0].read_bytes() == torn
        # Never worse: appending after the repair leaves a file that opens, with the new record in it.
        led = JobLedger(str(run / "ledger.journal"), run_id(finished))
        led.set_meta("probe", offset)
        assert JobLedger(str(run / "ledger.journal"), run_id(finished)).meta()["probe"] == offset


def test_a_torn_tail_left_by_another_writer_is_cut_before_an_append(tmp_path: Path) -> None:
    """A worker died mid-append while this one had the ledger open: this one's next append does not merge with
    the partial line (Optuna's own backend would write right behind it, and every later read would fail)."""
    url = str(tmp_path / "l.journal")
    a = JobLedger(url, "r", create=True)
    a.enqueue("x", 0, {})
    size = os.path.getsize(url)
    partial = b'{"op_code":8,"worker_id":"dead","tri'
    with open(url, "ab") as fh:
        fh.write(partial)
    a.enqueue("y", 0, {})
    assert (tmp_path / "l.journal.torn-1").stat().st_size == size + len(partial)
    assert sorted(JobLedger(url, "r").status()) == ["x", "y"]
    assert all(line.endswith(b"}\n") for line in records(Path(url)))


def equal_results(a: Path, b: Path) -> None:
    assert (a / "results.csv").read_bytes() == (b / "results.csv").read_bytes()
    for name in ("search.csv", "search_summary.csv"):
        ta, tb = pd.read_csv(a / name), pd.read_csv(b / name)
        timing = [c for c in ta.columns if c in TIMING or "cost" in c or "seconds" in c]
        pd.testing.assert_frame_equal(ta.drop(columns=timing), tb.drop(columns=timing))
    for p in sorted((a / "models").glob("*.pt")):
        wa = torch.load(p, weights_only=True)
        wb = torch.load(b / "models" / p.name, weights_only=True)
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), p.name
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert _results_only(sa) == _results_only(sb)


def _results_only(obj):
    """summary.json without what names the folder or measures time (the rest must be equal after a resume)."""
    if isinstance(obj, dict):
        return {
            k: _results_only(v)
            for k, v in obj.items()
            if k not in ("run_dir", "storage", "run_id") and "seconds" not in k
        }
    if isinstance(obj, list):
        return [_results_only(v) for v in obj]
    return obj


@pytest.mark.slow
@pytest.mark.parametrize("where", ["last-1", "last-half", "last-but-newline", "mid-run"])
def test_resume_after_a_torn_ledger_gives_the_uninterrupted_result(
    finished: Path, tmp_path: Path, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    for name in ("results.csv", "search.csv", "search_summary.csv", "summary.json"):
        (run / name).unlink()  # made again by the resume
    lines = records(run / "ledger.journal")
    n, offset = {
        "last-1": (len(lines) - 1, 1),
        "last-half": (len(lines) - 1, len(lines[-1]) // 2),
        "last-but-newline": (len(lines) - 1, len(lines[-1]) - 1),
        # a crash in the middle of the run: every record after the torn one is lost too
        "mid-run": (int(len(lines) * 0.6), 17),
    }[where]
    torn = cut(run, n, offset)
    result = runner.invoke(app, ["run", *STUDY, "--out", str(run), "--resume", "--no-report"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "error:" not in result.output
    assert f"{run / 'ledger.journal'}: cut a torn last record ({offset} bytes" in caplog.text
    assert (run / "ledger.journal.torn-1").read_bytes() == torn
    equal_results(finished, run)
    # Resuming once more changes nothing and needs no repair.
    again = runner.invoke(app, ["run", *STUDY, "--out", str(run), "--resume", "--no-report"])
    assert again.exit_code == 0, again.output
    assert not (run / "ledger.journal.torn-2").exists()
    assert set(JobLedger(str(run / "ledger.journal"), run_id(run)).status().values()) == {"COMPLETE"}


# ------------------------------------------------------------------------------------------------------------
# files that are rewritten: a writer killed at any byte leaves the old file


KILLED_WRITER = """
import os, sys
from pathlib import Path
import hyperrecon.io as hio
k = int(sys.argv[2])
real = os.fdopen
class Torn:
    def __init__(self, fh): self.fh = fh
    def __enter__(self): return self
    def __exit__(self, *a): return False
    def write(self, data):
        self.fh.write(data[:k]); self.fh.flush(); os._exit(9)   # the process dies k bytes into the write
    def __getattr__(self, name): return getattr(self.fh, name)
hio.os.fdopen = lambda fd, mode: Torn(real(fd, mode))
{call}
"""


@pytest.mark.slow
@pytest.mark.parametrize("writer", ["csv", "checkpoint"])
def test_a_writer_killed_at_any_byte_leaves_the_old_file(tmp_path: Path, writer: str) -> None:
    target = tmp_path / ("results.csv" if writer == "csv" else "baseline-0.pt")
    if writer == "csv":
        new = pd.DataFrame({"model": ["b"] * 50, "value": np.linspace(0, 1, 50)})
        pd.DataFrame({"model": ["a"], "value": [1.0]}).to_csv(target, index=False)
        call = (
            "import pandas as pd, numpy as np; hio.write_csv(sys.argv[1], pd.DataFrame("
            "{'model': ['b'] * 50, 'value': np.linspace(0, 1, 50)}))"
        )
        size = len(new.to_csv(index=False).encode())
    else:
        from hyperrecon.checkpoints import save_checkpoint

        save_checkpoint(target, {"w": torch.zeros(3)})
        call = (
            "import torch; from hyperrecon.checkpoints import save_checkpoint; "
            "save_checkpoint(sys.argv[1], {'w': torch.ones(300)})"
        )
        size = 1500
    before = target.read_bytes()
    script = tmp_path / "killed.py"
    script.write_text(KILLED_WRITER.format(call=call))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    for k in sorted({0, 1, size // 3, size // 2, size - 1}):
        proc = subprocess.run([sys.executable, str(script), str(target), str(k)], env=env, capture_output=True)
        assert proc.returncode == 9, proc.stderr.decode()
        assert target.read_bytes() == before, k  # the old file, whole
    if writer == "checkpoint":
        from hyperrecon.checkpoints import read_torch_file

        assert torch.equal(read_torch_file(target)["w"], torch.zeros(3))


def test_caches_cut_at_any_byte_are_rebuilt_with_the_same_content(tmp_path: Path) -> None:
    from hyperrecon.masks import poisson_disc_mask

    cache = tmp_path / "masks"
    mask = poisson_disc_mask((32, 24), 4.0, seed=3, cache_dir=cache)
    (path,) = cache.glob("*.npy")
    data = path.read_bytes()
    for k in sorted({0, 1, 64, len(data) // 2, len(data) - 1}):
        path.write_bytes(data[:k])
        assert np.array_equal(poisson_disc_mask((32, 24), 4.0, seed=3, cache_dir=cache), mask), k
        assert path.read_bytes() == data, k  # rewritten whole


def test_a_data_cache_cut_at_any_byte_is_rebuilt_with_the_same_content(tmp_path: Path, monkeypatch) -> None:
    from hyperrecon.config import load_study
    from hyperrecon.context import load_bundle

    monkeypatch.setenv("HRBENCH_CACHE", str(tmp_path))
    study = load_study("sl-knee-denoise", "smoke")
    first = load_bundle(study)
    (path,) = (tmp_path / "data").glob("*.npz")
    data = path.read_bytes()
    for k in (0, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:k])
        again = load_bundle(study)
        assert np.array_equal(again.train.images, first.train.images), k
        assert np.array_equal(again.test.images, first.test.images), k
        assert path.read_bytes() == data, k
