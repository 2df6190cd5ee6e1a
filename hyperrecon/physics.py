"""Forward models ``y = A(x) (+ noise)``: CS-MRI, AWGN denoising and super-resolution, behind one interface.

Images are ``(B, 1, H, W)`` tensors (real float32 in [0, 1] in practice; complex or 2-channel also accepted where
said). Everything is batched torch and follows the device of its input. Every model has:

- ``A(x) -> y`` and ``A_adjoint(y) -> (B, 1, H, W)``, with ``<A x, y> = <x, A^H y>``
  (``<u, v> = sum conj(u) v``). ``A`` is defined on complex images, so a real ``x`` is the special case
  ``imag = 0``; the adjoint of ``A`` restricted to real images (real inner product) is ``A_adjoint(y).real``.
  Precision: float64/complex128 inputs stay double (for adjointness tests); anything else is computed in
  float32/complex64.
- ``measure(x, generator=None) -> y``: ``A`` plus the noise model; noise is drawn from ``generator`` (on the
  generator's device, then moved), so it is reproducible given the generator; ``None`` uses torch's global RNG.
- ``network_input(y) -> (B, 2, H, W)`` float32: the zero-filled / noisy / upsampled image as (real, imag) channels.
- ``degraded(y) -> (B, 1, H, W)``: magnitude of the network input (the reference of rPSNR).
- ``data_consistency(x_hat, y) -> (B,)``: ``||A x_hat - y||²`` per sample (sum of squared magnitudes), always in
  float32 or better, also under bf16 autocast; differentiable w.r.t. ``x_hat``. ``x_hat`` may be ``(B, 1, H, W)``
  real or complex, or ``(B, 2, H, W)`` (real, imag).
- ``describe() -> dict`` (JSON-friendly), ``mask_image() -> np.ndarray (H, W)`` for previews, ``to(device) -> self``.

CS-MRI: ``A x = M ⊙ F x``, ``F`` the orthonormal centred 2-D FFT (``F^H = F^-1``; convention in
:mod:`hyperrecon.masks`: ``F x = fftshift(fft2(ifftshift(x), norm="ortho"))``), ``M`` a centred Poisson-disc mask.
Noise: circularly symmetric complex Gaussian on the sampled entries, ``E|n|² = noise_sigma²`` (real and imaginary
parts each of std ``noise_sigma / sqrt(2)``). Network input: the zero-filled image ``A^H y = F^H (M ⊙ y)``.

Denoising: ``A = I``, ``y = x + N(0, sigma²)`` (paper: sigma = 0.1). Network input ``(y, 0)``.

Super-resolution by ``factor`` f: ``A`` averages each f x f block (box / area kernel, the exact adjoint-friendly
choice; the authors used bicubic), ``A^H y`` spreads each value over its block divided by f². Noise-free. Network
input: nearest-neighbour upsampling of ``y`` back to ``(H, W)`` (``= f² A^H y``), imag channel 0.
"""

from __future__ import annotations

import math
import numbers
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from .errors import ConfigError, DataError
from .masks import achieved_acceleration, default_calib, poisson_disc_mask
from .registry import Registry

FORWARD_MODELS: Registry = Registry("forward model")

_DIMS = (-2, -1)


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2-D FFT over the last two axes: ``fftshift(fft2(ifftshift(x), norm="ortho"))``."""
    return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(x, dim=_DIMS), norm="ortho"), dim=_DIMS)


def ifft2c(k: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`fft2c` (and its adjoint): ``fftshift(ifft2(ifftshift(k), norm="ortho"))``."""
    return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(k, dim=_DIMS), norm="ortho"), dim=_DIMS)


def _is_double(t: torch.Tensor) -> bool:
    return t.dtype in (torch.float64, torch.complex128)


