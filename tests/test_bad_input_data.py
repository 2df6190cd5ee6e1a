"""Bad data of the kinds added by issues 13 and 20, through the command line: one ``error:`` line naming the
file(s), a non-zero exit, no traceback, no run folder made and no input file changed.

- ids that still clash after the relative-path rule (fastMRI ``x.h5`` + ``x.hdf5``; FreeSurfer ``sub/norm.mgz`` +
  ``sub/mri/norm.mgz``): exit 2, both files named;
- an aseg code FreeSurfer's aseg does not have (a cortical parcel of aparc+aseg): exit 2, the file and the code;
- ``labels_path`` that is the images file itself (through a link): exit 2;
- an ``.h5`` that another process (a real second process) holds open for writing: exit 1, "locked by another
  process" and what to do, never "damaged"; one left flagged open-for-write by a writer that died: exit 1, h5clear.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
from test_bad_input import (
    BRAIN,
    STUDY,
    brain_folder,
    error_line,
    knee_folder,
    knee_volume,
    snapshot,
    write_h5,
)


def data_error(tmp_path: Path, data: Path, code: int, *needles: str, study: list[str] = STUDY) -> str:
    """Run with ``--data``; one error line with ``needles``, exit ``code``, no run folder, the data unchanged."""
    root = data if data.is_dir() else data.parent
    before = snapshot(root)
    out = tmp_path / "new-run"
    line = error_line(["run", *study, "--data", data, "--out", out], code, *needles)
    assert not out.exists()
    assert snapshot(root) == before, "the failed command changed the data"
    assert "Traceback" not in line
    return line


def test_fastmri_ids_still_clash(tmp_path: Path) -> None:
    d = knee_folder(tmp_path / "knee")
    write_h5(d / "file1.hdf5", knee_volume(seed=7))
    data_error(tmp_path, d, 2, f"{d}/file1.h5 and {d}/file1.hdf5", "volume id 'file1'")


def test_freesurfer_subject_ids_clash(tmp_path: Path) -> None:
    d = brain_folder(tmp_path / "brain")
    (d / "subj1" / "mri" / "norm.mgz").rename(d / "subj1" / "norm.mgz")
    (d / "subj1" / "mri" / "aseg.mgz").rename(d / "subj1" / "aseg.mgz")
    brain_folder(tmp_path / "other", 2)
    for f in ("norm.mgz", "aseg.mgz"):
        (tmp_path / "other" / "subj1" / "mri" / f).rename(d / "subj1" / "mri" / f)
    data_error(tmp_path, d, 2, f"{d}/subj1/norm.mgz and {d}/subj1/mri/norm.mgz", "subject id 'subj1'", study=BRAIN)


def test_aseg_code_not_in_the_table(tmp_path: Path) -> None:
    d = brain_folder(tmp_path / "brain")
    f = d / "subj2" / "mri" / "aseg.mgz"
    aseg = np.asarray(nib.load(f).dataobj).copy()
    aseg[10, 10, 10] = 1035  # ctx-lh-insula: an aparc+aseg code, not an aseg one
    nib.save(nib.MGHImage(aseg, np.eye(4)), f)
    data_error(tmp_path, d, 2, str(f), "code(s) 1035 not in the aseg table", study=BRAIN)


def test_labels_path_is_the_images_file(tmp_path: Path) -> None:
    d = tmp_path / "arrays"
    d.mkdir()
    np.save(d / "slices.npy", knee_volume(n=10))
    (d / "labels.npy").symlink_to(d / "slices.npy")
    before = snapshot(d)
    out = tmp_path / "new-run"
    error_line(
        [
            "run",
            *STUDY,
            "--data",
            d / "slices.npy",
            "--set",
            f"data.params.labels_path={d / 'labels.npy'}",
            "--out",
            out,
        ],
        2,
        f"{d / 'labels.npy'}: labels_path is the same file as path",
    )
    assert not out.exists() and snapshot(d) == before


HOLD = """import sys, h5py
h = h5py.File(sys.argv[1], "a")
print("open", flush=True)
sys.stdin.read()  # hold the file open for writing until the test closes stdin
"""


def test_h5_held_open_for_writing_by_another_process(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("HDF5_USE_FILE_LOCKING", raising=False)  # HDF5's default: lock files (as users have it)
    d = knee_folder(tmp_path / "knee")
    f = d / "file1.h5"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(f)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        line = data_error(
            tmp_path,
            d,
            1,
            str(f),
            "locked by another process",
            "open for writing",
            "wait until that process has finished",
        )
        assert "cannot read" not in line and "intact" not in line  # not called damaged
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    # once the writer is gone the same data load
    from hyperrecon.data import load_data

    assert load_data("fastmri-knee", image_size=16, seed=0, path=d, cache_dir=False).train.images.size


def test_h5_left_flagged_open_by_a_writer_that_died(tmp_path: Path) -> None:
    d = knee_folder(tmp_path / "knee")
    f = d / "file0.h5"
    plain = d / "plain.h5"
    f.rename(plain)
    with h5py.File(plain, "r") as src, h5py.File(f, "w", libver="latest") as dst:  # superblock v3 records
        for key in src:  # "open for writing"
            src.copy(key, dst)
        dst.attrs.update(src.attrs)
    plain.unlink()
    env = {**os.environ, "HDF5_USE_FILE_LOCKING": "FALSE"}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD.replace('"a"', '"a", libver="latest"'), str(f)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert holder.stdout.readline().strip() == "open"
    holder.kill()  # dies without closing the file: the flag stays
    holder.wait(timeout=30)
    data_error(tmp_path, d, 1, str(f), "marked as open for writing", f"h5clear -s {f}")


def test_h5_lock_refused_by_the_file_system_is_not_called_busy() -> None:
    """HDF5's message when the file system has no locks (errno 38, as h5py words it): not 'another process'."""
    from hyperrecon.data.fastmri import h5_open_error
    from hyperrecon.errors import DataBusyError, DataError

    exc = OSError(
        "Unable to synchronously open file (unable to lock file, errno = 38, error message = "
        "'Function not implemented')"
    )
    err = h5_open_error(Path("/d/x.h5"), exc, "HDF5")
    assert not isinstance(err, DataError) and err.exit_code == 1
    assert str(err).startswith("/d/x.h5: cannot take HDF5's file lock") and "HDF5_USE_FILE_LOCKING=FALSE" in str(err)
    busy = h5_open_error(
        Path("/d/x.h5"),
        BlockingIOError(
            11,
            "Unable to synchronously open file (unable to lock "
            "file, errno = 11, error message = 'Resource temporarily unavailable')",
        ),
        "HDF5",
    )
    assert isinstance(busy, DataBusyError) and busy.exit_code == 1
