"""Data package: shared helpers, augmentation, registry/load_data, cache, mni-brain, knee-phantom, preview.

References are independent: numpy, scikit-image and nilearn directly, hand-built arrays.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from skimage.transform import resize as sk_resize

from hyperrecon.data import DATASETS, DataBundle, Split, detect_source, load_data
from hyperrecon.data import augment as aug
from hyperrecon.data.base import fit_to_size, has_anatomy, normalise_percentile, split_groups, validate_bundle
from hyperrecon.data.mni import slice_ranges
from hyperrecon.errors import ConfigError, DataError, UnknownNameError

# ------------------------------------------------------------------------------------------------------------
# helpers in base.py


def test_has_anatomy_threshold():
    img = np.zeros((20, 20))
    assert not has_anatomy(img)
    img.flat[:8] = 1.0  # 8 / 400 = 2 % above 5 % of the max -> kept
    assert has_anatomy(img)
    img.flat[7] = 0.0  # 7 / 400 < 2 %
    assert not has_anatomy(img)
    img[10:] = 0.049  # faint background below 5 % of the max does not count as anatomy
    assert not has_anatomy(img)
    img[10:] = 0.051
    assert has_anatomy(img)


def test_fit_to_size_pad_and_resize(odd_image):
    padded = fit_to_size(odd_image, 40)
    assert padded.shape == (40, 40)
    np.testing.assert_array_equal(padded[1:38, 4:35], odd_image)  # (40-37)//2 = 1, (40-31)//2 = 4
    assert padded.sum() == pytest.approx(odd_image.sum())
    small = fit_to_size(odd_image, 16)
    sq = np.zeros((37, 37))
    sq[:, 3:34] = odd_image
    ref = sk_resize(sq, (16, 16), order=1, anti_aliasing=True, preserve_range=True)
    np.testing.assert_allclose(small, ref, atol=1e-5)
    big = fit_to_size(odd_image, 64, mode="resize")  # knee mode: always resample
    sq = np.zeros((37, 37))
    sq[:, 3:34] = odd_image
    np.testing.assert_allclose(
        big, sk_resize(sq, (64, 64), order=1, anti_aliasing=True, preserve_range=True), atol=1e-5
    )
    labels = (odd_image * 4).astype(np.uint8)
    lab = fit_to_size(labels, 16, labels=True)
    assert lab.dtype == np.uint8 and set(np.unique(lab)) <= set(np.unique(labels)) | {0}


def test_normalise_percentile(odd_image):
    out = normalise_percentile(odd_image * 7.0)
    np.testing.assert_allclose(out, np.clip(odd_image * 7.0 / np.percentile(odd_image * 7.0, 99), 0, 1), rtol=1e-6)
    assert out.dtype == np.float32 and out.max() == 1.0
    assert normalise_percentile(np.zeros((4, 4))).max() == 0.0


def test_split_groups_disjoint_and_deterministic():
    groups = [f"p{i}" for i in range(20)] * 2
    a = split_groups(groups, val_fraction=0.15, test_fraction=0.3, seed=1, where="x", unit="patient")
    b = split_groups(groups, val_fraction=0.15, test_fraction=0.3, seed=1, where="x", unit="patient")
    assert a == b
    assert [len(a[k]) for k in ("train", "val", "test")] == [11, 3, 6]
    assert set(a["train"]) | set(a["val"]) | set(a["test"]) == set(groups)
    assert not set(a["train"]) & set(a["val"]) and not set(a["train"]) & set(a["test"])
    assert split_groups(groups, val_fraction=0.15, test_fraction=0.3, seed=2, where="x", unit="patient") != a
    with pytest.raises(DataError, match="x: found 2 subject"):
        split_groups(["a", "b"], val_fraction=0.1, test_fraction=0.1, seed=0, where="x", unit="subject")


def _bundle(images: np.ndarray, labels: np.ndarray | None = None, ids=None) -> DataBundle:
    n = len(images)
    s = Split(images, labels, ids or [f"i{k}" for k in range(n)])
    t = Split(images.copy(), None if labels is None else labels.copy(), [f"t{k}" for k in range(n)])
    v = Split(images.copy(), None if labels is None else labels.copy(), [f"v{k}" for k in range(n)])
    return DataBundle(s, v, t, 3, None, "x", "", False, False, images.shape[-1], {})


def test_validate_bundle_rejects_bad_output():
    good = np.full((2, 8, 8), 0.5, np.float32)
    validate_bundle(_bundle(good), "src")
    bad = good.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(DataError, match="src: train images contain NaN"):
        validate_bundle(_bundle(bad), "src")
    with pytest.raises(DataError, match=r"src: train images span \[1.5, 1.5\]; expected values in \[0, 1\]"):
        validate_bundle(_bundle(good + 1.0), "src")
    with pytest.raises(DataError, match="labels have shape"):
        validate_bundle(_bundle(good, np.zeros((2, 8, 7), np.uint8)), "src")
    with pytest.raises(DataError, match="src: the train split is empty"):
        validate_bundle(_bundle(good[:0], ids=[]), "src")
    with pytest.raises(DataError, match="labels reach 5; expected classes 0..2"):
        validate_bundle(_bundle(good, np.full((2, 8, 8), 5, np.uint8)), "src")
    with pytest.raises(DataError, match="slice id 'i0' occurs in train and again in train"):
        validate_bundle(_bundle(good, ids=["i0", "i0"]), "src")


# ------------------------------------------------------------------------------------------------------------
# augmentation


def test_augment_deterministic_and_bounded(odd_image):
    labels = (odd_image > 0.5).astype(np.uint8) * 3
    state = np.random.get_state()[1].copy()
    a1, l1 = aug.augment(odd_image, labels, np.random.default_rng(5))
    a2, l2 = aug.augment(odd_image, labels, np.random.default_rng(5))
    a3, _ = aug.augment(odd_image, labels, np.random.default_rng(6))
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # global RNG untouched
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(l1, l2)
    assert not np.array_equal(a1, a3)
    assert a1.dtype == np.float32 and 0.0 <= a1.min() and a1.max() <= 1.0
    assert set(np.unique(l1)) <= {0, 3}
    same, lab = aug.augment(odd_image, labels, np.random.default_rng(5), strength=0.0)
    np.testing.assert_allclose(same, odd_image, atol=1e-7)
    assert lab is labels


def test_warp_identity_at_zero_strength():
    coords = aug.warp_coordinates((9, 7), np.random.default_rng(0), 0.0)
    yy, xx = np.mgrid[0:9, 0:7]
    np.testing.assert_allclose(coords[0], yy, atol=1e-12)
    np.testing.assert_allclose(coords[1], xx, atol=1e-12)


def test_smooth_field_equals_2d_spline_zoom():
    from scipy import ndimage

    field = aug._smooth_field(np.random.default_rng(3), 6, (37, 31))
    coarse = np.random.default_rng(3).standard_normal((6, 6))
    ref = ndimage.zoom(coarse, (37 / 6, 31 / 6), order=3, mode="nearest", grid_mode=True)
    np.testing.assert_allclose(field, ref, atol=1e-12)


def test_rician_background_is_rayleigh():
    sigma = 0.05
    out = aug.rician(np.zeros((300, 300)), np.random.default_rng(1), sigma)
    assert out.mean() == pytest.approx(sigma * np.sqrt(np.pi / 2), rel=0.02)
    bright = aug.rician(np.full((300, 300), 0.8), np.random.default_rng(1), sigma)
    assert bright.mean() == pytest.approx(np.sqrt(0.8**2 + sigma**2), rel=0.01)


# ------------------------------------------------------------------------------------------------------------
# registry and load_data


def test_registry_lists_sources_with_smoke_params():
    assert {"mni-brain", "knee-phantom", "fastmri-knee", "freesurfer-brain", "arrays"} <= set(DATASETS.names())
    for name in DATASETS.names():
        assert isinstance(DATASETS.smoke_params(name), dict) and DATASETS.describe(name)
        DATASETS.check_params(name, DATASETS.smoke_params(name))


def test_load_data_config_errors(tmp_path):
    with pytest.raises(UnknownNameError, match="did you mean 'mni-brain'"):
        load_data("mni-brian", image_size=32, seed=0)
    with pytest.raises(ConfigError, match="has no parameter 'slice_stpe'.*did you mean 'slice_step'"):
        load_data("mni-brain", image_size=32, seed=0, params={"slice_stpe": 2})
    with pytest.raises(ConfigError, match="'image_size' is set by the data section"):
        load_data("mni-brain", image_size=32, seed=0, params={"image_size": 64})
    with pytest.raises(ConfigError, match=r"`n_train_copies >= 1` must hold, but got n_train_copies=0"):
        load_data("mni-brain", image_size=32, seed=0, params={"n_train_copies": 0})
    with pytest.raises(ConfigError, match="contrast must be one of PD, PDFS, both, but got 'T2'"):
        load_data("knee-phantom", image_size=32, seed=0, params={"contrast": "T2"})
    with pytest.raises(ConfigError, match="built in and takes no path"):
        load_data("mni-brain", image_size=32, seed=0, path=tmp_path)
    with pytest.raises(ConfigError, match="`image_size >= 8` must hold"):
        load_data("mni-brain", image_size=4, seed=0)


def test_detect_source(tmp_path):
    (tmp_path / "a.npz").touch()
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "x.h5").touch()
    (tmp_path / "b" / "s1").mkdir(parents=True)
    (tmp_path / "b" / "s1" / "norm.mgz").touch()
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "readme.txt").touch()
    assert detect_source(tmp_path / "a.npz") == "arrays"
    assert detect_source(tmp_path / "k") == "fastmri-knee"
    assert detect_source(tmp_path / "b") == "freesurfer-brain"
    with pytest.raises(DataError, match="c: cannot tell the data format"):
        detect_source(tmp_path / "c")
    with pytest.raises(DataError, match="zz: no such file or folder"):
        detect_source(tmp_path / "zz")


def _arrays_file(tmp_path: Path, n: int = 8) -> Path:
    rng = np.random.default_rng(0)
    imgs = rng.uniform(0.2, 1.0, (n, 12, 12)).astype(np.float32)
    f = tmp_path / "x.npy"
    np.save(f, imgs)
    return f


def test_path_as_source(tmp_path):
    f = _arrays_file(tmp_path)
    b = load_data(str(f), image_size=16, seed=0, cache_dir=False)
    assert b.source == "arrays" and sum(b.counts().values()) == 8


# ------------------------------------------------------------------------------------------------------------
# cache


def test_cache_round_trip_identical(tmp_path):
    f = _arrays_file(tmp_path)
    cache = tmp_path / "cache"
    a = load_data("arrays", image_size=16, seed=0, path=f, cache_dir=cache)
    b = load_data("arrays", image_size=16, seed=0, path=f, cache_dir=cache)
    assert a.meta["cache"]["hit"] is False and b.meta["cache"]["hit"] is True
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(a.splits[name].images, b.splits[name].images)
        assert a.splits[name].ids == b.splits[name].ids
    assert (a.n_classes, a.source, a.description, a.image_size) == (
        b.n_classes,
        b.source,
        b.description,
        b.image_size,
    )
    files = sorted(p.name for p in cache.iterdir())
    assert len(files) == 1 and files[0].startswith("arrays-") and files[0].endswith(".npz")  # no temp files left
    # other parameters or a changed input file -> another entry
    load_data("arrays", image_size=16, seed=1, path=f, cache_dir=cache)
    assert len(list(cache.iterdir())) == 2
    np.save(f, np.random.default_rng(9).uniform(0.2, 1.0, (9, 12, 12)).astype(np.float32))
    c = load_data("arrays", image_size=16, seed=0, path=f, cache_dir=cache)
    assert c.meta["cache"]["hit"] is False and sum(c.counts().values()) == 9


def test_cache_corrupt_file_is_rebuilt(tmp_path):
    f = _arrays_file(tmp_path)
    cache = tmp_path / "cache"
    a = load_data("arrays", image_size=16, seed=0, path=f, cache_dir=cache)
    entry = Path(a.meta["cache"]["file"])
    entry.write_bytes(entry.read_bytes()[:100])  # truncated
    b = load_data("arrays", image_size=16, seed=0, path=f, cache_dir=cache)
    assert b.meta["cache"]["hit"] is False
    np.testing.assert_array_equal(a.train.images, b.train.images)
    assert load_data("arrays", image_size=16, seed=0, path=f, cache_dir=cache).meta["cache"]["hit"] is True


def test_cache_env_root_and_unwritable(tmp_path, monkeypatch):
    f = _arrays_file(tmp_path)
    monkeypatch.setenv("HRBENCH_CACHE", str(tmp_path / "root"))
    b = load_data("arrays", image_size=16, seed=0, path=f)
    assert Path(b.meta["cache"]["file"]).parent == tmp_path / "root" / "data"
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    c = load_data("arrays", image_size=16, seed=0, path=f, cache_dir=blocker)  # cannot write: still loads
    assert "cache_error" in c.meta and sum(c.counts().values()) == 8


# ------------------------------------------------------------------------------------------------------------
# mni-brain (real MNI152 template from nilearn)


@pytest.fixture(scope="module")
def mni() -> DataBundle:
    return load_data(
        "mni-brain",
        image_size=64,
        seed=0,
        params={**DATASETS.smoke_params("mni-brain"), "n_train_copies": 2},
        cache_dir=False,
    )


@pytest.fixture(scope="module")
def mni_plain() -> DataBundle:
    return load_data(
        "mni-brain",
        image_size=256,
        seed=0,
        cache_dir=False,
        params={"augment": 0.0, "eval_augment": 0.0, "n_train_copies": 1, "max_slices": 2},
    )


def test_mni_slice_ranges_disjoint_with_gaps():
    r = slice_ranges()
    assert (len(r["train"]), len(r["val"]), len(r["test"])) == (71, 15, 15)
    assert min(r["train"]) == 15 and max(r["train"] + r["val"] + r["test"]) <= 145
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        gap = min(abs(x - y) for x in r[a] for y in r[b])
        assert gap >= 3, (a, b, gap)  # at least 2 unused slices (2 mm) between any two splits


def test_mni_smoke_bundle(mni):
    assert mni.single_subject and not mni.synthetic and "ONE averaged brain" in mni.description
    assert mni.n_classes == 4 and mni.class_names == ("background", "csf", "gray-matter", "white-matter")
    z = {name: {int(i.split("/")[1][1:]) for i in s.ids} for name, s in mni.splits.items()}
    assert not (z["train"] & z["val"]) and not (z["train"] & z["test"]) and not (z["val"] & z["test"])
    assert len(mni.train) == 2 * len(z["train"])  # two augmented copies per training slice
    for s in mni.splits.values():
        assert s.images.shape[1:] == (64, 64) and s.labels.shape == s.images.shape
        assert set(np.unique(s.labels)) == {0, 1, 2, 3}
    c0, c1 = mni.train.images[0], mni.train.images[1]  # same slice, two copies
    assert mni.train.ids[0].rsplit("/", 1)[0] == mni.train.ids[1].rsplit("/", 1)[0]
    assert np.abs(c0 - c1).mean() > 0.005


def test_mni_matches_nilearn_reference(mni_plain):
    from nilearn.datasets import load_mni152_gm_template, load_mni152_template, load_mni152_wm_template

    t1 = load_mni152_template(resolution=1).get_fdata()
    gm = load_mni152_gm_template(resolution=1).get_fdata()
    wm = load_mni152_wm_template(resolution=1).get_fdata()
    sid = mni_plain.test.ids[0]
    zz = int(sid.split("/")[1][1:])

    def ref(vol):  # anterior up: rows = y reversed; 233 x 197 padded centred into 256 x 256
        out = np.zeros((256, 256))
        out[11:244, 29:226] = vol[:, :, zz].T[::-1]
        return out

    a, g, w = ref(t1), ref(gm), ref(wm)
    np.testing.assert_allclose(mni_plain.test.images[0], a, atol=1e-6)
    brain = a > 0
    probs = np.stack([~brain, brain * np.clip(1 - g - w, 0, 1), brain * g, brain * w]).astype(float)
    np.testing.assert_array_equal(mni_plain.test.labels[0], probs.argmax(0))
    frac = np.bincount(mni_plain.test.labels[0].ravel(), minlength=4)[1:] / brain.sum()
    assert frac[1] > 0.3 and frac[2] > 0.15 and frac[0] > 0.01  # GM, WM, CSF all present inside the brain


# ------------------------------------------------------------------------------------------------------------
# knee-phantom (synthetic)


@pytest.fixture(scope="module")
def knee(tmp_path_factory) -> tuple[DataBundle, Path]:
    cache = tmp_path_factory.mktemp("knee-cache")
    params = {**DATASETS.smoke_params("knee-phantom")}
    return load_data("knee-phantom", image_size=48, seed=0, params=params, cache_dir=cache), cache


def test_knee_phantom_bundle(knee):
    b, _ = knee
    assert b.synthetic and not b.single_subject and "SYNTHETIC" in b.description
    subj = {name: {i.split("/")[0] for i in s.ids} for name, s in b.splits.items()}
    assert subj["train"] == {"knee-train000", "knee-train001"} and subj["test"] == {"knee-test000"}
    assert {i.split("/")[1] for i in b.train.ids} == {"PD", "PDFS"}  # "both": subjects alternate contrast
    for s in b.splits.values():
        assert s.images.shape[1:] == (48, 48) and s.labels.max() < b.n_classes
        # /99th percentile then clip: about 1 % of the pixels sit at 1.0
        sat = (s.images == 1.0).mean(axis=(1, 2))
        assert np.all((sat > 0.002) & (sat <= 0.0125))


def test_knee_phantom_cache_identical(knee):
    b, cache = knee
    again = load_data(
        "knee-phantom",
        image_size=48,
        seed=0,
        params=DATASETS.smoke_params("knee-phantom"),
        cache_dir=cache,
    )
    assert again.meta["cache"]["hit"] is True
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(b.splits[name].images, again.splits[name].images)
        np.testing.assert_array_equal(b.splits[name].labels, again.splits[name].labels)


def test_knee_phantom_subjects_depend_only_on_seed_split_index(knee):
    """Subject i of a split is rendered from rng([seed, split, i]): more test subjects never change training."""
    from hyperrecon.data.knee import render_subject

    b, _ = knee
    p = DATASETS.smoke_params("knee-phantom")
    images, labels, ids = render_subject((0, 0, 1, "PDFS", p["slices_per_subject"], 0.8, 48))
    first = [k for k, i in enumerate(b.train.ids) if i.startswith("knee-train001/")]
    assert ids == [b.train.ids[k] for k in first]
    np.testing.assert_array_equal(np.stack(images), b.train.images[first])
    np.testing.assert_array_equal(np.stack(labels), b.train.labels[first])


# ------------------------------------------------------------------------------------------------------------
# preview


def test_preview_png_and_summary(mni, knee, tmp_path):
    physics = pytest.importorskip("hyperrecon.physics")
    import matplotlib.image as mpimg

    fm = physics.FORWARD_MODELS.build("cs-mri", {"acceleration": 4.0}, image_shape=(64, 64))
    s = preview(mni, fm, tmp_path / "mni", n=3)
    png = Path(s["preview"])
    assert png.name == "preview.png" and mpimg.imread(png).shape[0] > 100
    assert [f.name for f in png.parent.iterdir()] == ["preview.png"]  # written atomically: no temp file left
    assert s["splits"]["train"]["count"] == len(mni.train) and s["splits"]["test"]["shape"] == [
        len(mni.test),
        64,
        64,
    ]
    assert 0 <= s["splits"]["val"]["min"] <= s["splits"]["val"]["mean"] <= s["splits"]["val"]["max"] <= 1
    assert s["n_classes"] == 4 and "ONE AVERAGED BRAIN" in s["notice"]
    mask = fm.mask_image()
    assert s["forward_model"]["acceleration_achieved"] == pytest.approx(mask.size / mask.sum(), rel=1e-6)
    assert len(s["shown"]) == min(3, len(mni.test)) and np.isfinite(s["input_psnr_db"])
    k = preview(knee[0], None, tmp_path / "knee", n=2)
    assert "SYNTHETIC" in k["notice"] and k["forward_model"] is None and Path(k["preview"]).is_file()


def preview(*args, **kw):
    from hyperrecon.data.preview import preview as _preview

    return _preview(*args, **kw)


def test_no_torch_in_data_package():
    code = "import sys, hyperrecon.data; sys.exit('torch' in sys.modules)"
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0


@pytest.mark.parametrize("name", DATASETS.names())
def test_dataset_params_are_one_frozen_dataclass(name):
    """Each dataset's parameters are defined once: the Params dataclass gives the signature the registry checks."""
    import dataclasses
    import inspect

    from hyperrecon.data.source import DatasetParams

    cls = DATASETS.get(name)
    assert issubclass(cls.Params, DatasetParams) and cls.Params.__dataclass_params__.frozen
    fields = {f.name: f.default for f in dataclasses.fields(cls.Params)}
    sig = inspect.signature(cls).parameters
    assert list(sig)[:4] == ["image_size", "seed", "path", "cache_dir"]
    assert {k: p.default for k, p in sig.items() if k not in ("image_size", "seed", "path", "cache_dir")} == fields
    with pytest.raises(dataclasses.FrozenInstanceError):
        cls.Params().__setattr__(next(iter(fields)), None)


def test_dataset_params_reach_the_source_and_the_cache_key():
    from hyperrecon.data.knee import KneePhantom, KneePhantomParams

    src = KneePhantom(image_size=32, seed=0, cache_dir=False, n_train=3, workers=2)
    assert src.p == KneePhantomParams(n_train=3, workers=2)
    assert "workers" not in src.params and src.params["n_train"] == 3  # workers do not change the arrays
    with pytest.raises(ConfigError, match="dataset 'knee-phantom': `n_train >= 1` must hold"):
        KneePhantom(image_size=32, seed=0, cache_dir=False, n_train=0)
    with pytest.raises(ConfigError, match="dataset 'knee-phantom' n_train: expected int, but got n_train=2.0"):
        DATASETS.check_params("knee-phantom", {"n_train": 2.0})
