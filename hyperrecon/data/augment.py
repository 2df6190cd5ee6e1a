"""Per-sample MRI-like augmentation: smooth elastic warp + small affine, multiplicative bias field, Rician noise.

Used to turn the single MNI152 average brain into many distinct training samples. All randomness comes from the
``numpy.random.Generator`` passed in (the global RNG is never touched), so a (seed, slice, copy) triple always
gives the same sample. ``strength`` scales every effect linearly; 0 returns the input unchanged.

At ``strength = 1`` for a 256² slice (lengths scale with the image side):

- warp: displacement = bicubic upsampling of a 6x6 grid of N(0, 3 px) offsets per axis, plus rotation
  U(-5°, 5°), isotropic scale U(0.95, 1.05) and shift U(-4, 4) px; bilinear for the image, nearest for labels.
- bias field: ``exp(0.25 * f)`` with ``f`` a bicubically upsampled 4x4 N(0, 1) grid, rescaled to max |f| = 1.
- Rician noise: ``sqrt((x + n1)^2 + n2^2)`` with n1, n2 ~ N(0, 0.02^2) (magnitude of complex Gaussian noise).

Afterwards the slice is divided by max(1, its 99.9th percentile) and clipped to [0, 1], so a bright bias field
does not saturate white matter.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import ndimage

WARP_PX = 3.0
WARP_GRID = 6
ROT_DEG = 5.0
SCALE = 0.05
SHIFT_PX = 4.0
BIAS = 0.25
BIAS_GRID = 4
NOISE = 0.02


@lru_cache(maxsize=32)
def _upsampler(grid: int, n: int) -> np.ndarray:
    """(n, grid) matrix of 1-D cubic-spline upsampling (``ndimage.zoom`` order 3) applied to unit vectors.

    Spline zoom is linear and separable, so ``U_h @ C @ U_w.T`` equals the 2-D zoom of ``C`` at a fraction of
    the cost (two small matrix products instead of a 2-D spline evaluation per field).
    """
    eye = np.eye(grid)
    cols = [ndimage.zoom(e, n / grid, order=3, mode="nearest", grid_mode=True)[:n] for e in eye]
    return np.stack(cols, axis=1)


def _smooth_field(rng: np.random.Generator, grid: int, shape: tuple[int, int]) -> np.ndarray:
    """Bicubic upsampling of a ``grid x grid`` N(0,1) lattice to ``shape`` (H, W)."""
    coarse = rng.standard_normal((grid, grid))
    return _upsampler(grid, shape[0]) @ coarse @ _upsampler(grid, shape[1]).T


def warp_coordinates(shape: tuple[int, int], rng: np.random.Generator, strength: float) -> np.ndarray:
    """Sampling coordinates ``(2, H, W)`` for ``ndimage.map_coordinates``: affine about the centre + elastic."""
    h, w = shape
    scale_px = max(h, w) / 256.0
    theta = np.deg2rad(rng.uniform(-ROT_DEG, ROT_DEG) * strength)
    s = 1.0 + rng.uniform(-SCALE, SCALE) * strength
    shift = rng.uniform(-SHIFT_PX, SHIFT_PX, size=2) * strength * scale_px
    dy = _smooth_field(rng, WARP_GRID, shape) * WARP_PX * strength * scale_px
    dx = _smooth_field(rng, WARP_GRID, shape) * WARP_PX * strength * scale_px
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    y0, x0 = yy - cy, xx - cx
    c, sn = np.cos(theta) / s, np.sin(theta) / s  # inverse map: output pixel -> input position
    ys = c * y0 - sn * x0 + cy + shift[0] + dy
    xs = sn * y0 + c * x0 + cx + shift[1] + dx
    return np.stack([ys, xs])


def bias_field(shape: tuple[int, int], rng: np.random.Generator, strength: float) -> np.ndarray:
    """Smooth positive multiplicative field (H, W), ``exp(BIAS * strength * f)`` with max |f| = 1."""
    f = _smooth_field(rng, BIAS_GRID, shape)
    f = f / max(float(np.abs(f).max()), 1e-8)
    return np.exp(BIAS * strength * f)


def rician(image: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Magnitude of ``image + complex N(0, sigma^2)`` noise (Rician for sigma > 0)."""
    if sigma <= 0:
        return image
    n1 = rng.normal(0.0, sigma, image.shape)
    n2 = rng.normal(0.0, sigma, image.shape)
    return np.sqrt((image + n1) ** 2 + n2**2)


def augment(
    image: np.ndarray, labels: np.ndarray | None, rng: np.random.Generator, strength: float = 1.0
) -> tuple[np.ndarray, np.ndarray | None]:
    """Augment one slice ``image`` (H, W) in [0, 1] (and its ``labels`` (H, W)) -> (float32 image, uint8 labels)."""
    if strength <= 0:
        return image.astype(np.float32), labels
    coords = warp_coordinates(image.shape, rng, strength)
    out = ndimage.map_coordinates(image.astype(np.float64), coords, order=1, mode="constant", cval=0.0)
    lab = None
    if labels is not None:
        lab = ndimage.map_coordinates(labels, coords, order=0, mode="constant", cval=0).astype(np.uint8)
    out = out * bias_field(image.shape, rng, strength)
    out = rician(out, rng, NOISE * strength)
    top = float(np.percentile(out, 99.9))
    out = np.clip(out / max(1.0, top), 0.0, 1.0)
    return out.astype(np.float32), lab
