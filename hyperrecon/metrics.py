"""Image-quality metrics, segmentation overlap and set-level analyses; one implementation for losses and reports.

Per-sample image metrics map a pair ``x_hat, x`` of shape ``(B, C, H, W)`` (usually ``C = 1``) to ``(B,)``:

- ``mse = mean((x̂ - x)²)``, ``mae = mean(|x̂ - x|)``, ``nmse = ||x̂ - x||² / ||x||²`` (all over C, H, W);
- ``psnr = 10 log10(R² / mse)`` with data range ``R``; the MSE is floored at ``R² · 10^(-PSNR_CAP_DB/10)`` so that
  identical images give exactly ``PSNR_CAP_DB`` (120 dB) instead of +inf (reports need finite numbers);
- ``rpsnr = psnr(x̂, x) - psnr(degraded, x)``, the gain over the zero-filled / noisy / low-resolution input;
- ``ssim``: mean of the SSIM map ``(2 μx μy + C1)(2 σxy + C2) / ((μx² + μy² + C1)(σx² + σy² + C2))`` over the
  positions where the window fits inside the image (``C1 = (K1 R)²``, ``C2 = (K2 R)²``); see ``SSIM_CONVENTIONS``;
- ``hfen = ||LoG(x̂) - LoG(x)||₂ / ||LoG(x)||₂``, 15x15 Laplacian of Gaussian (σ = 1.5), normalised by the target.

Every function computes in float64 when an input is float64 and in float32 otherwise (bfloat16 / float16 inputs
are promoted, and autocast is switched off around the convolutions), so it is safe inside
``torch.autocast(..., dtype=torch.bfloat16)``. They run on any device and are differentiable (SSIM and MAE serve
as training losses: ``1 - ssim``, ``mae``). ``data_range`` is a positive number or a ``(B,)`` tensor.

Segmentation: hard per-class ``dice`` / ``mean_dice`` on label maps and a differentiable ``soft_dice_loss``.
Set-level (over reconstructions of one slice for many λ): ``pixel_range`` and ``diverse_pair``.

``METRICS`` registers every per-sample metric as a ``Metric`` class whose constructor takes its parameters
(``METRICS.build("ssim", {"convention": "fastmri"})``) and which declares its direction (``higher_is_better``), unit,
report labels and the inputs it needs (``needs``: the degraded image, label maps, a segmentation net). ``dice`` is
one of them: the hard mean Dice of a segmentation net's labels on the reconstruction. ``build_metrics`` builds a
list from names and per-name parameters; ``compute_metrics`` evaluates several at once; ``higher_is_better`` and
``needs_seg`` answer for a name.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .accel import host_copy
from .errors import ConfigError, DataError
from .registry import Registry, did_you_mean

PSNR_CAP_DB = 120.0
"""PSNR of identical images: the MSE is floored at ``R² · 1e-12``."""

SSIM_CONVENTIONS: dict[str, str] = {
    "wang": "Wang et al. 2004: 11x11 Gaussian window (sigma 1.5), K1=0.01, K2=0.03, population covariance, "
    "given data range; equals skimage structural_similarity(gaussian_weights=True, use_sample_covariance=False)",
    "fastmri": "fastMRI evaluation (fastmri/evaluate.py ssim, as SSIMLoss): 7x7 uniform window, K1=0.01, K2=0.03, "
    "sample covariance, data range = maximum of the target (per slice here; fastMRI takes the volume's)",
}

# Window, weights and constants of each SSIM convention.
_SSIM_SETTINGS: dict[str, dict[str, float | int | bool]] = {
    "wang": {"radius": 5, "sigma": 1.5, "gaussian": True, "sample_cov": False, "k1": 0.01, "k2": 0.03},
    "fastmri": {"radius": 3, "sigma": 0.0, "gaussian": False, "sample_cov": True, "k1": 0.01, "k2": 0.03},
}

HFEN_SIGMA = 1.5
HFEN_RADIUS = 7  # 15x15 kernel, as scipy.ndimage.gaussian_laplace(sigma=1.5, truncate=7/1.5)
_EPS = 1e-12  # floor of the denominators of nmse / hfen, so all-zero targets give finite values


class MetricArgumentError(ConfigError, ValueError):
    """A metric parameter (SSIM convention, data range, quantile, class count) has an invalid value."""


# ----------------------------------------------------------------------------------------------------------------
# helpers


def _working_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32 (low-precision inputs are promoted)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _as_tensor(t: torch.Tensor | np.ndarray) -> torch.Tensor:
    return t if isinstance(t, torch.Tensor) else torch.as_tensor(t)


def _prepare(name: str, x_hat: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Check that ``x_hat`` and ``x`` are equal-shape ``(B, C, H, W)`` and cast them to the working dtype."""
    x_hat, x = _as_tensor(x_hat), _as_tensor(x)
    if x_hat.ndim != 4 or x_hat.shape != x.shape:
        raise ValueError(
            f"{name}: expected x_hat and x of equal shape (B, C, H, W), "
            f"got x_hat {tuple(x_hat.shape)} and x {tuple(x.shape)}"
        )
    dtype = _working_dtype(x_hat, x)
    return x_hat.to(dtype), x.to(dtype)


