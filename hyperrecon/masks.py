"""2-D variable-density Poisson-disc undersampling masks for CS-MRI, with a fully sampled calibration centre.

FFT-shift convention (the whole package): k-space arrays are **centred**, DC at index ``(H // 2, W // 2)``::

    k = fftshift(fft2(ifftshift(x), norm="ortho"))      x = fftshift(ifft2(ifftshift(k), norm="ortho"))

(shifts over the last two axes). Masks are stored in the same centred layout, so ``y = mask * k`` needs no shift.

Density (paper: "2nd-order polynomial" variable density, Lustig 2007 / Geethanath 2013). For pixel ``(i, j)``::

    r(i, j) = sqrt(((i - H//2) / (H/2))**2 + ((j - W//2) / (W/2))**2) / sqrt(2)      # 0 at DC, 1 at a corner
    d(i, j) = min(s / max(1 - r, 1e-3), max(H, W))                                  # local Poisson-disc radius

A maximal Poisson-disc set with radius ``d`` has about ``0.6 / d**2`` samples per pixel, so the sampling density
falls as the polynomial ``(1 - r)**2`` (Lustig's ``genPDF`` with p = 2) and saturates at 1 (every pixel) where
``d <= 1``. The scale ``s`` is the one free parameter: a bracketed bisection on ``log s`` (with log-log secant
steps, since n ~ 1/s**2) finds a mask with slightly more than ``n = H*W / R`` samples, and the few extra non-calibration
samples are then dropped at random. Removing samples cannot break the minimum-distance property, so the result is
still a Poisson-disc set and the achieved acceleration is ``H*W / n`` exactly (``n`` a whole number).

Sampling is random sequential acceptance in one random pixel order (drawn once per mask, so the sample count is
an almost monotone function of ``s``). The calibration square (``calib`` pixels per axis, centred on DC) is taken
first, whole; then a pixel ``q`` is taken unless an earlier sample ``p`` lies closer than ``min(d(p), d(q))``, so
pixels with ``d <= 1`` are always taken and any two samples are at least ``min(d(p), d(q))`` apart. The one Python
loop visits each pixel once with a fast scalar read and stamps a precomputed integer disc per accepted sample:
0.03-0.05 s per pass and 0.1-0.3 s per 256² mask (2-4 passes), instead of the 13-21 s of a pure-Python Bridson loop.

Feasibility. ``n`` is the whole number nearest to ``H*W / R`` that is at least the number of calibration pixels;
``R`` is feasible when ``H*W / n`` is within 3 % of ``R``. That always holds when ``H*W >= 17.5 * R`` and
``H*W / R >= calib_h * calib_w``. The default calibration is ``max(2, round(H/16)) x max(2, round(W/16))`` (clipped
to the image): 16x16 at 256², 4x4 at 64², 6x6 at 96², 2x2 at 37x31. With it the smallest feasible square is 4x4
for R = 4 (feasible at every size from 6x6) and 7x7 for R = 8 (every size from 11x11); from 17x17 on every
R in (1, 16] is feasible. (The smallest masks are little more than the calibration block.) Otherwise
:class:`~hyperrecon.errors.ConfigError` names the size and R.

Randomness comes only from ``numpy.random.default_rng(seed)``: the global numpy and torch generators are untouched.
Masks are cached on disk (``.npy``, written atomically) by shape, R, calibration, seed and :data:`ALGORITHM_VERSION`.
"""

from __future__ import annotations

import math
import numbers
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import ConfigError

#: Bump when the algorithm changes, so cached masks from an older version are not reused.
ALGORITHM_VERSION = 1
#: Allowed accelerations: ``R_MIN < R <= R_MAX``.
R_MIN, R_MAX = 1.0, 16.0
#: Largest relative gap allowed between the requested and the achieved acceleration.
R_TOLERANCE = 0.03

Shape = tuple[int, int]


def default_cache_dir() -> Path:
    """``$HRBENCH_CACHE/masks`` when the variable is set, else ``~/.cache/hrbench/masks``."""
    from .settings import cache_root

    return cache_root() / "masks"


def default_calib(shape: Shape) -> Shape:
    """Calibration square scaled with the image: 16x16 at 256², at least 2 per axis, at most the image."""
    return min(shape[0], max(2, round(shape[0] / 16))), min(shape[1], max(2, round(shape[1] / 16)))


