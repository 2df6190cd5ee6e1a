"""Volume identity from the path relative to the data root, for every reader (issue 13, item 1).

Layouts are built here with real files (h5py, nibabel, numpy): two sites holding files of the same names, nested
folders, symbolic and hard links to files and folders, a link cycle, and names that still clash. Expected ids,
patients and pixels are written out by hand or computed with numpy / scikit-image, never with the package.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest

# the independent pixel reference and the ISMRMRD header of the reader tests (tests/ is on sys.path under pytest)
from test_readers import HEADER as READER_HEADER
from test_readers import expected_knee
from typer.testing import CliRunner

from hyperrecon.cli import app
from hyperrecon.data import detect_source, load_data
from hyperrecon.errors import DataError

SIZE = 16
HEADER = READER_HEADER.format(ex=64, ey=37, rx=32, ry=32, center=10, maximum=29)


# ------------------------------------------------------------------------------------------------------------
# fastMRI


def volume(seed: int, n: int = 3, h: int = 24, w: int = 20) -> np.ndarray:
    """An ellipse whose size depends on ``seed`` (so each file's slices differ after normalisation), plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    ry, rx = 0.2 + 0.03 * (seed % 7), 0.25 + 0.02 * (seed % 5)
    ell = (((yy - h / 2) / (ry * h)) ** 2 + ((xx - w / 2) / (rx * w)) ** 2) < 1
    return (np.stack([ell * (k + 1.0) for k in range(n)]) + rng.uniform(0, 0.01, (n, h, w))).astype(np.float32)


def write_h5(f: Path, vol: np.ndarray, patient: str | None) -> Path:
    f.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(f, "w") as h:
        h.create_dataset("reconstruction_esc", data=vol)
        h.create_dataset("kspace", data=np.zeros((vol.shape[0], 64, 37), np.complex64))
        h["ismrmrd_header"] = HEADER
        h.attrs["acquisition"] = "CORPD_FBK"
        if patient is not None:
            h.attrs["patient_id"] = patient
    return f


def two_sites(root: Path, *, patients: bool, n: int = 3) -> dict[str, np.ndarray]:
    """siteA/file{i}.h5 and siteB/file{i}.h5: same names, different volumes; patient_id distinct or absent.
    Returns the expected volume id -> volume."""
    vols = {}
    for s, site in enumerate(("siteA", "siteB")):
        for i in range(n):
            vol = volume(10 * s + i)
            write_h5(root / site / f"file{i}.h5", vol, f"{site}-patient{i}" if patients else None)
            vols[f"{site}/file{i}"] = vol
    return vols


def check_fastmri(b, vols: dict[str, np.ndarray]) -> dict[str, str]:
    """Every slice id names its file and holds that file's pixels; each volume in exactly one split.
    Returns volume id -> split."""
    where: dict[str, str] = {}
    for name, split in b.splits.items():
        for img, sid in zip(split.images, split.ids, strict=True):
            vid, idx = sid.rsplit("/", 1)
            assert where.setdefault(vid, name) == name, f"{vid} in two splits"
            np.testing.assert_allclose(img, expected_knee(vols[vid][int(idx)], SIZE), atol=1e-5)
    assert set(where) == set(vols)
    return where


@pytest.mark.parametrize("patients", [True, False], ids=["patient_id", "no-patient_id"])
def test_fastmri_two_sites_same_names(tmp_path, patients):
    vols = two_sites(tmp_path / "data", patients=patients)
    b = load_data("fastmri-knee", image_size=SIZE, seed=0, path=tmp_path / "data", cache_dir=False)
    check_fastmri(b, vols)
    assert sum(len(s) for s in b.splits.values()) == 6 * 3
    assert b.meta["volume_ids"] == {str(tmp_path / "data" / f"{v}.h5"): v for v in vols}
    groups = b.meta["patients"]
    every = sorted(p for ps in groups.values() for p in ps)
    if patients:
        assert every == sorted(f"{s}-patient{i}" for s in ("siteA", "siteB") for i in range(3))
    else:  # the fallback patient is the path relative to the root: six patients, not three
        assert every == sorted(vols)
    assert [len(groups[k]) for k in ("train", "val", "test")] == [3, 1, 2]
    assert b.meta["duplicates"] == {}


def test_fastmri_patient_shared_across_sites_stays_in_one_split(tmp_path):
    root = tmp_path / "data"
    vols = {}
    for s, site in enumerate(("siteA", "siteB")):
        for i in range(4):
            vols[f"{site}/file{i}"] = volume(10 * s + i)
            write_h5(root / site / f"file{i}.h5", vols[f"{site}/file{i}"], f"p{i}")
    for seed in range(3):
        b = load_data("fastmri-knee", image_size=SIZE, seed=seed, path=root, cache_dir=False)
        where = check_fastmri(b, vols)
        for i in range(4):  # one patient, two sites: same split
            assert where[f"siteA/file{i}"] == where[f"siteB/file{i}"]


def test_fastmri_nested_folders_and_single_file(tmp_path):
    root = tmp_path / "data"
    vols = {
        "file0": volume(1),
        "a/file0": volume(2),
        "a/b/c/file0": volume(3),
        "a/b/file1": volume(4),
    }
    for vid, vol in vols.items():
        write_h5(root / f"{vid}.h5", vol, None)
    b = load_data("fastmri-knee", image_size=SIZE, seed=1, path=root, cache_dir=False)
    check_fastmri(b, vols)


def test_fastmri_symlinked_duplicates_are_read_once(tmp_path):
    root = tmp_path / "data"
    vols = two_sites(root, patients=False)
    (root / "siteC").symlink_to(root / "siteA", target_is_directory=True)  # a linked site folder
    (root / "siteB" / "copy-of-file0.h5").symlink_to(root / "siteA" / "file0.h5")  # a linked file
    os.link(root / "siteA" / "file1.h5", root / "siteB" / "hard-link.h5")  # a hard link
    (root / "siteA" / "loop").symlink_to(root, target_is_directory=True)  # a cycle back to the root
    (root / "dangling.h5").symlink_to(root / "nowhere.h5")
    b = load_data("fastmri-knee", image_size=SIZE, seed=0, path=root, cache_dir=False)
    check_fastmri(b, vols)  # the six real files, under their link-free ids
    assert sum(len(s) for s in b.splits.values()) == 6 * 3
    s = str(root)
    assert b.meta["duplicates"] == {
        f"{s}/siteB/copy-of-file0.h5": f"{s}/siteA/file0.h5",
        f"{s}/siteB/hard-link.h5": f"{s}/siteA/file1.h5",
        f"{s}/siteC/file0.h5": f"{s}/siteA/file0.h5",
        f"{s}/siteC/file1.h5": f"{s}/siteA/file1.h5",
        f"{s}/siteC/file2.h5": f"{s}/siteA/file2.h5",
    }


def test_fastmri_linked_site_folder_is_read(tmp_path):
    """A site kept elsewhere and linked into the data root is read (links are followed), under the link's name."""
    elsewhere = tmp_path / "disk2" / "site"
    for i in range(3):
        write_h5(elsewhere / f"file{i}.h5", volume(20 + i), None)
    root = tmp_path / "data"
    for i in range(3):
        write_h5(root / "siteA" / f"file{i}.h5", volume(i), None)
    (root / "siteB").symlink_to(elsewhere, target_is_directory=True)
    assert detect_source(root) == "fastmri-knee"
    b = load_data("fastmri-knee", image_size=SIZE, seed=0, path=root, cache_dir=False)
    vols = {f"siteA/file{i}": volume(i) for i in range(3)} | {f"siteB/file{i}": volume(20 + i) for i in range(3)}
    check_fastmri(b, vols)
    assert b.meta["duplicates"] == {}


def test_fastmri_ids_that_still_clash_name_both_files(tmp_path):
    root = tmp_path / "data"
    two_sites(root, patients=True)
    write_h5(root / "siteA" / "file1.hdf5", volume(99), "other")
    with pytest.raises(DataError) as err:
        load_data("fastmri-knee", image_size=SIZE, seed=0, path=root, cache_dir=False)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{root}/siteA/file1.h5 and {root}/siteA/file1.hdf5: both map to volume id 'siteA/file1'")


# ------------------------------------------------------------------------------------------------------------
# the command line: hrbench data preview on the two-site layout


@pytest.mark.parametrize("patients", [True, False], ids=["patient_id", "no-patient_id"])
def test_cli_preview_two_sites(tmp_path, patients):
    vols = two_sites(tmp_path / "data", patients=patients)
    link = tmp_path / "data" / "siteB" / "again.h5"
    link.symlink_to(tmp_path / "data" / "siteA" / "file2.h5")
    result = CliRunner().invoke(
        app,
        [
            "data",
            "preview",
            "--study",
            "sl-knee-cs",
            "--profile",
            "smoke",
            "--data",
            str(tmp_path / "data"),
            "--out",
            str(tmp_path / "out"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["source"] == "fastmri-knee"
    assert sum(s["count"] for s in summary["splits"].values()) == 6 * 3
    assert summary["shown"] and all(i.rsplit("/", 1)[0] in vols for i in summary["shown"])
    assert (tmp_path / "out" / "preview.png").is_file()
    assert summary["duplicates_skipped"] == {str(link): str(tmp_path / "data" / "siteA" / "file2.h5")}


# ------------------------------------------------------------------------------------------------------------
# FreeSurfer / ABIDE


def brain(seed: int, shape=(14, 16, 12)) -> tuple[np.ndarray, np.ndarray]:
    """(T1 uint8, aseg int32) with a subject-specific box size, so subjects are told apart by their pixels."""
    t1 = np.zeros(shape, np.uint8)
    aseg = np.zeros(shape, np.int32)
    e = 2 + seed % 3
    aseg[e:-e, e:-e, 2:-2] = 2
    aseg[e + 2 : -e - 2, e + 2 : -e - 2, 2:-2] = 4
    t1[aseg == 2] = 200 - seed
    t1[aseg == 4] = 40 + seed
    return t1, aseg


def write_subject(d: Path, seed: int, *, ext: str = ".mgz") -> tuple[np.ndarray, np.ndarray]:
    d.mkdir(parents=True, exist_ok=True)
    t1, aseg = brain(seed)
    make = nib.MGHImage if ext == ".mgz" else nib.Nifti1Image
    nib.save(make(t1, np.eye(4)), d / f"norm{ext}")
    nib.save(make(aseg, np.eye(4)), d / f"aseg{ext}")
    return t1, aseg


def axial(v: np.ndarray, z: int) -> np.ndarray:
    """Reference axial slice of a RAS-stored (identity affine) volume, anterior up, centred in SIZE x SIZE."""
    sl = v[:, :, z].T[::-1]
    out = np.zeros((SIZE, SIZE), sl.dtype)
    h, w = sl.shape
    out[(SIZE - h) // 2 : (SIZE - h) // 2 + h, (SIZE - w) // 2 : (SIZE - w) // 2 + w] = sl
    return out


def check_brain(b, truth: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    classes = {0: 0, 2: 2, 4: 3}  # FreeSurferColorLUT: 2 cerebral white matter, 4 lateral ventricle (CSF)
    where: dict[str, str] = {}
    for name, split in b.splits.items():
        for img, lab, sid in zip(split.images, split.labels, split.ids, strict=True):
            subj, z = sid.rsplit("/", 1)
            assert where.setdefault(subj, name) == name
            t1, aseg = truth[subj]
            np.testing.assert_allclose(img, axial(t1.astype(np.float32) / t1.max(), int(z[1:])), atol=1e-6)
            np.testing.assert_array_equal(lab, np.vectorize(classes.get)(axial(aseg, int(z[1:]))))
    assert set(where) == set(truth)


def test_freesurfer_two_sites_same_subject_names(tmp_path):
    root = tmp_path / "abide"
    truth = {}
    for s, site in enumerate(("siteA", "siteB")):
        for i in range(3):
            sub = root / site / f"sub{i}"
            truth[f"{site}/sub{i}"] = write_subject(
                sub / "mri" if i == 0 else sub, 3 * s + i, ext=".nii.gz" if i == 2 else ".mgz"
            )
    b = load_data("freesurfer-brain", image_size=SIZE, seed=0, path=root, cache_dir=False)
    check_brain(b, truth)
    assert sorted(s for ss in b.meta["subjects"].values() for s in ss) == sorted(truth)


def test_freesurfer_slice_layout_in_two_folders(tmp_path):
    root = tmp_path / "slices"
    truth = {}
    for s, site in enumerate(("siteA", "siteB/nested")):
        (root / site / "asegs").mkdir(parents=True)
        for i in range(2):
            t1, aseg = brain(2 * s + i)
            truth[f"{site}/x{i}"] = (t1, aseg)
            for z in range(t1.shape[2]):
                np.save(root / site / f"x{i}_orig_{z:04d}.npy", t1[:, :, z].T[::-1].astype(np.float32))
                np.save(root / site / "asegs" / f"x{i}_aseg_{z:04d}.npy", aseg[:, :, z].T[::-1])
    (root / "siteC").symlink_to(root / "siteA", target_is_directory=True)  # a linked copy: read once
    b = load_data("freesurfer-brain", image_size=SIZE, seed=2, path=root, cache_dir=False)
    subjects = sorted(s for ss in b.meta["subjects"].values() for s in ss)
    assert subjects == ["siteA/x0", "siteA/x1", "siteB/nested/x0", "siteB/nested/x1"]
    assert b.meta["duplicates"] == {
        str(root / "siteC" / f"x{i}_orig_{z:04d}.npy"): str(root / "siteA" / f"x{i}_orig_{z:04d}.npy")
        for i in range(2)
        for z in range(12)
    }
    for split in b.splits.values():
        for img, sid in zip(split.images, split.ids, strict=True):
            subj, z = sid.rsplit("/", 1)
            t1 = truth[subj][0]
            np.testing.assert_allclose(img, axial(t1.astype(np.float32) / t1.max(), int(z[1:])), atol=1e-6)


def test_freesurfer_linked_subject_is_read_once(tmp_path):
    root = tmp_path / "abide"
    truth = {f"site/sub{i}": write_subject(root / "site" / f"sub{i}", i) for i in range(3)}
    (root / "site" / "sub9").symlink_to(root / "site" / "sub0", target_is_directory=True)
    b = load_data("freesurfer-brain", image_size=SIZE, seed=0, path=root, cache_dir=False)
    check_brain(b, truth)
    assert b.meta["duplicates"] == {str(root / "site/sub9/norm.mgz"): str(root / "site/sub0/norm.mgz")}


def test_freesurfer_subject_ids_that_clash_name_both_files(tmp_path):
    root = tmp_path / "abide"
    for i in range(3):
        write_subject(root / f"sub{i}", i)
    write_subject(root / "sub1" / "mri", 7)  # sub1/norm.mgz and sub1/mri/norm.mgz: one subject twice
    with pytest.raises(
        DataError,
        match=rf"^{root}/sub1/norm\.mgz and {root}/sub1/mri/norm\.mgz: both map to "
        r"subject id 'sub1'",
    ):
        load_data("freesurfer-brain", image_size=SIZE, seed=0, path=root, cache_dir=False)
    # a volume subject and a slice subject of one name
    root2 = tmp_path / "mixed"
    for i in range(3):
        write_subject(root2 / f"sub{i}", i)
    (root2 / "asegs").mkdir()
    np.save(root2 / "sub2_orig_0000.npy", np.ones((8, 8), np.float32))
    np.save(root2 / "asegs" / "sub2_aseg_0000.npy", np.full((8, 8), 2, np.int32))
    with pytest.raises(
        DataError,
        match=rf"^{root2}/sub2/norm\.mgz and {root2}/sub2_orig_0000\.npy: both map to "
        r"subject id 'sub2'",
    ):
        load_data("freesurfer-brain", image_size=SIZE, seed=0, path=root2, cache_dir=False)


# ------------------------------------------------------------------------------------------------------------
# arrays (.npy / .npz)


def test_arrays_id_is_the_file_name_and_labels_must_be_another_file(tmp_path):
    d = tmp_path / "deep" / "er"
    d.mkdir(parents=True)
    imgs = np.stack([volume(i, n=1)[0] for i in range(8)])
    np.save(d / "scans.npy", imgs)
    b = load_data("arrays", image_size=SIZE, seed=0, path=d / "scans.npy", cache_dir=False)
    assert [i for s in b.splits.values() for i in s.ids] == [f"scans/{i:05d}" for i in range(8)]
    (tmp_path / "labels.npy").symlink_to(d / "scans.npy")
    with pytest.raises(DataError, match=r"labels\.npy: labels_path is the same file as path .*scans\.npy"):
        load_data(
            "arrays",
            image_size=SIZE,
            seed=0,
            path=d / "scans.npy",
            cache_dir=False,
            params={"labels_path": str(tmp_path / "labels.npy")},
        )


def test_a_new_link_is_reported_after_a_cached_load(tmp_path):
    root = tmp_path / "data"
    two_sites(root, patients=False)
    cache = tmp_path / "cache"
    first = load_data("fastmri-knee", image_size=SIZE, seed=0, path=root, cache_dir=cache)
    assert first.meta["cache"]["hit"] is False and first.meta["duplicates"] == {}
    (root / "siteB" / "again.h5").symlink_to(root / "siteA" / "file0.h5")
    second = load_data("fastmri-knee", image_size=SIZE, seed=0, path=root, cache_dir=cache)
    assert second.meta["cache"]["hit"] is False  # the link changed the inputs, so the cache key
    assert second.meta["duplicates"] == {str(root / "siteB" / "again.h5"): str(root / "siteA" / "file0.h5")}
    assert second.counts() == first.counts()
    third = load_data("fastmri-knee", image_size=SIZE, seed=0, path=root, cache_dir=cache)
    assert third.meta["cache"]["hit"] is True and third.meta["duplicates"] == second.meta["duplicates"]
