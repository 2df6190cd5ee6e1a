"""Real-data readers on tiny files written here in the real schemas (fastMRI h5, FreeSurfer mgz/nii/npy, arrays).

Expected pixels are computed independently with numpy / scikit-image, not with the package's helpers.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
from skimage.transform import resize as sk_resize

from hyperrecon.data import load_data
from hyperrecon.data.freesurfer import merge_aseg
from hyperrecon.errors import ConfigError, DataError

SIZE = 32

# ------------------------------------------------------------------------------------------------------------
# fastMRI single-coil knee

HEADER = """<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <encoding>
    <encodedSpace>
      <matrixSize><x>{ex}</x><y>{ey}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>280.0</x><y>280.0</y><z>4.5</z></fieldOfView_mm>
    </encodedSpace>
    <reconSpace>
      <matrixSize><x>{rx}</x><y>{ry}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>140.0</x><y>140.0</y><z>3.0</z></fieldOfView_mm>
    </reconSpace>
    <trajectory>cartesian</trajectory>
    <encodingLimits>
      <kspace_encoding_step_1><minimum>0</minimum><maximum>{maximum}</maximum><center>{center}</center></kspace_encoding_step_1>
      <slice><minimum>0</minimum><maximum>0</maximum><center>0</center></slice>
    </encodingLimits>
  </encoding>