def achieved_acceleration(mask: np.ndarray) -> float:
    """``R = H * W / n_sampled`` of a boolean mask ``(H, W)``; ``inf`` for an empty mask."""
    n = int(np.count_nonzero(mask))
    return float(mask.size) / n if n else math.inf


def _check_shape(shape: Sequence[int]) -> Shape:
    try:
        h, w = (int(v) for v in shape)
        ok = (h, w) == tuple(shape) and h >= 1 and w >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"mask shape: expected two positive integers (H, W), but got {shape!r}")
    return h, w


def _check_calib(calib: int | Sequence[int] | None, shape: Shape) -> Shape:
    if calib is None:
        return default_calib(shape)
    pair = (calib, calib) if isinstance(calib, int | np.integer) else tuple(calib)
    try:
        ch, cw = (int(v) for v in pair)
        ok = (ch, cw) == pair and 0 <= ch <= shape[0] and 0 <= cw <= shape[1]
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"mask calib: expected an integer or (h, w) pair within 0..{shape}, but got {calib!r}")
    return ch, cw


def target_samples(shape: Shape, acceleration: float, calib: Shape) -> int:
    """Number of samples for ``acceleration`` at ``shape``; ``ConfigError`` when R is not reachable (see module doc)."""
    h, w = shape
    real = isinstance(acceleration, numbers.Real) and not isinstance(acceleration, bool)
    if not (real and R_MIN < float(acceleration) <= R_MAX):
        raise ConfigError(f"mask acceleration: expected {R_MIN:g} < R <= {R_MAX:g}, but got R={acceleration!r}")
    r = float(acceleration)
    n_calib = calib[0] * calib[1]
    exact = h * w / r
    candidates = [n for n in (math.floor(exact), math.ceil(exact)) if n >= max(1, n_calib)]
    if not candidates:
        raise ConfigError(
            f"mask acceleration R={r:g} is not reachable at size {h}x{w}: it allows {exact:.1f} samples but the "
            f"{calib[0]}x{calib[1]} calibration centre needs {n_calib} (use a larger image, a smaller R or calib)"
        )
    n = min(candidates, key=lambda c: abs(h * w / c - r))
    if abs(h * w / n - r) > R_TOLERANCE * r:
        raise ConfigError(
            f"mask acceleration R={r:g} is not reachable at size {h}x{w} within {R_TOLERANCE:.0%}: the nearest is "
            f"R={h * w / n:.3f} with {n} samples (H*W >= {math.ceil(17.5 * r)} is always enough)"
        )
    return n