def _working(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32/complex64, or float64/complex128 if it already is double (bf16/fp16 are promoted)."""
    if t.is_complex():
        return t if _is_double(t) else t.to(torch.complex64)
    return t if _is_double(t) else t.to(torch.float32)


def _complex(t: torch.Tensor) -> torch.Tensor:
    t = _working(t)
    return t if t.is_complex() else torch.complex(t, torch.zeros_like(t))


def _two_channel(z: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)`` real or complex -> ``(B, 2, H, W)`` float32 (real, imag)."""
    if z.is_complex():
        return torch.cat([z.real, z.imag], dim=1).to(torch.float32)
    return torch.cat([z, torch.zeros_like(z)], dim=1).to(torch.float32)


def _check_image_shape(value: Any, model: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in value)
        ok = [h, w] == list(value) and h >= 1 and w >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"forward model '{model}' image_shape: expected (H, W) positive integers, but got {value!r}")
    return h, w


def _check_nonneg(value: Any, model: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"forward model '{model}' {name}: expected a finite number >= 0, but got {value!r}")
    return float(value)


class ForwardModel(ABC):
    """Common interface (see the module docstring). Subclasses define ``A``, ``A_adjoint`` and ``describe``."""

    name: ClassVar[str] = ""

    def __init__(self, image_shape: Sequence[int]) -> None:
        self.image_shape = _check_image_shape(image_shape, self.name)

    # ---------------------------------------------------------------------------------------------- checks
    def _check(self, t: torch.Tensor, what: str, spatial: tuple[int, int], channels: tuple[int, ...]) -> None:
        if (
            not isinstance(t, torch.Tensor)
            or t.ndim != 4
            or t.shape[1] not in channels
            or tuple(t.shape[-2:]) != spatial
        ):
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            ch = "/".join(str(c) for c in channels)
            raise DataError(
                f"forward model '{self.name}' {what}: expected a tensor of shape (B, {ch}, {spatial[0]}, {spatial[1]}),"
                f" but got {got}"
            )

    def _image(self, x: torch.Tensor, what: str = "image") -> torch.Tensor:
        """``(B, 1, H, W)`` real/complex or ``(B, 2, H, W)`` (real, imag) -> ``(B, 1, H, W)`` in working precision."""
        self._check(x, what, self.image_shape, (1, 2))
        if x.shape[1] == 2:
            if x.is_complex():
                raise DataError(f"forward model '{self.name}' {what}: a 2-channel image must be real (real, imag)")
            x = _working(x)
            return torch.complex(x[:, :1], x[:, 1:])
        return _working(x)

    @property
    def measurement_shape(self) -> tuple[int, int]:
        """Spatial shape of ``y``."""
        return self.image_shape

    def _measurement(self, y: torch.Tensor) -> torch.Tensor:
        self._check(y, "measurement y", self.measurement_shape, (1,))
        return _working(y)

    # ---------------------------------------------------------------------------------------------- operators
    @abstractmethod
    def A(self, x: torch.Tensor) -> torch.Tensor:  # noqa: N802 (the operator's usual name)
        """Forward operator (noise-free)."""

    @abstractmethod
    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:  # noqa: N802
        """Adjoint ``A^H``: measurement -> image ``(B, 1, H, W)``."""

    def measure(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``A(x)`` plus this model's noise (none by default)."""
        return self.A(x)

    def network_input(self, y: torch.Tensor) -> torch.Tensor:
        """The degraded image as (real, imag) channels, ``(B, 2, H, W)`` float32. Default: ``A^H y``."""
        return _two_channel(self.A_adjoint(y))

    def degraded(self, y: torch.Tensor) -> torch.Tensor:
        """Magnitude of the network input, ``(B, 1, H, W)`` float32."""
        z = self.network_input(y)
        return torch.sqrt(z[:, :1] ** 2 + z[:, 1:] ** 2)

    def data_consistency(self, x_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``||A x_hat - y||²`` per sample, ``(B,)``, in float32 (float64 for double input) even under autocast."""
        with torch.autocast(device_type=x_hat.device.type, enabled=False):
            ax = self.A(x_hat)
            target = self._measurement(y).to(ax.device)
            if ax.is_complex() or target.is_complex():
                ax = _complex(ax)
                r = ax - _complex(target).to(ax.dtype)
                sq = torch.view_as_real(r).square().sum(dim=-1)  # |r|², smooth at r = 0 unlike abs()
            else:
                sq = (ax - target.to(ax.dtype)).square()
            return sq.flatten(1).sum(dim=1)

    # ---------------------------------------------------------------------------------------------- misc
    @staticmethod
    def _noise(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Standard normal noise of ``shape``, drawn on the generator's device, returned on ``like``'s."""
        device = generator.device if generator is not None else like.device
        real = like.real.dtype if like.is_complex() else like.dtype
        return torch.randn(shape, generator=generator, device=device, dtype=real).to(like.device)

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Name and parameters, JSON-friendly."""

    @abstractmethod
    def mask_image(self) -> np.ndarray:
        """An ``(H, W)`` picture of the operator for previews."""

    def to(self, device: str | torch.device) -> ForwardModel:
        """Move state (if any) to ``device``; returns ``self``."""
        return self


@FORWARD_MODELS.register(
    "cs-mri",
    description="compressed-sensing MRI: y = M ⊙ F x, Poisson-disc mask M",
    smoke_params={"image_shape": (16, 16), "acceleration": 4.0},
)
class CSMRI(ForwardModel):
    """Compressed-sensing MRI ``y = M ⊙ F x (+ CN(0, noise_sigma²) on sampled entries)``; y ``(B, 1, H, W)`` complex."""

    name = "cs-mri"

    def __init__(
        self,
        image_shape: Sequence[int],
        acceleration: float = 4.0,
        calib: int | Sequence[int] | None = None,
        mask_seed: int = 0,
        noise_sigma: float = 0.0,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(image_shape)
        self.noise_sigma = _check_nonneg(noise_sigma, self.name, "noise_sigma")
        self.acceleration = acceleration
        self.mask_seed = mask_seed
        try:
            mask = poisson_disc_mask(self.image_shape, acceleration, calib=calib, seed=mask_seed, cache_dir=cache_dir)
        except ConfigError as exc:
            raise ConfigError(f"forward model '{self.name}': {exc}") from None
        self.calib = default_calib(self.image_shape) if calib is None else calib
        self._mask_np = mask
        self._masks: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def _mask(self, like: torch.Tensor) -> torch.Tensor:
        """The mask as a real tensor of ``like``'s real dtype on ``like``'s device, ``(H, W)`` (cached)."""
        dtype = like.real.dtype if like.is_complex() else like.dtype
        key = (like.device, dtype)
        if key not in self._masks:
            self._masks[key] = torch.from_numpy(self._mask_np).to(device=like.device, dtype=dtype)
        return self._masks[key]

    def A(self, x: torch.Tensor) -> torch.Tensor:  # noqa: N802
        """``M ⊙ F x``: ``(B, 1, H, W)`` (real, complex, or 2-channel real/imag) -> complex ``(B, 1, H, W)``."""
        k = fft2c(_complex(self._image(x, "A input x")))
        return k * self._mask(k)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:  # noqa: N802
        """``F^H (M ⊙ y)``: complex k-space ``(B, 1, H, W)`` -> complex image ``(B, 1, H, W)``."""
        k = _complex(self._measurement(y))
        return ifft2c(k * self._mask(k))

    def measure(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``A x`` plus circularly symmetric complex Gaussian noise (std ``noise_sigma``) on the sampled entries."""
        y = self.A(x)
        if self.noise_sigma == 0:
            return y
        n = self._noise((2, *y.shape), y, generator) * (self.noise_sigma / math.sqrt(2))
        return y + torch.complex(n[0], n[1]) * self._mask(y)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "image_shape": list(self.image_shape),
            "acceleration": float(self.acceleration),
            "acceleration_achieved": achieved_acceleration(self._mask_np),
            "n_sampled": int(self._mask_np.sum()),
            "calib": int(self.calib) if isinstance(self.calib, numbers.Integral) else [int(c) for c in self.calib],
            "mask_seed": int(self.mask_seed),
            "noise_sigma": self.noise_sigma,
        }

    def mask_image(self) -> np.ndarray:
        """The centred sampling mask, boolean ``(H, W)`` (a copy)."""
        return self._mask_np.copy()

    def to(self, device: str | torch.device) -> CSMRI:
        self._mask(torch.empty(0, device=device))  # put the float32 mask there now, not at the first batch
        return self


@FORWARD_MODELS.register(
    "denoise",
    description="additive white Gaussian noise: y = x + N(0, sigma²)",
    smoke_params={"image_shape": (16, 16), "sigma": 0.1},
)
class Denoise(ForwardModel):
    """AWGN denoising: ``A = I``, ``y = x + N(0, sigma²)``; y ``(B, 1, H, W)`` real."""

    name = "denoise"

    def __init__(self, image_shape: Sequence[int], sigma: float = 0.1) -> None:
        super().__init__(image_shape)
        self.sigma = _check_nonneg(sigma, self.name, "sigma")

    def A(self, x: torch.Tensor) -> torch.Tensor:  # noqa: N802
        """Identity (in working precision): ``(B, 1, H, W)`` -> ``(B, 1, H, W)``."""
        return self._image(x, "A input x")

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:  # noqa: N802
        """Identity."""
        return self._measurement(y)

    def measure(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``x + sigma * N(0, 1)`` (complex images get noise on the real part only)."""
        y = self.A(x)
        if self.sigma == 0:
            return y
        return y + self.sigma * self._noise(tuple(y.shape), y, generator)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "image_shape": list(self.image_shape), "sigma": self.sigma}

    def mask_image(self) -> np.ndarray:
        """A noise sample ``sigma * N(0, 1)`` of shape ``(H, W)`` (fixed seed 0), float32."""
        return (self.sigma * np.random.default_rng(0).standard_normal(self.image_shape)).astype(np.float32)


@FORWARD_MODELS.register(
    "super-resolution",
    description="super-resolution: box-average downsampling by factor",
    smoke_params={"image_shape": (16, 16), "factor": 4},
)
class SuperResolution(ForwardModel):
    """Super-resolution: ``y`` = f x f block means of ``x``, ``(B, 1, H/f, W/f)``; input = nearest upsampling of y."""

    name = "super-resolution"

    def __init__(self, image_shape: Sequence[int], factor: int = 4) -> None:
        super().__init__(image_shape)
        if isinstance(factor, bool) or not isinstance(factor, numbers.Integral) or factor < 1:
            raise ConfigError(f"forward model '{self.name}' factor: expected an integer >= 1, but got {factor!r}")
        self.factor = int(factor)
        h, w = self.image_shape
        if h % self.factor or w % self.factor:
            raise ConfigError(
                f"forward model '{self.name}': image size {h}x{w} is not divisible by factor {self.factor}"
            )

    @property
    def measurement_shape(self) -> tuple[int, int]:
        return self.image_shape[0] // self.factor, self.image_shape[1] // self.factor

    def A(self, x: torch.Tensor) -> torch.Tensor:  # noqa: N802
        """Block means: ``(B, 1, H, W)`` -> ``(B, 1, H/f, W/f)`` (complex stays complex)."""
        x = self._image(x, "A input x")
        f, (h, w) = self.factor, self.measurement_shape
        return x.reshape(x.shape[0], 1, h, f, w, f).mean(dim=(3, 5))

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:  # noqa: N802
        """Each value spread over its f x f block, divided by f²: ``(B, 1, H/f, W/f)`` -> ``(B, 1, H, W)``."""
        return self._upsample(self._measurement(y)) / self.factor**2

    def _upsample(self, y: torch.Tensor) -> torch.Tensor:
        f = self.factor
        return y.repeat_interleave(f, dim=-2).repeat_interleave(f, dim=-1)

    def network_input(self, y: torch.Tensor) -> torch.Tensor:
        """Nearest-neighbour upsampling of ``y`` by ``factor`` as (real, imag = 0), ``(B, 2, H, W)`` float32."""
        return _two_channel(self._upsample(self._measurement(y)))

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "image_shape": list(self.image_shape),
            "factor": self.factor,
            "kernel": "box",
        }

    def mask_image(self) -> np.ndarray:
        """The kernel footprint: ``1/f²`` on the f x f block at the image centre, 0 elsewhere, ``(H, W)`` float32."""
        h, w = self.image_shape
        f = self.factor
        out = np.zeros((h, w), dtype=np.float32)
        y0, x0 = h // 2 - f // 2, w // 2 - f // 2
        out[y0 : y0 + f, x0 : x0 + f] = 1.0 / f**2
        return out