</ismrmrdHeader>"""


def knee_volume(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """Bright noisy ellipse on a dark background: (n, h, w) float32, anatomy in every slice."""
    yy, xx = np.mgrid[0:h, 0:w]
    ell = (((yy - h / 2) / (0.35 * h)) ** 2 + ((xx - w / 2) / (0.3 * w)) ** 2) < 1
    vol = np.stack([ell * (1e-4 * (k + 1)) for k in range(n)]).astype(np.float32)
    return vol + rng.uniform(0, 2e-6, vol.shape).astype(np.float32)


def write_fastmri(
    f: Path,
    recon: np.ndarray | None,
    *,
    acquisition: str | None = "CORPD_FBK",
    patient: str | None = None,
    key: str = "reconstruction_esc",
    kspace: np.ndarray | None = None,
    mask: bool = False,
    header: dict | None = None,
) -> Path:
    hdr = {"ex": 64, "ey": 37, "rx": 32, "ry": 32, "center": 10, "maximum": 29, **(header or {})}
    with h5py.File(f, "w") as h:
        if recon is not None:
            h.create_dataset(key, data=recon)
        if kspace is None:
            kspace = np.zeros((1 if recon is None else recon.shape[0], 64, 37), np.complex64)
        h.create_dataset("kspace", data=kspace.astype(np.complex64))
        if mask:
            h.create_dataset("mask", data=np.ones(kspace.shape[-1], bool))
        h["ismrmrd_header"] = HEADER.format(**hdr)
        if acquisition is not None:
            h.attrs["acquisition"] = acquisition
        h.attrs["patient_id"] = patient or f.stem
        h.attrs["max"] = float(recon.max()) if recon is not None else 0.0
        h.attrs["norm"] = float(np.linalg.norm(recon)) if recon is not None else 0.0
    return f


def expected_knee(sl: np.ndarray, size: int) -> np.ndarray:
    """Independent reference: pad to square, anti-aliased resize, /99th percentile, clip."""
    h, w = sl.shape
    s = max(h, w)
    sq = np.zeros((s, s), np.float64)
    sq[(s - h) // 2 : (s - h) // 2 + h, (s - w) // 2 : (s - w) // 2 + w] = sl
    r = sk_resize(sq, (size, size), order=1, anti_aliasing=True, preserve_range=True)
    return np.clip(r / np.percentile(r, 99), 0, 1)


@pytest.fixture
def knee_dir(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    d = tmp_path / "knee"
    d.mkdir()
    vols = {}
    for i in range(6):  # odd in-plane size 37x31
        vol = knee_volume(rng, 4, 37, 31)
        acq = "CORPD_FBK" if i % 2 == 0 else "CORPDFS_FBK"
        vols[f"file{i}"] = vol
        write_fastmri(d / f"file{i}.h5", vol, acquisition=acq)
    return d, vols


def test_fastmri_round_trip_odd_size(knee_dir):
    d, vols = knee_dir
    b = load_data("fastmri-knee", image_size=SIZE, seed=0, path=d, cache_dir=False)
    assert b.source == "fastmri-knee" and not b.synthetic and not b.single_subject
    assert b.n_classes is None and b.train.labels is None
    total = sum(len(s) for s in b.splits.values())
    assert total == 6 * 4
    for split in b.splits.values():
        assert split.images.shape[1:] == (SIZE, SIZE) and split.images.dtype == np.float32
        for img, sid in zip(split.images, split.ids, strict=True):
            stem, idx = sid.split("/")
            np.testing.assert_allclose(img, expected_knee(vols[stem][int(idx)], SIZE), atol=1e-5)


def test_fastmri_split_by_file_and_patient(knee_dir, tmp_path):
    d, _ = knee_dir
    b = load_data("fastmri-knee", image_size=SIZE, seed=3, path=d, cache_dir=False)
    files = {name: {i.split("/")[0] for i in s.ids} for name, s in b.splits.items()}
    assert (
        not (files["train"] & files["val"])
        and not (files["train"] & files["test"])
        and not (files["val"] & files["test"])
    )
    # two files of one patient always land in the same split
    rng = np.random.default_rng(1)
    d2 = tmp_path / "pat"
    d2.mkdir()
    for i in range(6):
        write_fastmri(d2 / f"v{i}.h5", knee_volume(rng, 2, 20, 20), patient=f"p{i // 2}")
    for seed in range(4):
        b = load_data("fastmri-knee", image_size=16, seed=seed, path=d2, cache_dir=False)
        where = {i.split("/")[0]: name for name, s in b.splits.items() for i in s.ids}
        assert where["v0"] == where["v1"] and where["v2"] == where["v3"] and where["v4"] == where["v5"]


def test_fastmri_padding_from_header(knee_dir):
    d, _ = knee_dir
    b = load_data("fastmri-knee", image_size=SIZE, seed=0, path=d, cache_dir=False)
    # encoded y = 37, center = 10, maximum = 29: left = 37 // 2 - 10 = 8, right = 8 + 29 + 1 = 38
    assert set(map(tuple, b.meta["padding"].values())) == {(8, 38)}
    assert set(map(tuple, b.meta["recon_size"].values())) == {(32, 32, 1)}


def test_fastmri_contrast_filter(knee_dir):
    d, _ = knee_dir
    for contrast, parity in (("PD", 0), ("PDFS", 1)):
        b = load_data(
            "fastmri-knee",
            image_size=16,
            seed=0,
            path=d,
            params={"contrast": contrast, "val_fraction": 0.3},
            cache_dir=False,
        )
        stems = {i.split("/")[0] for s in b.splits.values() for i in s.ids}
        assert stems == {f"file{i}" for i in range(6) if i % 2 == parity}
        assert set(b.meta["acquisition"].values()) == {"CORPD_FBK" if parity == 0 else "CORPDFS_FBK"}


def test_fastmri_rss_fallback_and_missing_reconstruction(tmp_path):
    rng = np.random.default_rng(2)
    for i in range(3):
        write_fastmri(tmp_path / f"r{i}.h5", knee_volume(rng, 2, 24, 24), key="reconstruction_rss")
    b = load_data("fastmri-knee", image_size=16, seed=0, path=tmp_path, cache_dir=False)
    assert set(b.meta["target"].values()) == {"reconstruction_rss"}
    with pytest.raises(DataError, match=r"r0\.h5.*reconstruction_esc"):
        load_data(
            "fastmri-knee",
            image_size=16,
            seed=0,
            path=tmp_path,
            params={"target": "reconstruction_esc"},
            cache_dir=False,
        )
    # a challenge test file: undersampled kspace + mask, no reconstruction
    write_fastmri(tmp_path / "r3.h5", None, mask=True)
    with pytest.raises(DataError, match=r"r3\.h5: missing .*test file"):
        load_data("fastmri-knee", image_size=16, seed=0, path=tmp_path, cache_dir=False)
    with pytest.raises(DataError, match=r"r3\.h5: .*undersampled"):
        load_data(
            "fastmri-knee",
            image_size=16,
            seed=0,
            path=tmp_path,
            params={"from_kspace": True},
            cache_dir=False,
        )


def test_fastmri_target_from_fully_sampled_kspace(tmp_path):
    rng = np.random.default_rng(3)
    imgs = []
    for i in range(3):
        x = knee_volume(rng, 2, 48, 40).astype(np.complex64) * np.exp(1j * 0.3)
        k = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
        write_fastmri(tmp_path / f"k{i}.h5", None, kspace=k, header={"ex": 48, "ey": 40, "rx": 30, "ry": 28})
        imgs.append(np.abs(x)[:, 9:39, 6:34])  # numpy reference: centre crop 30 x 28 of |x|
    b = load_data("fastmri-knee", image_size=16, seed=0, path=tmp_path, params={"from_kspace": True}, cache_dir=False)
    assert set(b.meta["target"].values()) == {"kspace"}
    for s in b.splits.values():
        for img, sid in zip(s.images, s.ids, strict=True):
            stem, idx = sid.split("/")
            np.testing.assert_allclose(img, expected_knee(imgs[int(stem[1:])][int(idx)], 16), atol=1e-4)


def test_fastmri_drops_empty_slices(tmp_path):
    rng = np.random.default_rng(4)
    for i in range(3):
        vol = knee_volume(rng, 4, 30, 30)
        vol[0] = 0.0  # empty
        vol[3] = 0.0
        vol[3, 5, 5] = 1.0  # one bright speck: 1 pixel of 900 < 2 % anatomy
        write_fastmri(tmp_path / f"e{i}.h5", vol)
    b = load_data("fastmri-knee", image_size=16, seed=0, path=tmp_path, cache_dir=False)
    idx = sorted({i.split("/")[1] for s in b.splits.values() for i in s.ids})
    assert idx == ["001", "002"]


def test_fastmri_single_file_and_slice_cap(knee_dir):
    d, _ = knee_dir
    with pytest.raises(DataError, match="found 1 patient"):
        load_data("fastmri-knee", image_size=16, seed=0, path=d / "file0.h5", cache_dir=False)
    b = load_data("fastmri-knee", image_size=16, seed=0, path=d, params={"slices_per_file": 2}, cache_dir=False)
    assert sum(len(s) for s in b.splits.values()) == 12
    assert {i.split("/")[1] for s in b.splits.values() for i in s.ids} == {
        "001",
        "002",
    }  # central slices of 4


@pytest.mark.parametrize(
    "case, match",
    [
        ("garbage", r"bad\.h5: cannot read HDF5"),
        ("truncated", r"bad\.h5: cannot read"),
        ("no_header", r"bad\.h5: missing dataset 'ismrmrd_header'"),
        ("bad_xml", r"bad\.h5: ismrmrd_header is not valid XML"),
        ("header_no_limits", r"bad\.h5: ismrmrd_header lacks encoding/encodingLimits"),
        ("ndim", r"bad\.h5: 'reconstruction_esc' has shape \(37, 31\); expected \(slices, H, W\)"),
        ("nan", r"bad\.h5: 'reconstruction_esc' contains NaN"),
    ],
)
def test_fastmri_bad_files(knee_dir, case, match):
    d, vols = knee_dir
    bad = d / "bad.h5"
    if case == "garbage":
        bad.write_bytes(b"this is not an HDF5 file" * 10)
    elif case == "truncated":
        write_fastmri(bad, knee_volume(np.random.default_rng(0), 30, 64, 64))
        data = bad.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif case == "no_header":
        write_fastmri(bad, vols["file0"])
        with h5py.File(bad, "a") as h:
            del h["ismrmrd_header"]
    elif case == "bad_xml":
        write_fastmri(bad, vols["file0"])
        with h5py.File(bad, "a") as h:
            del h["ismrmrd_header"]
            h["ismrmrd_header"] = "<ismrmrdHeader><encoding>"
    elif case == "header_no_limits":
        write_fastmri(bad, vols["file0"])
        with h5py.File(bad, "a") as h:
            del h["ismrmrd_header"]
            h["ismrmrd_header"] = (
                HEADER.format(ex=64, ey=37, rx=32, ry=32, center=0, maximum=0).split("<encodingLimits>")[0]
                + "</encoding></ismrmrdHeader>"
            )
    elif case == "ndim":
        write_fastmri(bad, vols["file0"][0])
    elif case == "nan":
        v = vols["file0"].copy()
        v[1, 3, 3] = np.nan
        write_fastmri(bad, v)
    with pytest.raises(DataError, match=match) as exc:
        load_data("fastmri-knee", image_size=16, seed=0, path=d, cache_dir=d.parent / "cache")
    assert "\n" not in str(exc.value)
    assert not (d.parent / "cache").exists() or not any((d.parent / "cache").iterdir())


def test_missing_and_empty_paths(tmp_path):
    with pytest.raises(DataError, match=r"nope: no such file or folder"):
        load_data("fastmri-knee", image_size=16, seed=0, path=tmp_path / "nope", cache_dir=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no \.h5 files found"):
        load_data("fastmri-knee", image_size=16, seed=0, path=tmp_path / "empty", cache_dir=False)
    with pytest.raises(DataError, match=r"empty: no subjects found"):
        load_data("freesurfer-brain", image_size=16, seed=0, path=tmp_path / "empty", cache_dir=False)
    with pytest.raises(ConfigError, match="needs a path"):
        load_data("arrays", image_size=16, seed=0, cache_dir=False)


# ------------------------------------------------------------------------------------------------------------
# FreeSurfer / ABIDE brain


def brain_ras(rng: np.random.Generator, shape=(21, 25, 19)) -> tuple[np.ndarray, np.ndarray]:
    """(T1 uint8, aseg int32) in RAS axis order: an ellipsoid 'brain' with WM core, cortex shell, CSF spot."""
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    r = np.sqrt((x / 0.8) ** 2 + (y / 0.85) ** 2 + (z / 0.75) ** 2)
    aseg = np.zeros(shape, np.int32)
    aseg[r < 1.0] = 3  # cortex
    aseg[r < 0.7] = 2  # white matter
    aseg[(r < 0.3) & (x > 0)] = 4  # lateral ventricle
    aseg[(r < 0.3) & (x <= 0)] = 17  # hippocampus -> gray matter
    t1 = np.select([aseg == 2, aseg == 3, aseg == 17, aseg == 4], [200, 120, 110, 40], 0).astype(np.float64)
    t1 = np.clip(t1 + rng.normal(0, 3, shape) * (aseg > 0), 0, 255).astype(np.uint8)
    return t1, aseg


def to_lia(v: np.ndarray) -> np.ndarray:
    """RAS array -> FreeSurfer conformed LIA storage: axis0 = -x, axis1 = -z, axis2 = +y."""
    return np.ascontiguousarray(v[::-1, :, ::-1].transpose(0, 2, 1))


LIA = np.array([[-1, 0, 0, 10], [0, 0, 1, -12], [0, -1, 0, 9], [0, 0, 0, 1]], float)


def expected_axial(v: np.ndarray, z: int, size: int) -> np.ndarray:
    sl = v[:, :, z].T[::-1]
    out = np.zeros((size, size), sl.dtype)
    h, w = sl.shape
    out[(size - h) // 2 : (size - h) // 2 + h, (size - w) // 2 : (size - w) // 2 + w] = sl
    return out


@pytest.fixture
def brain_dir(tmp_path: Path):
    rng = np.random.default_rng(5)
    root = tmp_path / "abide"
    vols = {}
    for i, kind in enumerate(["mgz", "mgz-mri", "nii", "nii.gz"]):
        t1, aseg = brain_ras(rng)
        vols[f"sub{i}"] = (t1, aseg)
        d = root / f"sub{i}"
        if kind == "mgz":
            d.mkdir(parents=True)
            nib.save(nib.MGHImage(to_lia(t1), LIA), d / "norm.mgz")
            nib.save(nib.MGHImage(to_lia(aseg), LIA), d / "aseg.mgz")
        elif kind == "mgz-mri":
            (d / "mri").mkdir(parents=True)
            nib.save(nib.MGHImage(to_lia(t1), LIA), d / "mri" / "orig.mgz")
            nib.save(nib.MGHImage(to_lia(aseg), LIA), d / "mri" / "aseg.mgz")
        else:
            d.mkdir(parents=True)
            nib.save(nib.Nifti1Image(t1, np.diag([1.0, 1, 1, 1])), d / f"norm.{kind}")
            nib.save(nib.Nifti1Image(aseg, np.diag([1.0, 1, 1, 1])), d / f"aseg.{kind}")
    return root, vols


def test_freesurfer_volumes_round_trip(brain_dir):
    root, vols = brain_dir
    b = load_data(
        "freesurfer-brain",
        image_size=SIZE,
        seed=0,
        path=root,
        params={"val_fraction": 0.25, "test_fraction": 0.25},
        cache_dir=False,
    )
    assert b.n_classes == 5 and b.class_names[0] == "background"
    subj = {name: {i.split("/")[0] for i in s.ids} for name, s in b.splits.items()}
    assert set().union(*subj.values()) == {"sub0", "sub1", "sub2", "sub3"}
    assert sum(len(v) for v in subj.values()) == 4  # each subject in exactly one split
    for s in b.splits.values():
        for img, lab, sid in zip(s.images, s.labels, s.ids, strict=True):
            name, z = sid.split("/")
            t1, aseg = vols[name]
            z = int(z[1:])
            np.testing.assert_allclose(img, expected_axial(t1.astype(np.float32) / t1.max(), z, SIZE), atol=1e-6)
            np.testing.assert_array_equal(lab, merge_aseg(expected_axial(aseg, z, SIZE), "ref"))


def test_freesurfer_orientation_is_anterior_up(brain_dir):
    root, vols = brain_dir
    t1, aseg = vols["sub0"]
    marked = t1.copy()
    marked[:, -4:, :] = np.where(aseg[:, -4:, :] > 0, 255, 0)  # brightest at the anterior end (+y)
    nib.save(nib.MGHImage(to_lia(marked), LIA), root / "sub0" / "norm.mgz")
    b = load_data("freesurfer-brain", image_size=SIZE, seed=0, path=root, params={"max_subjects": 4}, cache_dir=False)
    s = next(s for s in b.splits.values() if any(i.startswith("sub0/") for i in s.ids))
    k = next(j for j, i in enumerate(s.ids) if i == "sub0/z0009")
    rows = np.flatnonzero(s.images[k].max(axis=1) == 1.0)
    assert rows.max() < SIZE // 2  # the anterior rows are at the top of the image


def test_aseg_merge_hand_built():
    codes = np.array([[0, 2, 3, 4, 17], [42, 77, 130, 257, 253], [10, 41, 24, 172, 165]])
    want = np.array([[0, 2, 4, 3, 1], [4, 2, 0, 3, 2], [1, 2, 3, 1, 0]])
    np.testing.assert_array_equal(merge_aseg(codes, "x"), want)
    np.testing.assert_array_equal(merge_aseg(codes.astype(np.float32), "x"), want)
    with pytest.raises(DataError, match=r"f\.mgz: aseg has code\(s\) 5002 not in the aseg table"):
        merge_aseg(np.array([2, 5002]), "f.mgz")
    with pytest.raises(DataError, match="non-integer"):
        merge_aseg(np.array([0.5, 2.0]), "f.mgz")
    with pytest.raises(DataError, match="negative"):
        merge_aseg(np.array([-1, 2]), "f.mgz")


def test_freesurfer_slice_layout(tmp_path):
    rng = np.random.default_rng(6)
    (tmp_path / "asegs").mkdir()
    truth = {}
    for s in range(3):
        t1, aseg = brain_ras(rng, (23, 27, 9))
        for z in range(9):
            img, lab = t1[:, :, z].astype(np.float32) / 255.0, aseg[:, :, z]
            np.save(tmp_path / f"subj{s}_orig_{z:04d}.npy", img)
            np.save(tmp_path / "asegs" / f"subj{s}_aseg_{z:04d}.npy", lab)
            truth[(f"subj{s}", z)] = (img, lab)
    b = load_data("freesurfer-brain", image_size=SIZE, seed=1, path=tmp_path, cache_dir=False)
    for split in b.splits.values():
        for img, lab, sid in zip(split.images, split.labels, split.ids, strict=True):
            name, z = sid.split("/")
            im, lb = truth[(name, int(z[1:]))]
            peak = max(truth[(name, k)][0].max() for k in range(9))
            h, w = im.shape
            t, left = (SIZE - h) // 2, (SIZE - w) // 2
            np.testing.assert_allclose(img[t : t + h, left : left + w], im / peak, atol=1e-6)
            np.testing.assert_array_equal(lab[t : t + h, left : left + w], merge_aseg(lb, "ref"))
    subjects = [{i.split("/")[0] for i in s.ids} for s in b.splits.values()]
    assert all(len(s) == 1 for s in subjects) and len(set().union(*subjects)) == 3


def test_freesurfer_bad_inputs(brain_dir, tmp_path):
    root, vols = brain_dir
    # aseg shape mismatch
    nib.save(nib.MGHImage(np.zeros((5, 5, 5), np.int32), LIA), root / "sub0" / "aseg.mgz")
    with pytest.raises(DataError, match=r"sub0/aseg\.mgz: labels have shape .* expected equal"):
        load_data("freesurfer-brain", image_size=SIZE, seed=0, path=root, cache_dir=False)
    # missing aseg
    (root / "sub0" / "aseg.mgz").unlink()
    with pytest.raises(DataError, match=r"sub0: has norm\.mgz but no aseg"):
        load_data("freesurfer-brain", image_size=SIZE, seed=0, path=root, cache_dir=False)
    # truncated gzip volume
    t1, aseg = vols["sub0"]
    nib.save(nib.MGHImage(to_lia(aseg), LIA), root / "sub0" / "aseg.mgz")
    raw = (root / "sub0" / "norm.mgz").read_bytes()
    (root / "sub0" / "norm.mgz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"sub0/norm\.mgz: cannot read volume"):
        load_data("freesurfer-brain", image_size=SIZE, seed=0, path=root, cache_dir=False)
    # 2-D "volume"
    (root / "sub0" / "norm.mgz").unlink()
    nib.save(nib.Nifti1Image(np.ones((4, 4, 2, 3), np.float32), np.eye(4)), root / "sub0" / "norm.nii")
    with pytest.raises(DataError, match=r"sub0/norm\.nii: volume has shape \(4, 4, 2, 3\); expected a 3-D"):
        load_data("freesurfer-brain", image_size=SIZE, seed=0, path=root, cache_dir=False)
    # non-finite intensities
    bad = np.ones((6, 6, 4), np.float32)
    bad[2, 2, 2] = np.nan
    (root / "sub0" / "norm.nii").unlink()
    nib.save(nib.Nifti1Image(bad, np.eye(4)), root / "sub0" / "norm.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((6, 6, 4), np.int16), np.eye(4)), root / "sub0" / "aseg.nii.gz")
    (root / "sub0" / "aseg.mgz").unlink()
    with pytest.raises(DataError, match=r"sub0/norm\.nii\.gz: image contains NaN or Inf"):
        load_data("freesurfer-brain", image_size=SIZE, seed=0, path=root, cache_dir=False)
    # slice layout with a missing label file
    d = tmp_path / "slices"
    d.mkdir()
    np.save(d / "a_orig_0001.npy", np.ones((4, 4)))
    with pytest.raises(DataError, match=r"a_orig_0001\.npy: no matching label file"):
        load_data("freesurfer-brain", image_size=SIZE, seed=0, path=d, cache_dir=False)


@pytest.mark.parametrize("damage", ["inside-the-stream", "crc-trailer"])
def test_freesurfer_gzip_checksum_is_verified(brain_dir, damage):
    """nibabel stops before the gzip trailer: a damaged stream that still decodes loads as wrong voxels there, so
    the reader checks the CRC-32 itself."""
    root, _ = brain_dir
    for f in (root / "sub0" / "norm.mgz", root / "sub3" / "aseg.nii.gz"):
        intact = f.read_bytes()
        good = np.asarray(nib.load(f).dataobj)
        # Stored (uncompressed) deflate blocks: a flipped byte in the middle changes one voxel and decodes fine.
        data = bytearray(gzip.compress(gzip.decompress(intact), compresslevel=0, mtime=0))
        if damage == "inside-the-stream":
            data[len(data) // 2] ^= 0xFF
        else:
            data[-8:-4] = bytes(b ^ 0xFF for b in data[-8:-4])  # the CRC-32 of the trailer
        f.write_bytes(bytes(data))
        got = np.asarray(nib.load(f).dataobj)  # nibabel alone: no error
        assert (got != good).sum() == (1 if damage == "inside-the-stream" else 0)
        with pytest.raises(
            DataError,
            match=rf"^{re.escape(str(f))}: cannot read volume \(corrupt or truncated gzip "
            r"stream: BadGzipFile: CRC check failed",
        ):
            load_data("freesurfer-brain", image_size=SIZE, seed=0, path=root, cache_dir=False)
        f.write_bytes(intact)


# ------------------------------------------------------------------------------------------------------------
# plain arrays


def slices(rng: np.random.Generator, n: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w]
    blob = (((yy - h / 2) / (0.4 * h)) ** 2 + ((xx - w / 2) / (0.4 * w)) ** 2) < 1
    imgs = np.stack([blob * rng.uniform(50, 100) + rng.uniform(0, 1, (h, w)) for _ in range(n)]).astype(np.float32)
    return imgs, np.stack([blob.astype(np.int64) * (1 + k % 3) for k in range(n)])


def test_arrays_npz_with_labels_odd_size(tmp_path):
    imgs, labs = slices(np.random.default_rng(7), 10, 37, 31)
    np.savez(tmp_path / "data.npz", images=imgs[:, None], labels=labs[:, None])
    size = 40  # larger than the slices: zero-padded, no resampling
    b = load_data("arrays", image_size=size, seed=0, path=tmp_path / "data.npz", cache_dir=False)
    assert b.counts() == {"train": 5, "val": 2, "test": 3}  # val round(1.5) = 2, test round(3.0) = 3
    assert b.n_classes == 4
    assert [i.split("/")[1] for i in b.train.ids] == [f"{k:05d}" for k in range(5)]  # contiguous blocks
    assert [i.split("/")[1] for i in b.test.ids] == [f"{k:05d}" for k in range(7, 10)]
    for s in b.splits.values():
        for img, lab, sid in zip(s.images, s.labels, s.ids, strict=True):
            k = int(sid.split("/")[1])
            ref = imgs[k] / imgs[k].max()
            t, left = (size - 37) // 2, (size - 31) // 2
            np.testing.assert_allclose(img[t : t + 37, left : left + 31], ref, atol=1e-6)
            assert img.sum() == pytest.approx(ref.sum(), rel=1e-5)  # nothing outside the pasted slice
            assert set(np.unique(lab)) <= {0, 1 + k % 3}


def test_arrays_npy_shuffle_resize_and_labels_path(tmp_path):
    imgs, labs = slices(np.random.default_rng(8), 12, 40, 48)
    np.save(tmp_path / "x.npy", imgs)
    np.save(tmp_path / "y.npy", labs)
    b = load_data(
        "arrays",
        image_size=SIZE,
        seed=4,
        path=tmp_path / "x.npy",
        cache_dir=False,
        params={"labels_path": str(tmp_path / "y.npy"), "shuffle": True, "fit": "resize", "normalize": "p99"},
    )
    ids = [i for s in b.splits.values() for i in s.ids]
    assert len(ids) == len(set(ids)) == 12
    assert [i.split("/")[1] for i in b.train.ids] != sorted(i.split("/")[1] for i in b.train.ids) or len(b.train) < 2
    k = int(b.test.ids[0].split("/")[1])
    sq = np.zeros((48, 48))
    # arrays normalise each slice first (p99 + clip), then fit it to the size: the reference does the same
    sq[4:44] = np.clip(imgs[k] / np.percentile(np.clip(imgs[k], 0, None), 99), 0, 1)
    ref = sk_resize(sq, (SIZE, SIZE), order=1, anti_aliasing=True, preserve_range=True)
    np.testing.assert_allclose(b.test.images[0], np.clip(ref, 0, 1), atol=1e-5)


def test_arrays_drop_empty(tmp_path):
    imgs, _ = slices(np.random.default_rng(9), 8, 20, 20)
    imgs[2] = 0
    imgs[5] = 0
    imgs[5, 3, 3] = 10.0  # a single pixel: 0.25 % < 2 %
    np.save(tmp_path / "x.npy", imgs)
    b = load_data("arrays", image_size=SIZE, seed=0, path=tmp_path / "x.npy", cache_dir=False)
    kept = sorted(int(i.split("/")[1]) for s in b.splits.values() for i in s.ids)
    assert kept == [0, 1, 3, 4, 6, 7] and b.meta["dropped_empty"] == 2


@pytest.mark.parametrize(
    "case, match",
    [
        ("ndim", r"x\.npy: images have shape \(4, 20\); expected \(N, H, W\) or \(N, 1, H, W\)"),
        ("nan", r"x\.npy: images contain NaN"),
        ("labels_shape", r"x\.npz: labels have shape \(6, 20, 19\) but images \(6, 20, 20\); expected equal"),
        ("labels_float", r"x\.npz: labels are not integers"),
        ("no_images_key", r"x\.npz: no key 'images' among"),
        ("garbage", r"x\.npy: cannot read"),
        ("negative", r"x\.npy slice 0: negative intensities"),
        ("too_few", r"x\.npy: 2 slice\(s\) with anatomy"),
        ("folder", r"is a folder; expected one \.npy or \.npz"),
    ],
)
def test_arrays_bad_input(tmp_path, case, match):
    imgs, labs = slices(np.random.default_rng(10), 6, 20, 20)
    f = tmp_path / ("x.npz" if case in ("labels_shape", "labels_float", "no_images_key") else "x.npy")
    if case == "ndim":
        np.save(f, imgs[0, :4])
    elif case == "nan":
        imgs[3, 2, 2] = np.inf
        np.save(f, imgs)
    elif case == "labels_shape":
        np.savez(f, images=imgs, labels=labs[:, :, :19])
    elif case == "labels_float":
        np.savez(f, images=imgs, labels=labs + 0.5)
    elif case == "no_images_key":
        np.savez(f, a=imgs, b=labs)
    elif case == "garbage":
        f.write_bytes(b"\x93NUMPY garbage")
    elif case == "negative":
        np.save(f, imgs - 60)
    elif case == "too_few":
        np.save(f, imgs[:2])
    elif case == "folder":
        f = tmp_path
        (tmp_path / "x.npy").touch()
    with pytest.raises(DataError, match=match) as exc:
        load_data("arrays", image_size=SIZE, seed=0, path=f, cache_dir=tmp_path / "cache")
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "cache").exists()