def _data_range(data_range: float | torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``data_range`` as a ``(B,)`` tensor on ``ref``'s device and dtype."""
    batch = ref.shape[0]
    if isinstance(data_range, torch.Tensor):
        r = data_range.to(device=ref.device, dtype=ref.dtype).reshape(-1)
        if r.numel() not in (1, batch):
            raise ValueError(f"data_range: expected a scalar or shape ({batch},), got {tuple(data_range.shape)}")
        return r.expand(batch)
    if not (isinstance(data_range, numbers.Real) and math.isfinite(data_range) and data_range > 0):
        raise MetricArgumentError(f"data_range: a finite number > 0 is expected, got {data_range!r}")
    return torch.full((batch,), float(data_range), device=ref.device, dtype=ref.dtype)


def _per_sample(t: torch.Tensor) -> torch.Tensor:
    """``(B, ...)`` -> ``(B, N)`` view for per-sample reductions."""
    return t.reshape(t.shape[0], -1)


def _no_autocast(device: torch.device) -> torch.autocast:
    # conv2d would otherwise run in bfloat16 under autocast; metrics need float32 accuracy
    return torch.autocast(device_type=device.type, enabled=False)


# ----------------------------------------------------------------------------------------------------------------
# pixel-wise metrics


def mse(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean squared error per sample: ``(B, C, H, W)`` pair -> ``(B,)``."""
    x_hat, x = _prepare("mse", x_hat, x)
    return _per_sample(x_hat - x).square().mean(dim=1)


def mae(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean absolute error per sample (the paper's L1 loss): ``(B, C, H, W)`` pair -> ``(B,)``."""
    x_hat, x = _prepare("mae", x_hat, x)
    return _per_sample(x_hat - x).abs().mean(dim=1)


def nmse(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Normalised MSE ``||x̂ - x||² / ||x||²`` per sample (fastMRI's NMSE); denominator floored at 1e-12."""
    x_hat, x = _prepare("nmse", x_hat, x)
    err = _per_sample(x_hat - x).square().sum(dim=1)
    return err / _per_sample(x).square().sum(dim=1).clamp_min(_EPS)


def psnr(x_hat: torch.Tensor, x: torch.Tensor, data_range: float | torch.Tensor = 1.0) -> torch.Tensor:
    """PSNR in dB per sample, ``10 log10(R² / mse)``, capped at ``PSNR_CAP_DB`` for identical images -> ``(B,)``."""
    x_hat, x = _prepare("psnr", x_hat, x)
    r2 = _data_range(data_range, x).square()
    err = _per_sample(x_hat - x).square().mean(dim=1)
    return 10.0 * torch.log10(r2 / torch.maximum(err, r2 * 10.0 ** (-PSNR_CAP_DB / 10.0)))


def rpsnr(
    x_hat: torch.Tensor, x: torch.Tensor, degraded: torch.Tensor, data_range: float | torch.Tensor = 1.0
) -> torch.Tensor:
    """Relative PSNR ``psnr(x̂, x) - psnr(degraded, x)`` in dB -> ``(B,)``.

    ``degraded`` is the network input seen as an image, of the same shape as ``x`` (e.g. the magnitude of the
    zero-filled reconstruction for CS-MRI, the noisy image for denoising).
    """
    if degraded is None:
        raise ValueError("rpsnr: needs the degraded input image (degraded=None)")
    _prepare("rpsnr (degraded vs x)", degraded, x)
    return psnr(x_hat, x, data_range) - psnr(degraded, x, data_range)


# ----------------------------------------------------------------------------------------------------------------
# SSIM


def _gaussian_1d(sigma: float, radius: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Sampled Gaussian ``exp(-t² / 2σ²)``, t = -radius..radius, normalised to sum 1."""
    t = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    return g / g.sum()


def _separable_valid(maps: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Filter ``(N, 1, H, W)`` with ``kernel ⊗ kernel`` without padding -> ``(N, 1, H-k+1, W-k+1)``."""
    out = F.conv2d(maps, kernel.view(1, 1, 1, -1))
    return F.conv2d(out, kernel.view(1, 1, -1, 1))


def _check_convention(convention: str) -> str:
    if convention not in _SSIM_SETTINGS:
        raise MetricArgumentError(
            f"ssim convention: expected one of {', '.join(SSIM_CONVENTIONS)}, got '{convention}'"
            f"{did_you_mean(str(convention), SSIM_CONVENTIONS)}"
        )
    return convention


def ssim(
    x_hat: torch.Tensor,
    x: torch.Tensor,
    data_range: float | torch.Tensor = 1.0,
    convention: str = "wang",
) -> torch.Tensor:
    """Structural similarity per sample: ``(B, C, H, W)`` pair -> ``(B,)`` (channels averaged).

    The SSIM map is evaluated only where the window lies inside the image (a "valid" convolution), which is
    exactly skimage's result: skimage filters with reflected borders and then crops ``(win - 1) // 2`` pixels
    from each side before averaging. The five moment maps (x̂, x, x̂², x², x̂x) are filtered in one separable
    pass. Convention ``"wang"`` uses ``data_range``; ``"fastmri"`` ignores it and uses the per-sample maximum
    of the target (floored at float eps). H and W must be at least the window size (11 or 7).
    """
    s = _SSIM_SETTINGS[_check_convention(convention)]
    x_hat, x = _prepare("ssim", x_hat, x)
    b, c, h, w = x.shape
    win = 2 * int(s["radius"]) + 1
    if h < win or w < win:
        raise ValueError(f"ssim ({convention}): images must be at least {win}x{win}, got {h}x{w}")
    with _no_autocast(x.device):
        if convention == "fastmri":
            r = _per_sample(x).amax(dim=1).clamp_min(torch.finfo(x.dtype).eps)
        else:
            r = _data_range(data_range, x)
        if s["gaussian"]:
            kernel = _gaussian_1d(float(s["sigma"]), int(s["radius"]), x.dtype, x.device)
        else:
            kernel = torch.full((win,), 1.0 / win, dtype=x.dtype, device=x.device)
        # unbiased (sample) covariance: the window mean divides by NP, the sample estimate by NP - 1
        cov_norm = win * win / (win * win - 1) if s["sample_cov"] else 1.0

        a = x_hat.reshape(b * c, 1, h, w)
        y = x.reshape(b * c, 1, h, w)
        moments = _separable_valid(torch.cat([a, y, a * a, y * y, a * y]), kernel)
        mu_a, mu_y, m_aa, m_yy, m_ay = moments.chunk(5)
        var_a = cov_norm * (m_aa - mu_a * mu_a)
        var_y = cov_norm * (m_yy - mu_y * mu_y)
        cov = cov_norm * (m_ay - mu_a * mu_y)

        r = r.repeat_interleave(c).view(-1, 1, 1, 1)
        c1 = (float(s["k1"]) * r) ** 2
        c2 = (float(s["k2"]) * r) ** 2
        smap = ((2 * mu_a * mu_y + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_y**2 + c1) * (var_a + var_y + c2))
        return smap.reshape(b, -1).mean(dim=1)


# ----------------------------------------------------------------------------------------------------------------
# HFEN


def _symmetric_index(n: int, pad: int, device: torch.device) -> torch.Tensor:
    """Indices of scipy's ``mode='reflect'`` extension (d c b a | a b c d | d c b a), any ``pad`` vs ``n``."""
    i = torch.arange(-pad, n + pad, device=device) % (2 * n)
    return torch.where(i >= n, 2 * n - 1 - i, i)


def laplacian_of_gaussian(img: torch.Tensor, sigma: float = HFEN_SIGMA, radius: int = HFEN_RADIUS) -> torch.Tensor:
    """Laplacian of Gaussian of ``(N, C, H, W)`` images, same shape, as ``scipy.ndimage.gaussian_laplace``.

    ``LoG = g'' ⊗ g + g ⊗ g''`` with ``g`` the normalised sampled Gaussian and ``g''(t) = (t²/σ⁴ - 1/σ²) g(t)``,
    borders extended half-sample symmetrically (scipy's 'reflect' = numpy 'symmetric'; torch's 'reflect' pad
    would drop the edge pixel). Symmetric extension commutes with the separable passes, so one pad suffices.
    """
    n, c, h, w = img.shape
    dtype = _working_dtype(img)
    img = img.to(dtype).reshape(n * c, 1, h, w)
    with _no_autocast(img.device):
        g0 = _gaussian_1d(sigma, radius, dtype, img.device)
        t = torch.arange(-radius, radius + 1, dtype=dtype, device=img.device)
        g2 = (t**2 / sigma**4 - 1.0 / sigma**2) * g0
        padded = img.index_select(2, _symmetric_index(h, radius, img.device))
        padded = padded.index_select(3, _symmetric_index(w, radius, img.device))
        # along x: channel 0 = g0, channel 1 = g2; along y: the other one, then add the two terms
        along_x = F.conv2d(padded, torch.stack([g0, g2]).view(2, 1, 1, -1))
        both = F.conv2d(along_x, torch.stack([g2, g0]).view(2, 1, -1, 1), groups=2)
        return both.sum(dim=1).reshape(n, c, h, w)


def hfen(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """High-frequency error norm ``||LoG(x̂) - LoG(x)||₂ / ||LoG(x)||₂`` per sample -> ``(B,)``.

    Normalised by the ground truth ``x`` (the authors' call sites swapped the arguments). The denominator is
    floored at 1e-12, so a constant target (LoG ≈ 0) gives a large but finite value.
    """
    x_hat, x = _prepare("hfen", x_hat, x)
    b = x.shape[0]
    log = laplacian_of_gaussian(torch.cat([x_hat - x, x]))  # LoG is linear: LoG(x̂) - LoG(x) = LoG(x̂ - x)
    num = _per_sample(log[:b]).norm(dim=1)
    return num / _per_sample(log[b:]).norm(dim=1).clamp_min(_EPS)


# ----------------------------------------------------------------------------------------------------------------
# segmentation


def _labels(name: str, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """``(B, H, W)`` or ``(B, 1, H, W)`` integer labels in ``[0, n_classes)`` -> ``(B, H*W)`` int64."""
    given = labels
    labels = _as_tensor(labels)
    if labels.ndim == 4 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 3:
        raise ValueError(f"{name}: expected labels of shape (B, H, W) or (B, 1, H, W), got {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"{name}: labels must be an integer tensor, got {labels.dtype}")
    flat = _per_sample(labels.long())
    # the range check reads the CPU copy a training batch was staged from, where there is one (no device sync)
    src = host_copy(given) if isinstance(given, torch.Tensor) else flat
    if src.numel() and (int(src.min()) < 0 or int(src.max()) >= n_classes):
        raise ValueError(f"{name}: labels must lie in [0, {n_classes}), got min {int(src.min())}, max {int(src.max())}")
    return flat


def _check_classes(name: str, n_classes: int, include_background: bool) -> None:
    low = 1 if include_background else 2
    if not isinstance(n_classes, int) or n_classes < low:
        raise MetricArgumentError(
            f"{name}: n_classes >= {low} must hold (include_background={include_background}), got {n_classes!r}"
        )


def dice(
    pred_labels: torch.Tensor, true_labels: torch.Tensor, n_classes: int, include_background: bool = False
) -> torch.Tensor:
    """Hard per-class Dice ``2 |P ∩ T| / (|P| + |T|)`` of label maps -> ``(B, C')`` float32.

    Label maps are ``(B, H, W)`` or ``(B, 1, H, W)`` integers in ``[0, n_classes)``; class 0 is background and
    left out unless ``include_background`` (``C' = n_classes - 1`` or ``n_classes``). A class absent from both
    prediction and target scores 1.0 (nothing to find, nothing wrongly found).
    """
    _check_classes("dice", n_classes, include_background)
    pred = _labels("dice (pred_labels)", pred_labels, n_classes)
    true = _labels("dice (true_labels)", true_labels, n_classes)
    if pred.shape != true.shape:
        raise ValueError(
            f"dice: pred_labels and true_labels must have equal shapes, got "
            f"{tuple(_as_tensor(pred_labels).shape)} and {tuple(_as_tensor(true_labels).shape)}"
        )
    counts = torch.zeros(pred.shape[0], n_classes, dtype=torch.long, device=pred.device)
    n_pred = counts.scatter_add(1, pred, torch.ones_like(pred))
    n_true = counts.scatter_add(1, true, torch.ones_like(true))
    n_both = counts.scatter_add(1, pred, (pred == true).long())
    denom = (n_pred + n_true).double()
    score = torch.where(denom > 0, 2.0 * n_both.double() / denom.clamp_min(1.0), torch.ones_like(denom))
    start = 0 if include_background else 1
    return score[:, start:].float()


def mean_dice(
    pred_labels: torch.Tensor, true_labels: torch.Tensor, n_classes: int, include_background: bool = False
) -> torch.Tensor:
    """Mean over classes of ``dice(...)`` -> ``(B,)`` (empty/empty classes count as 1.0)."""
    return dice(pred_labels, true_labels, n_classes, include_background).mean(dim=1)


def soft_dice_loss(
    probs: torch.Tensor,
    labels: torch.Tensor,
    *,
    include_background: bool = True,
    weighting: str = "inverse_square",
    smooth: float = 1e-5,
) -> torch.Tensor:
    """Generalised soft Dice loss (Sudre et al. 2017) per sample -> ``(B,)``, differentiable in ``probs``.

    ``probs`` are class probabilities ``(B, C, H, W)`` (e.g. a softmax), ``labels`` integers ``(B, H, W)`` or
    ``(B, 1, H, W)`` in ``[0, C)``. With one-hot targets r and per-class weights w_c,
    ``loss = 1 - (2 Σ_c w_c Σ_n r p + smooth) / (Σ_c w_c Σ_n (r + p) + smooth)``.
    ``weighting="inverse_square"``: ``w_c = 1 / (Σ_n r_cn)²`` (Sudre), a class absent from the target gets the
    largest weight of the present ones; ``"uniform"``: ``w_c = 1``. Weights are normalised to sum 1 per sample,
    which leaves the ratio unchanged but keeps ``smooth`` small relative to it.
    """
    if weighting not in ("inverse_square", "uniform"):
        raise MetricArgumentError(
            f"soft_dice_loss weighting: expected 'inverse_square' or 'uniform', got '{weighting}'"
        )
    probs = _as_tensor(probs)
    if probs.ndim != 4:
        raise ValueError(f"soft_dice_loss: expected probs of shape (B, C, H, W), got {tuple(probs.shape)}")
    b, c, h, w = probs.shape
    _check_classes("soft_dice_loss", c, include_background)
    target = _labels("soft_dice_loss (labels)", labels, c)
    if target.shape != (b, h * w):
        raise ValueError(
            f"soft_dice_loss: labels {tuple(_as_tensor(labels).shape)} do not match probs {tuple(probs.shape)}"
        )
    p = probs.to(_working_dtype(probs)).reshape(b, c, h * w)
    r = F.one_hot(target, c).transpose(1, 2).to(p.dtype)  # (B, C, N)
    start = 0 if include_background else 1
    p, r = p[:, start:], r[:, start:]
    inter = (p * r).sum(dim=2)
    total = (p + r).sum(dim=2)
    if weighting == "uniform":
        wts = torch.ones_like(inter)
    else:
        n = r.sum(dim=2)
        wts = torch.where(n > 0, 1.0 / n.clamp_min(1.0) ** 2, torch.zeros_like(n))
        fill = wts.amax(dim=1, keepdim=True)
        fill = torch.where(fill > 0, fill, torch.ones_like(fill))
        wts = torch.where(n > 0, wts, fill)
    wts = wts / wts.sum(dim=1, keepdim=True)
    return 1.0 - (2.0 * (wts * inter).sum(dim=1) + smooth) / ((wts * total).sum(dim=1) + smooth)


# ----------------------------------------------------------------------------------------------------------------
# set-level analyses (numpy arrays or torch tensors)


@dataclass(frozen=True)
class PixelRange:
    """Per-pixel spread of a set of reconstructions: ``map`` (H, W), its ``sum`` and ``mean_per_pixel``."""

    map: np.ndarray | torch.Tensor
    sum: float
    mean_per_pixel: float


def _stack_of_images(name: str, recons: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    if recons.ndim == 4 and recons.shape[1] == 1:
        recons = recons[:, 0]
    if recons.ndim != 3 or recons.shape[0] == 0:
        raise ValueError(
            f"{name}: expected recons of shape (N, H, W) or (N, 1, H, W), N >= 1, got {tuple(recons.shape)}"
        )
    return recons


def pixel_range(recons: np.ndarray | torch.Tensor) -> PixelRange:
    """Per-pixel ``max - min`` over a set ``(N, H, W)`` or ``(N, 1, H, W)`` of reconstructions.

    ``map`` has the input's type (numpy in, numpy out; torch in, torch out); ``sum`` (the paper's "range") and
    ``mean_per_pixel`` (sum / (H W), comparable across image sizes) are Python floats, accumulated in float64.
    """
    recons = _stack_of_images("pixel_range", recons)
    if isinstance(recons, torch.Tensor):
        spread = recons.amax(dim=0) - recons.amin(dim=0)
        total = float(spread.double().sum())
    else:
        spread = np.ptp(np.asarray(recons), axis=0)
        total = float(spread.sum(dtype=np.float64))
    n_pixels = recons.shape[1] * recons.shape[2]
    return PixelRange(map=spread, sum=total, mean_per_pixel=total / n_pixels)


class DiversePair(NamedTuple):
    """Indices ``i < j`` into the full set and their L2 distance ``||r_i - r_j||₂``."""

    i: int
    j: int
    distance: float


def diverse_pair(
    recons: np.ndarray | torch.Tensor, scores: np.ndarray | torch.Tensor | list[float], quantile: float = 0.9
) -> DiversePair:
    """The two reconstructions farthest apart in L2 among the good ones.

    Kept: those whose score (higher is better, e.g. PSNR) is ``>= np.quantile(scores, quantile)`` (linear
    interpolation); if fewer than two pass, the two best. NaN scores are never kept. ``recons`` is
    ``(N, H, W)`` or ``(N, 1, H, W)``, ``scores`` ``(N,)``; numpy arrays, torch tensors or lists are accepted and
    the work is done in float64 numpy. Ties go to the lexicographically first pair.
    """
    if not (isinstance(quantile, numbers.Real) and 0.0 <= quantile <= 1.0):
        raise MetricArgumentError(f"diverse_pair quantile: 0 <= quantile <= 1 must hold, got {quantile!r}")
    if isinstance(recons, torch.Tensor):
        recons = recons.detach().cpu().numpy()
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().cpu().numpy()
    recons = _stack_of_images("diverse_pair", np.asarray(recons))
    score = np.asarray(scores, dtype=np.float64).reshape(-1)
    if score.shape[0] != recons.shape[0]:
        raise ValueError(f"diverse_pair: {recons.shape[0]} reconstructions but {score.shape[0]} scores")
    valid = np.flatnonzero(~np.isnan(score))
    if valid.size < 2:
        raise ValueError(f"diverse_pair: at least 2 reconstructions with a score are needed, got {valid.size}")
    threshold = np.quantile(score[valid], quantile)
    kept = valid[score[valid] >= threshold]
    if kept.size < 2:
        kept = valid[np.argsort(-score[valid], kind="stable")[:2]]
    kept = np.sort(kept)
    flat = recons[kept].reshape(kept.size, -1).astype(np.float64)
    sq = (flat**2).sum(axis=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * flat @ flat.T  # Gram form: all pairwise distances in one product
    rows, cols = np.triu_indices(kept.size, k=1)
    best = int(np.argmax(d2[rows, cols]))  # first maximum in row-major order
    a, b = rows[best], cols[best]
    distance = float(np.linalg.norm(flat[a] - flat[b]))  # exact, not from the Gram form
    return DiversePair(int(kept[a]), int(kept[b]), distance)


# ----------------------------------------------------------------------------------------------------------------
# registry


class Metric:
    """Base of the registered per-sample metrics: ``metric(x_hat, x, **inputs) -> (B,)``.

    A metric is a registered class (``@METRICS.register(name)``) whose constructor takes its parameters, so a study
    builds one with ``METRICS.build(name, params)`` (parameters checked against the signature). Each class
    declares:

    - ``higher_is_better``: its direction (what a search maximises or minimises);
    - ``unit``: the unit of its values (``"dB"``, ``"1"`` for ratios, intensities of the [0, 1] target ...);
    - ``short`` / ``label``: its name in report tables and on figure axes;
    - ``needs``: the inputs it needs besides ``x_hat, x``, among ``INPUTS``: ``"degraded"`` (the network input as
      an image), ``"labels"`` (label maps ``(B, H, W)``) and ``"seg_model"`` (a segmentation net).

    ``__call__(x_hat, x, *, degraded=None, data_range=1.0, labels=None, seg_model=None, n_classes=None)``
    checks that every needed input was given (``MissingInputError`` naming it) and calls ``compute``.
    ``name`` is the name the class was registered under.
    """

    higher_is_better: bool = True
    unit: str = "1"
    short: str = ""
    label: str = ""
    needs: frozenset[str] = frozenset()
    registry_name: str = ""  # set by the registry

    @property
    def name(self) -> str:
        return type(self).registry_name

    def compute(self, x_hat: torch.Tensor, x: torch.Tensor, **inputs: Any) -> torch.Tensor:
        """The metric's values ``(B,)``; ``inputs`` holds every input of ``__call__`` (unused ones ignored)."""
        raise NotImplementedError

    def __call__(
        self,
        x_hat: torch.Tensor,
        x: torch.Tensor,
        *,
        degraded: torch.Tensor | None = None,
        data_range: float | torch.Tensor = 1.0,
        labels: torch.Tensor | None = None,
        seg_model: torch.nn.Module | None = None,
        n_classes: int | None = None,
    ) -> torch.Tensor:
        given = {"degraded": degraded, "labels": labels, "seg_model": seg_model}
        for key in sorted(self.needs):
            if given.get(key) is None:
                raise MissingInputError(f"metric '{self.name}' needs {INPUTS[key]} ({key}=None)")
        return self.compute(x_hat, x, data_range=data_range, n_classes=n_classes, **given)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


#: What ``Metric.needs`` may name, with the words its error message uses.
INPUTS = {
    "degraded": "the degraded input image",
    "labels": "label maps (the evaluation data have none)",
    "seg_model": "a segmentation model",
}


class MissingInputError(DataError, ValueError):
    """A metric was called without an input it declares in ``needs`` (exit code 2: the data or study lack it)."""


METRICS: Registry[type[Metric]] = Registry("metric")


@METRICS.register("psnr", description="peak signal-to-noise ratio in dB (capped at 120 dB)")
class PSNR(Metric):
    """Peak signal-to-noise ratio in dB (:func:`psnr`)."""

    unit, short, label = "dB", "PSNR", "PSNR (dB)"

    def compute(self, x_hat: torch.Tensor, x: torch.Tensor, *, data_range: Any = 1.0, **_: Any) -> torch.Tensor:
        return psnr(x_hat, x, data_range)


@METRICS.register("rpsnr", description="PSNR gain in dB over the degraded (zero-filled/noisy) input")
class RPSNR(Metric):
    """PSNR gain in dB over the degraded input (:func:`rpsnr`)."""

    unit, short, label = "dB", "rPSNR", "rPSNR (dB)"
    needs = frozenset({"degraded"})

    def compute(
        self, x_hat: torch.Tensor, x: torch.Tensor, *, degraded: Any = None, data_range: Any = 1.0, **_: Any
    ) -> torch.Tensor:
        return rpsnr(x_hat, x, degraded, data_range)


@METRICS.register(
    "ssim",
    description="structural similarity; convention 'wang' (Wang et al. 2004) or 'fastmri' "
    "([evaluation] ssim_convention)",
    smoke_params={"convention": "fastmri"},
)
class SSIM(Metric):
    """Structural similarity (:func:`ssim`) in one of ``SSIM_CONVENTIONS``.

    ``convention="wang"``: Wang, Bovik, Sheikh & Simoncelli 2004, "Image quality assessment: from error visibility
    to structural similarity", IEEE TIP 13(4), with their 11x11 Gaussian window (σ = 1.5) and the given data range.
    ``convention="fastmri"``: the fastMRI evaluation code (Zbontar et al. 2018, ``fastmri/evaluate.py`` ``ssim``:
    scikit-image's ``structural_similarity`` defaults, i.e. a 7x7 uniform window and sample covariance, with the
    ground truth's maximum as data range; fastMRI takes the maximum over a volume, here each slice is a sample).
    """

    short, label = "SSIM", "SSIM"

    def __init__(self, convention: str = "wang") -> None:
        self.convention = _check_convention(convention)

    def compute(self, x_hat: torch.Tensor, x: torch.Tensor, *, data_range: Any = 1.0, **_: Any) -> torch.Tensor:
        return ssim(x_hat, x, data_range, convention=self.convention)


class _PairMetric(Metric):
    """A metric of ``(x_hat, x)`` alone: ``fn(x_hat, x) -> (B,)``."""

    fn: Any = None

    def compute(self, x_hat: torch.Tensor, x: torch.Tensor, **_: Any) -> torch.Tensor:
        return type(self).fn(x_hat, x)


@METRICS.register("mae", description="mean absolute error")
class MAE(_PairMetric):
    """Mean absolute error (:func:`mae`)."""

    higher_is_better = False
    unit, short, label = "intensity (target range [0, 1])", "MAE", "MAE (intensity units, images in [0, 1])"
    fn = staticmethod(mae)


@METRICS.register("mse", description="mean squared error")
class MSE(_PairMetric):
    """Mean squared error (:func:`mse`)."""

    higher_is_better = False
    unit, short, label = "intensity^2 (target range [0, 1])", "MSE", "MSE"
    fn = staticmethod(mse)


@METRICS.register("nmse", description="normalised MSE ||x̂ - x||² / ||x||²")
class NMSE(_PairMetric):
    """Normalised MSE (:func:`nmse`)."""

    higher_is_better = False
    short, label = "NMSE", "NMSE"
    fn = staticmethod(nmse)


@METRICS.register("hfen", description="high-frequency error norm (15x15 LoG, sigma 1.5), normalised by target")
class HFEN(_PairMetric):
    """High-frequency error norm (:func:`hfen`)."""

    higher_is_better = False
    short, label = "HFEN", "HFEN (relative)"
    fn = staticmethod(hfen)


def seg_input(x_hat: torch.Tensor, seg_model: torch.nn.Module) -> torch.Tensor:
    """The reconstruction ``(B, 1, H, W)`` clipped to [0, 1] as a segmentation net's input: 1 channel, or
    ``(image, 0)`` for a net with 2 input channels; channels-last."""
    img = x_hat.clamp(0.0, 1.0)
    channels = getattr(getattr(seg_model, "skeleton", None), "in_channels", 1)
    if channels == 2:
        img = torch.cat([img, torch.zeros_like(img)], dim=1)
    return img.contiguous(memory_format=torch.channels_last)


def n_seg_classes(seg_model: torch.nn.Module, n_classes: int | None) -> int:
    """``n_classes`` if given, else the segmentation U-Net's output channels (``ConfigError`` if it has none)."""
    if n_classes is not None:
        return int(n_classes)
    out = getattr(getattr(seg_model, "skeleton", None), "out_channels", None)
    if out is None:
        raise ConfigError("dice: pass n_classes for a segmentation model without a U-Net skeleton")
    return int(out)


@METRICS.register(
    "dice",
    description="Dice overlap of the segmentation net's labels on the reconstruction with the ground truth, "
    "mean over classes",
)
class Dice(Metric):
    """Hard mean Dice (:func:`mean_dice`) of a segmentation net's argmax on the reconstruction clipped to [0, 1]
    (:func:`seg_input`) against the label maps; ``n_classes`` defaults to the net's output channels."""

    short, label = "Dice", "Dice (hard, mean over classes)"
    needs = frozenset({"labels", "seg_model"})

    def __init__(self, include_background: bool = False) -> None:
        self.include_background = bool(include_background)

    def compute(
        self,
        x_hat: torch.Tensor,
        x: torch.Tensor,
        *,
        labels: Any = None,
        seg_model: Any = None,
        n_classes: Any = None,
        **_: Any,
    ) -> torch.Tensor:
        pred = seg_model(seg_input(x_hat, seg_model)).argmax(dim=1)
        return mean_dice(pred, labels, n_seg_classes(seg_model, n_classes), self.include_background)


# ----------------------------------------------------------------------------------------------------------------
# metric sets


def higher_is_better(name: str) -> bool:
    """The direction of the registered metric ``name`` (``UnknownNameError`` for other names)."""
    return bool(METRICS.get(name).higher_is_better)


def needs_seg(name: str) -> bool:
    """Whether the registered metric ``name`` needs a segmentation net (a run without one cannot compute it)."""
    return "seg_model" in METRICS.get(name).needs


def build_metrics(
    metrics: Iterable[str | Metric], params: Mapping[str, Mapping[str, Any]] | None = None, *, where: str = ""
) -> list[Metric]:
    """Metric objects from names (built with ``params.get(name, {})``, e.g. ``{"ssim": {"convention": "fastmri"}}``)
    or already built metrics (kept). Unknown names fail with a did-you-mean, bad parameters with a
    ``ConfigError``, a name given twice with a ``ConfigError``; all are resolved before any work."""
    params = params or {}
    out = [
        m if isinstance(m, Metric) else METRICS.build(str(m), dict(params.get(str(m), {})), where=where)
        for m in metrics
    ]
    names = [m.name for m in out]
    if len(set(names)) != len(names):
        prefix = f"{where}: " if where else ""
        raise ConfigError(f"{prefix}metric names must be unique, got {names}")
    return out


def compute_metrics(
    metrics: Iterable[str | Metric],
    x_hat: torch.Tensor,
    x: torch.Tensor,
    degraded: torch.Tensor | None = None,
    data_range: float | torch.Tensor = 1.0,
    **inputs: Any,
) -> dict[str, torch.Tensor]:
    """Evaluate several metrics (names with default parameters, or built ``Metric`` objects) -> ``{name: (B,)}``;
    ``inputs``: ``labels``, ``seg_model``, ``n_classes`` for the metrics that need them."""
    built = build_metrics(metrics)
    _prepare("compute_metrics", x_hat, x)
    return {m.name: m(x_hat, x, degraded=degraded, data_range=data_range, **inputs) for m in built}
