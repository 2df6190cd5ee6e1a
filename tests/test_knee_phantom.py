"""Tests of the procedural coronal knee phantom (small sizes keep them fast)."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
from scipy import ndimage

from hyperrecon.data.knee_phantom import (
    CONTRASTS,
    LABELS,
    KneeSubject,
    noise_sigma,
    render_slice,
    sample_subject,
)
from hyperrecon.errors import ConfigError

BG, BONE, CART, FIB, SOFT, FAT = (LABELS.index(n) for n in LABELS)


def subject(seed: int) -> KneeSubject:
    return sample_subject(np.random.default_rng(seed))


def render(seed: int, position: float = 0.0, contrast: str = "PD", slice_seed: int = 0, size: int = 96):
    return render_slice(subject(seed), position, contrast, np.random.default_rng(slice_seed), size=size)


# SHA-256 of the magnitude and label bytes of 7 positions x 2 contrasts at 64 px per subject seed, computed from the
# renderer before it was split into one painter per structure (commit cf1b57e, numpy 2.4.6, x86-64): the split must
# not change a single bit. Seeds cover both leg sides and a Baker's cyst (1, 7). A new numpy or CPU could in
# principle change float32 ULPs of np.exp/np.sin (SIMD kernels); the other tests here then tell shape changes apart.
GOLDEN_POSITIONS = (-0.95, -0.6, -0.2, 0.0, 0.3, 0.6, 0.9)
GOLDEN = {
    0: "53c1338013c115dd32e837e414ca043ea42dc602027d31c1fc0ab94bf262e867",
    1: "14b16ea42bc889615d0330ece90ce6a056fc9da0e94b2014208dbe17826a90d1",
    2: "767ad5856216f35cfa0f209493f9e78f33165d25d1ffd695331c3a27939a5f1e",
    3: "bcb6a19df2a5067f18dd238184250c24689e794cd356f02f40fc37eb4fba0e72",
    7: "19f4b8439b255f549a41bdb548e71127936606ac4a91dc82c04286604ffe203d",
    42: "d52f4288a36e17ed09c8510548487024d228517e3b8569bdd4f81acab015cd0a",
}


@pytest.mark.parametrize("seed", sorted(GOLDEN))
def test_rendering_is_bit_identical_to_the_recorded_phantom(seed):
    digest = hashlib.sha256()
    for position in GOLDEN_POSITIONS:
        for contrast in CONTRASTS:
            image, labels = render_slice(subject(seed), position, contrast, np.random.default_rng([seed, 7]), size=64)
            digest.update(image.tobytes())
            digest.update(labels.tobytes())
    assert digest.hexdigest() == GOLDEN[seed]


def test_labels_are_documented():
    assert LABELS == ("background", "bone", "cartilage", "meniscus/ligament", "muscle/soft tissue", "fat")
    assert CONTRASTS == ("PD", "PDFS")


@pytest.mark.parametrize("size", [96, 128])
def test_shapes_and_dtypes(size):
    img, lab = render(0, 0.2, "PDFS", size=size)
    assert img.shape == lab.shape == (size, size)
    assert img.dtype == np.float32 and lab.dtype == np.uint8
    assert np.isfinite(img).all() and img.min() >= 0.0
    assert lab.max() < len(LABELS)


def test_deterministic_for_a_seed():
    assert subject(3) == subject(3)
    a = render(3, 0.1, "PD", slice_seed=5)
    b = render(3, 0.1, "PD", slice_seed=5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    # another slice rng changes noise and warp, not the anatomy much
    c = render(3, 0.1, "PD", slice_seed=6)
    assert not np.array_equal(a[0], c[0])
    assert np.mean(a[1] == c[1]) > 0.8


def test_different_subjects_differ():
    s0, s1 = subject(0), subject(1)
    assert s0 != s1
    _, l0 = render(0)
    _, l1 = render(1)
    assert np.mean(l0 != l1) > 0.1
    assert abs(np.mean(l0 == BONE) - np.mean(l1 == BONE)) > 0.005 or np.mean((l0 == BONE) != (l1 == BONE)) > 0.05


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_central_slice_covers_all_classes(seed):
    _, lab = render(seed, 0.0, size=128)
    counts = np.bincount(lab.ravel(), minlength=len(LABELS))
    assert (counts > 0).all(), dict(zip(LABELS, counts.tolist(), strict=True))
    # bone is the largest class near the joint, cartilage and fibrous tissue are thin but present
    assert counts[BONE] > 0.15 * lab.size
    assert counts[CART] > 30 and counts[FIB] > 30


def test_cartilage_sits_between_femur_and_tibia():
    _, lab = render(4, 0.0, size=128)
    cols = np.where((lab == CART).any(axis=0))[0]
    c = int(np.median(cols))
    col = lab[:, c]
    rows_bone = np.where(col == BONE)[0]
    rows_cart = np.where(col == CART)[0]
    # along a central column: bone (femur) above, cartilage, bone (tibia) below
    assert rows_bone.min() < rows_cart.min() and rows_cart.max() < rows_bone.max()


def _tissue_means(img, lab):
    return {k: float(img[lab == k].mean()) for k in (FAT, SOFT, BONE)}


def test_fat_suppression_darkens_fat_and_marrow():
    s = subject(5)
    img_pd, lab_pd = render_slice(s, 0.0, "PD", np.random.default_rng(1), size=128)
    img_fs, lab_fs = render_slice(s, 0.0, "PDFS", np.random.default_rng(1), size=128)
    np.testing.assert_array_equal(lab_pd, lab_fs)  # same anatomy, only the contrast changes
    pd = _tissue_means(img_pd, lab_pd)
    fs = _tissue_means(img_fs, lab_fs)
    assert fs[FAT] < 0.3 * pd[FAT]
    assert pd[FAT] > 1.6 * pd[SOFT]  # PD: fat bright, muscle (and fluid, skin) intermediate
    assert fs[FAT] < fs[SOFT]  # PDFS: fat darker than muscle
    assert fs[BONE] < 0.3 * pd[BONE]  # fatty marrow is suppressed too


def test_pdfs_has_lower_snr():
    s = subject(6)
    snr = {}
    for con in CONTRASTS:
        img, lab = render_slice(s, 0.0, con, np.random.default_rng(2), size=96)
        snr[con] = img[lab == SOFT].mean() / noise_sigma(s, con)
    assert snr["PDFS"] < 0.8 * snr["PD"]


def test_background_noise_is_rician():
    """Far from tissue the magnitude of complex Gaussian noise is Rayleigh: mean sigma*sqrt(pi/2), E[m^2] = 2
    sigma^2.
    """
    values, sigmas = [], []
    for seed in range(3):
        s = subject(seed)
        for con in CONTRASTS:
            img, lab = render_slice(s, 0.0, con, np.random.default_rng(10 + seed), size=128)
            # distance to tissue with the columns periodic (the k-space filter wraps around left/right)
            far = ndimage.distance_transform_edt(np.tile(lab == BG, (1, 3)))[:, 128:256] > 6
            values.append(img[far])
            sigmas.append(np.full(far.sum(), noise_sigma(s, con)))
    m, sig = np.concatenate(values), np.concatenate(sigmas)
    assert m.size > 2000 and m.min() > 0.0
    ratios_mean = m.mean() / np.mean(sig * math.sqrt(math.pi / 2))
    ratios_m2 = np.mean(m**2) / np.mean(2 * sig**2)
    assert ratios_mean == pytest.approx(1.0, abs=0.05)
    assert ratios_m2 == pytest.approx(1.0, abs=0.08)


def test_noise_sigma_matches_subject():
    s = subject(7)
    assert noise_sigma(s, "PD") == pytest.approx(s.noise)
    assert 0 < noise_sigma(s, "PDFS") < noise_sigma(s, "PD")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ends_have_less_bone_than_centre(seed):
    bone = {p: np.mean(render(seed, p)[1] == BONE) for p in (-0.95, -0.5, 0.0, 0.5, 0.95)}
    assert bone[-0.95] < 0.5 * bone[0.0]
    assert bone[0.95] < 0.5 * bone[0.0]
    assert bone[-0.5] < bone[0.0] * 1.05 and bone[0.5] < bone[0.0]


def test_fibula_appears_posterior_lateral_only():
    for seed in range(4):
        s = subject(seed)
        _, central = render_slice(s, 0.0, "PD", np.random.default_rng(0), size=128)
        _, post = render_slice(s, 0.6, "PD", np.random.default_rng(0), size=128)
        comp_c, n_c = ndimage.label(central == BONE)
        comp_p, n_p = ndimage.label(post == BONE)
        assert n_c == 2  # femur and tibia
        sizes = ndimage.sum(np.ones_like(comp_p), comp_p, index=range(1, n_p + 1))
        big = [i + 1 for i, a in enumerate(sizes) if a > 40]
        assert len(big) >= 3  # + fibula
        # the fibula is the big component lowest in the image; it lies on the subject's lateral side
        centroids = ndimage.center_of_mass(post == BONE, comp_p, big)
        fib = max(centroids, key=lambda rc: rc[0])
        tibia_col = ndimage.center_of_mass(central == BONE, comp_c, 2)[1]
        assert np.sign(fib[1] - tibia_col) == s.lateral_sign


def test_global_numpy_rng_untouched():
    np.random.seed(1234)
    state = np.random.get_state()
    s = subject(8)
    render_slice(s, -0.3, "PDFS", np.random.default_rng(0), size=64)
    after = np.random.get_state()
    assert state[0] == after[0] and np.array_equal(state[1], after[1]) and state[2:] == after[2:]


def test_texture_cache_is_per_size():
    s = subject(9)
    small = render_slice(s, 0.0, "PD", np.random.default_rng(0), size=64)[1]
    big = render_slice(s, 0.0, "PD", np.random.default_rng(0), size=128)[1]
    # same field of view: downsampled big labels agree with the small ones on most pixels
    assert np.mean(big[::2, ::2] == small) > 0.85


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"contrast": "T1"}, "contrast"),
        ({"position": 1.5}, "position"),
        ({"size": 8}, "size"),
        ({"size": 64.0}, "size"),
        ({"rng": 3}, "rng"),
    ],
)
def test_bad_input_raises_config_error(kwargs, match):
    args = {
        "subject": subject(0),
        "position": 0.0,
        "contrast": "PD",
        "rng": np.random.default_rng(0),
        "size": 64,
    }
    args.update(kwargs)
    with pytest.raises(ConfigError, match=match) as err:
        render_slice(**args)
    assert "\n" not in str(err.value)


def test_sample_subject_needs_generator():
    with pytest.raises(ConfigError, match="Generator"):
        sample_subject(0)  # type: ignore[arg-type]


def test_subject_parameters_are_plausible():
    subs = [subject(i) for i in range(20)]
    widths = [2 * (s.notch_hw + s.condyle_rx_med + s.condyle_rx_lat) * s.scale for s in subs]
    assert 60 < min(widths) and max(widths) < 100  # bicondylar width in mm
    assert {s.lateral_sign for s in subs} == {-1, 1}
    assert len({s.texture_seed for s in subs}) == 20