def _calib_box(shape: Shape, calib: Shape) -> tuple[slice, slice]:
    """Centred calibration slices; for even sizes the extra row/column falls before DC, as with fftshift."""
    (h, w), (ch, cw) = shape, calib
    return slice(h // 2 - ch // 2, h // 2 - ch // 2 + ch), slice(w // 2 - cw // 2, w // 2 - cw // 2 + cw)


def _normalised_radius(shape: Shape) -> np.ndarray:
    """``r`` of the module docstring, shape ``(H, W)``: 0 at DC, 1 at the corner ``(0, 0)`` of an even image."""
    h, w = shape
    ky = (np.arange(h) - h // 2) / (h / 2)
    kx = (np.arange(w) - w // 2) / (w / 2)
    return np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2) / math.sqrt(2)


class _DiscSampler:
    """Random sequential Poisson-disc acceptance over one fixed pixel order; ``run(s)`` -> sample flat indices.

    ``near[q]`` holds the squared distance from pixel ``q`` to the nearest accepted sample ``p`` whose disc
    ``|q - p| < d(p)`` contains it. A candidate ``q`` is refused when ``near[q] < d(q)²``, i.e. when some sample is
    closer than ``min(d(p), d(q))``: the symmetric rule, so one far sample with a huge disc cannot wipe out a
    dense region, and a dense-region pixel (``d < 1``) is never refused.
    """

    _FAR = np.iinfo(np.int32).max

    def __init__(self, shape: Shape, calib: Shape, order: np.ndarray) -> None:
        self.shape = shape
        self.falloff = 1.0 / np.maximum(1.0 - _normalised_radius(shape), 1e-3)  # d = s * falloff
        self.dmax = float(max(shape))
        cal = np.zeros(shape, dtype=bool)
        cal[_calib_box(shape, calib)] = True
        self.calib_flat = np.flatnonzero(cal).tolist()
        self.order = order[~cal.reshape(-1)[order]]  # calibration pixels are taken first, whole
        self._stencils: dict[int, tuple[int, np.ndarray]] = {}

    def _stencil(self, k: int) -> tuple[int, np.ndarray]:
        """Squared offsets ``dy² + dx²`` inside ``dy² + dx² < d²`` (far elsewhere); depends on ``k = ceil(d²)`` only."""
        if k not in self._stencils:
            rad = math.isqrt(k - 1)
            o = np.arange(-rad, rad + 1)
            sq = (o[:, None] ** 2 + o[None, :] ** 2).astype(np.int32)
            self._stencils[k] = rad, np.where(sq <= k - 1, sq, self._FAR).astype(np.int32)
        return self._stencils[k]

    def run(self, s: float) -> tuple[list[int], int]:
        """Flat indices of the samples for scale ``s``, and how many lead the list as calibration or ``d <= 1``."""
        h, w = self.shape
        d2 = np.minimum(s * self.falloff, self.dmax) ** 2
        keys = np.ceil(d2).astype(np.int64).reshape(-1)
        pad = math.isqrt(int(keys.max()) - 1) if keys.max() > 1 else 0
        wp = w + 2 * pad
        near = np.full((h + 2 * pad, wp), self._FAR, dtype=np.int32)
        # a view: fast scalar reads of what the stamps write (numpy types ndarray.__buffer__ for Python >= 3.12)
        look = memoryview(near.reshape(-1))  # type: ignore[arg-type]
        taken = list(self.calib_flat)
        # Pixels with d <= 1 are never refused and block nothing: take them all, outside the loop.
        loose = keys[self.order] > 1
        taken += self.order[~loose].tolist()
        order = self.order[loose].tolist()
        n_fixed = len(taken)
        d2_list, keys_list = d2.reshape(-1).tolist(), keys.tolist()
        stencils = self._stencils

        def stamp(y: int, x: int, k: int) -> None:
            if k not in stencils:
                self._stencil(k)
            rad, st = stencils[k]
            win = near[y + pad - rad : y + pad + rad + 1, x + pad - rad : x + pad + rad + 1]
            np.minimum(win, st, out=win)

        for idx in self.calib_flat:
            if keys_list[idx] > 1:
                y, x = divmod(idx, w)
                stamp(y, x, keys_list[idx])
        for idx in order:
            y, x = divmod(idx, w)
            if look[(y + pad) * wp + x + pad] < d2_list[idx]:
                continue
            taken.append(idx)
            stamp(y, x, keys_list[idx])
        return taken, n_fixed


def _model_scale(sampler: _DiscSampler, n_target: int, kappa: float = 0.62) -> float:
    """First guess for ``s``: solve ``sum_p min(1, kappa / d_p²) = n_target`` (``kappa`` fitted on 37x31 ... 256²)."""
    lo, hi = 1e-4, sampler.dmax
    for _ in range(40):
        mid = math.sqrt(lo * hi)
        d2 = np.minimum(mid * sampler.falloff, sampler.dmax) ** 2
        if np.minimum(1.0, kappa / d2).sum() >= n_target:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


def _search_scale(sampler: _DiscSampler, n_target: int) -> tuple[list[int], int]:
    """Smallest-excess sample set with at least ``n_target`` samples, by bracketed bisection on ``log s``.

    ``n(s)`` falls with ``s`` (about as ``1/s²`` where not saturated). The first ``s`` comes from a density model;
    each later step extrapolates with ``n ~ 1/s²`` (while one bracket end is still the trivial one) or takes the
    log-log secant through the bracket ends, kept in the middle 80 % of the bracket. Stops once
    the excess is within 1 % (or 2 samples), or after 30 passes (about 0.03-0.05 s each at 256²).
    """
    h, w = sampler.shape
    tol = max(2, n_target // 100)
    lo, n_lo = 1e-4, h * w  # s = 1e-4 gives d < 1 everywhere: every pixel
    hi, n_hi = sampler.dmax, len(sampler.calib_flat)  # d = max(H, W) everywhere: the calibration block only
    if n_hi >= n_target:
        return sampler.run(hi)[0], n_hi
    best: tuple[list[int], int] | None = None
    s, trivial_lo, trivial_hi = _model_scale(sampler, n_target), True, True
    for _ in range(30):
        taken, n_fixed = sampler.run(s)
        n = len(taken)
        if n >= n_target:
            lo, n_lo, trivial_lo = s, n, False
            if best is None or n < len(best[0]):
                best = taken, n_fixed
            if n - n_target <= tol:
                break
        else:
            hi, n_hi, trivial_hi = s, n, False
        a, b = math.log(lo), math.log(hi)
        if trivial_lo or trivial_hi:  # one real end: extrapolate n ~ 1/s² towards the middle of the tolerance
            step = math.log(s) + 0.5 * math.log(max(n, 1) / (n_target + tol / 2))
            s = math.exp(step) if a < step < b else math.exp((a + b) / 2)
        else:  # log-log secant through the bracket ends, kept off them
            t = (math.log(n_target + tol / 2) - math.log(n_lo)) / (math.log(max(n_hi, 1)) - math.log(n_lo))
            s = math.exp(a + min(max(t, 0.1), 0.9) * (b - a))
    if best is None:  # 30 passes never reached n_target (not seen): the low end takes every pixel
        best = sampler.run(1e-4)
    return best


def _generate(shape: Shape, n_target: int, calib: Shape, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sampler = _DiscSampler(shape, calib, rng.permutation(shape[0] * shape[1]))
    found, n_fixed = _search_scale(sampler, n_target)
    taken = np.asarray(found, dtype=np.int64)
    extra = len(taken) - n_target
    if extra > 0:
        # Drop a few samples at random, outside the calibration block and, when there are enough, outside the
        # saturated d <= 1 zone (both lead the list): distances only grow and the density keeps its shape.
        first = n_fixed if len(taken) - n_fixed >= extra else len(sampler.calib_flat)
        drop = rng.choice(len(taken) - first, size=extra, replace=False) + first
        taken = np.delete(taken, drop)
    mask = np.zeros(shape[0] * shape[1], dtype=bool)
    mask[taken] = True
    return mask.reshape(shape)


def _cache_path(cache_dir: Path, shape: Shape, acceleration: float, calib: Shape, seed: int) -> Path:
    r = format(float(acceleration), ".12g")
    name = f"poisson-v{ALGORITHM_VERSION}_{shape[0]}x{shape[1]}_R{r}_calib{calib[0]}x{calib[1]}_seed{seed}.npy"
    return cache_dir / name


def _load(path: Path, shape: Shape, n_target: int) -> np.ndarray | None:
    try:
        mask = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None  # missing or damaged: regenerate (and overwrite)
    ok = mask.dtype == bool and mask.shape == shape and int(np.count_nonzero(mask)) == n_target
    return mask if ok else None


def _save(path: Path, mask: np.ndarray) -> None:
    """Atomic write: a temporary file in the same folder, then ``os.replace``. Cache failures are not fatal."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, mask, allow_pickle=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        pass  # read-only or full cache folder: the mask is still returned, just not remembered


def poisson_disc_mask(
    shape: Sequence[int],
    acceleration: float,
    *,
    calib: int | Sequence[int] | None = None,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
) -> np.ndarray:
    """Centred variable-density Poisson-disc mask, boolean ``(H, W)``, with ``H*W / mask.sum()`` ≈ ``acceleration``.

    ``calib``: side of the fully sampled centre, an int or ``(h, w)``; default :func:`default_calib`.
    ``seed``: seeds this mask's own ``numpy.random.Generator`` (global RNGs untouched).
    ``cache_dir``: where masks are cached; default :func:`default_cache_dir`.
    Raises ``ConfigError`` for a bad shape or calib, R outside (1, 16], or an R not reachable at this size.
    """
    shp = _check_shape(shape)
    cal = _check_calib(calib, shp)
    n_target = target_samples(shp, acceleration, cal)
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"mask seed: expected a non-negative integer, but got {seed!r}")
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = _cache_path(folder, shp, acceleration, cal, int(seed))
    mask = _load(path, shp, n_target)
    if mask is None:
        mask = _generate(shp, n_target, cal, int(seed))
        _save(path, mask)
    return mask
