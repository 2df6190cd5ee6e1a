"""Variable-density Poisson-disc masks: acceleration, calibration centre, density, determinism, RNG, cache."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from hyperrecon import masks
from hyperrecon.errors import ConfigError
from hyperrecon.masks import achieved_acceleration, default_calib, poisson_disc_mask


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "masks"


@pytest.mark.parametrize("shape", [(256, 256), (64, 64), (96, 96), (37, 31), (31, 40)])
@pytest.mark.parametrize("r", [4.0, 8.0])
def test_acceleration_within_3_percent(shape: tuple[int, int], r: float, cache: Path) -> None:
    mask = poisson_disc_mask(shape, r, cache_dir=cache)
    assert mask.shape == shape and mask.dtype == bool
    assert abs(achieved_acceleration(mask) - r) <= 0.03 * r
    # n is the whole number nearest to H*W / R: the best any mask can do
    assert abs(int(mask.sum()) - shape[0] * shape[1] / r) <= 1


@pytest.mark.parametrize("r", [1.05, 2.0, 3.21, 7.31, 12.0, 16.0])
def test_other_accelerations(r: float, cache: Path) -> None:
    mask = poisson_disc_mask((64, 48), r, cache_dir=cache)
    assert abs(achieved_acceleration(mask) - r) <= 0.03 * r


def test_achieved_acceleration_hand_cases() -> None:
    m = np.zeros((4, 4), dtype=bool)
    m[0, :] = True
    assert achieved_acceleration(m) == 4.0
    m[1, :2] = True
    assert achieved_acceleration(m) == pytest.approx(16 / 6)
    assert achieved_acceleration(np.zeros((3, 3), dtype=bool)) == math.inf


@pytest.mark.parametrize("shape", [(256, 256), (64, 64), (37, 31), (30, 45)])
def test_centre_fully_sampled_and_centred(shape: tuple[int, int], cache: Path) -> None:
    h, w = shape
    mask = poisson_disc_mask(shape, 8.0, cache_dir=cache)
    ch, cw = default_calib(shape)
    assert mask[h // 2 - ch // 2 : h // 2 - ch // 2 + ch, w // 2 - cw // 2 : w // 2 - cw // 2 + cw].all()
    assert mask[h // 2, w // 2]  # DC, centred convention
    assert default_calib((256, 256)) == (16, 16) and default_calib((37, 31)) == (2, 2)


def test_custom_calibration(cache: Path) -> None:
    mask = poisson_disc_mask((64, 64), 4.0, calib=(10, 6), cache_dir=cache)
    assert mask[27:37, 29:35].all()
    none = poisson_disc_mask((64, 64), 4.0, calib=0, cache_dir=cache)
    assert abs(achieved_acceleration(none) - 4.0) <= 0.12


def test_density_falls_with_radius(cache: Path) -> None:
    mask = poisson_disc_mask((256, 256), 8.0, cache_dir=cache)
    yy, xx = np.mgrid[0:256, 0:256]
    r = np.hypot((yy - 128) / 128, (xx - 128) / 128) / math.sqrt(2)
    bands = [(0.0, 0.1), (0.1, 0.25), (0.25, 0.45), (0.45, 0.7), (0.7, 1.01)]
    density = [mask[(r >= a) & (r < b)].mean() for a, b in bands]
    assert all(d1 > d2 for d1, d2 in zip(density, density[1:], strict=False)), density
    assert density[-1] > 0  # the periphery is sampled too, just sparsely


def test_minimum_distance_in_the_periphery(cache: Path) -> None:
    """Outside the saturated centre no two samples are neighbours (8-connected): it is a Poisson-disc set."""
    mask = poisson_disc_mask((256, 256), 8.0, cache_dir=cache)
    yy, xx = np.mgrid[0:256, 0:256]
    outer = np.hypot((yy - 128) / 128, (xx - 128) / 128) / math.sqrt(2) > 0.5
    pts = np.argwhere(mask & outer)
    occupied = set(map(tuple, pts.tolist()))
    for dy, dx in [(0, 1), (1, 0), (1, 1), (1, -1)]:
        assert not any((y + dy, x + dx) in occupied for y, x in occupied)


def _reference_rsa(shape, calib, order, s):
    """Plain O(n²) random sequential acceptance with the documented rule, for comparison with the fast loop."""
    h, w = shape
    ky = (np.arange(h) - h // 2) / (h / 2)
    kx = (np.arange(w) - w // 2) / (w / 2)
    r = np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2) / math.sqrt(2)
    d = np.minimum(s / np.maximum(1 - r, 1e-3), max(h, w)).reshape(-1)
    cal = np.zeros(shape, dtype=bool)
    ch, cw = calib
    cal[h // 2 - ch // 2 : h // 2 - ch // 2 + ch, w // 2 - cw // 2 : w // 2 - cw // 2 + cw] = True
    taken = list(np.flatnonzero(cal))
    for q in order:
        if cal.reshape(-1)[q]:
            continue
        qy, qx = divmod(int(q), w)
        if all(math.hypot(qy - p // w, qx - p % w) >= min(d[p], d[q]) for p in taken):
            taken.append(int(q))
    return sorted(int(t) for t in taken)


@pytest.mark.parametrize("shape,s", [((24, 24), 0.9), ((19, 27), 1.3), ((16, 16), 2.5)])
def test_fast_loop_matches_reference(shape, s) -> None:
    order = np.random.default_rng(3).permutation(shape[0] * shape[1])
    calib = default_calib(shape)
    fast, _ = masks._DiscSampler(shape, calib, order).run(s)
    assert sorted(fast) == _reference_rsa(shape, calib, order, s)


def test_deterministic_for_a_seed_and_seeds_differ(tmp_path: Path) -> None:
    a = poisson_disc_mask((64, 64), 4.0, seed=7, cache_dir=tmp_path / "a")
    b = poisson_disc_mask((64, 64), 4.0, seed=7, cache_dir=tmp_path / "b")  # separate caches: both generated
    c = poisson_disc_mask((64, 64), 4.0, seed=8, cache_dir=tmp_path / "a")
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.sum() == c.sum()


def test_global_rng_untouched(cache: Path) -> None:
    np.random.seed(11)
    torch.manual_seed(11)
    random.seed(11)
    np_state, torch_state, py_state = np.random.get_state(), torch.get_rng_state(), random.getstate()
    poisson_disc_mask((48, 48), 4.0, seed=3, cache_dir=cache)
    after = np.random.get_state()
    assert all(np.array_equal(x, y) for x, y in zip(np_state, after, strict=True))
    assert torch.equal(torch_state, torch.get_rng_state())
    assert py_state == random.getstate()


def test_cache_hit_and_regeneration(cache: Path) -> None:
    first = poisson_disc_mask((40, 40), 4.0, seed=1, cache_dir=cache)
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npy"  # no temporary file left behind
    assert np.array_equal(np.load(files[0]), first)
    # The cache is read: a different (valid) mask planted under the same name comes back.
    planted = np.roll(first, 3, axis=1)
    np.save(files[0], planted)
    assert np.array_equal(poisson_disc_mask((40, 40), 4.0, seed=1, cache_dir=cache), planted)
    # Deleted or damaged cache: regenerated, identical to the first mask, and written again.
    files[0].unlink()
    assert np.array_equal(poisson_disc_mask((40, 40), 4.0, seed=1, cache_dir=cache), first)
    files[0].write_bytes(b"not a numpy file")
    assert np.array_equal(poisson_disc_mask((40, 40), 4.0, seed=1, cache_dir=cache), first)
    assert np.array_equal(np.load(files[0]), first)


def test_cache_key_separates_parameters(cache: Path) -> None:
    poisson_disc_mask((32, 32), 4.0, seed=0, cache_dir=cache)
    poisson_disc_mask((32, 32), 4.0, seed=1, cache_dir=cache)
    poisson_disc_mask((32, 32), 8.0, seed=0, cache_dir=cache)
    poisson_disc_mask((32, 32), 4.0, calib=4, seed=0, cache_dir=cache)
    poisson_disc_mask((32, 34), 4.0, seed=0, cache_dir=cache)
    assert len(list(cache.glob("*.npy"))) == 5
    assert all(f"v{masks.ALGORITHM_VERSION}" in p.name for p in cache.glob("*.npy"))


def test_cache_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HRBENCH_CACHE", str(tmp_path / "env"))
    assert masks.default_cache_dir() == tmp_path / "env" / "masks"
    poisson_disc_mask((32, 32), 4.0)
    assert len(list((tmp_path / "env" / "masks").glob("*.npy"))) == 1
    monkeypatch.delenv("HRBENCH_CACHE")
    assert masks.default_cache_dir() == Path.home() / ".cache" / "hrbench" / "masks"


def test_unwritable_cache_still_returns_a_mask(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where the folder should be
    mask = poisson_disc_mask((32, 32), 4.0, cache_dir=blocker / "masks")
    assert achieved_acceleration(mask) == 4.0


@pytest.mark.parametrize("r", [1.0, 0.5, 16.5, 20, float("nan"), "4", True, None])
def test_invalid_acceleration(r, cache: Path) -> None:
    with pytest.raises(ConfigError, match="acceleration"):
        poisson_disc_mask((64, 64), r, cache_dir=cache)


@pytest.mark.parametrize(
    "shape,r,calib",
    [((5, 5), 4.0, None), ((6, 6), 8.0, None), ((1, 1), 2.0, None), ((64, 64), 8.0, 40), ((10, 10), 16.0, 3)],
)
def test_unreachable_acceleration_names_size(shape, r, calib, cache: Path) -> None:
    with pytest.raises(ConfigError, match=f"{shape[0]}x{shape[1]}") as err:
        poisson_disc_mask(shape, r, calib=calib, cache_dir=cache)
    assert "\n" not in str(err.value)


def test_smallest_documented_sizes(cache: Path) -> None:
    assert achieved_acceleration(poisson_disc_mask((4, 4), 4.0, cache_dir=cache)) == 4.0
    assert abs(achieved_acceleration(poisson_disc_mask((7, 7), 8.0, cache_dir=cache)) - 8) <= 0.24
    for n in range(17, 24):  # every R in (1, 16] from 17x17 on
        for r in np.linspace(1.01, 16, 60):
            masks.target_samples((n, n), float(r), default_calib((n, n)))


@pytest.mark.parametrize(
    "kwargs",
    [{"shape": (0, 8)}, {"shape": (8,)}, {"shape": "ab"}, {"calib": (70, 2)}, {"calib": -1}, {"seed": -1}],
)
def test_bad_arguments(kwargs, cache: Path) -> None:
    args = {"shape": (64, 64), "acceleration": 4.0, "cache_dir": cache, **kwargs}
    with pytest.raises(ConfigError):
        poisson_disc_mask(**args)
