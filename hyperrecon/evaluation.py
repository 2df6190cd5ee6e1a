"""Evaluation of a reconstruction model over a λ grid and a test set (landscapes and curves: :mod:`.landscapes`).

``evaluate_model`` reconstructs every test slice for every λ of a grid and returns an :class:`EvalResult`:

- ``table``: tidy ``pandas.DataFrame`` with columns ``[model, lam1, lam2, slice, metric, value]``, one row per
  (λ, slice, metric), rows ordered λ-major, then slice, then metric. ``lam2`` is NaN for one hyperparameter;
  ``slice`` is the slice id. Image metrics are computed on the raw network output (data range 1, images in [0,1]);
  ``dice`` (a metric that needs ``seg_model``) on the segmentation net's argmax over the reconstruction clipped to
  [0, 1]. Metrics are given as names or as built :class:`hyperrecon.metrics.Metric` objects (e.g. SSIM with the
  study's convention, :func:`hyperrecon.resolve.build_study_metrics`).
- ``ranges``: per *range slice* (``range_slices`` slices at the centres of equal bins of the test set), how many
  λ give ``rPSNR > rpsnr_threshold`` and the pixel range (per-pixel max - min, summed over pixels and its mean per
  pixel; :func:`hyperrecon.metrics.pixel_range`) over those reconstructions. Computed on the fly with running
  max/min images, so a 100x100 grid never holds 10,000 images; NaN when no λ passes.
- ``diverse``: on the first range slice, :func:`hyperrecon.metrics.diverse_pair` with score = PSNR at
  ``diverse_quantile``. The pass records the PSNR of every λ; afterwards only the kept λ (PSNR >= quantile) are
  reconstructed again, one slice at a time, and handed to ``diverse_pair`` with quantile 0 (all kept). Empty
  dict when fewer than two λ were evaluated.
- ``examples``: the same slice's ground truth, input magnitude and reconstructions at up to 5 λ (evenly spaced
  indices of the grid for k=1, the diagonal λ1 = λ2 of a square grid for k=2).
- ``endpoint_recons`` (:func:`endpoint_recons`, called by the eval job): the whole test set reconstructed at the
  two extreme λ of the baseline grid (:func:`endpoint_lams`), from which the report measures how much the image
  itself changes with λ (:mod:`hyperrecon.reporting.sensitivity`).
- ``seconds``: device/wall seconds of the whole evaluation and of the network forward passes alone, and the
  device seconds per slice for one λ (``inference_seconds_per_slice``). Device seconds as in
  :mod:`hyperrecon.timing` (CUDA events on a GPU, process CPU time on the CPU).

λ grids (:func:`lam_grid`): k=1 ``linspace(0, 1, n)[:, None]``; k=2 the product grid in row-major order with
``lam1`` varying slowest, so ``values.reshape(n, n)[i, j]`` belongs to ``(axis[i], axis[j])``. Landscapes use the
same layout: ``grid[i, j]`` is at ``lam1 = axis[i]``, ``lam2 = axis[j]`` (transpose for ``imshow`` with λ1 on x).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from .config import PRECISIONS
from .data.identity import volume_of
from .errors import ConfigError, DataError
from .landscapes import (  # noqa: F401  (re-exported: evaluation's public names before the split)
    TABLE_COLUMNS,
    curve,
    fraction_above,
    interpolate_baselines,
    landscape,
)
from .metrics import Metric
from .timing import DeviceTimer

N_EXAMPLES = 5
_STAGE_MAX_BYTES = 2 * 2**30  # move a data set to the device once when it is smaller than this


# ----------------------------------------------------------------------------------------------------------------
# data


@dataclass
class EvalData:
    """Evaluation slices: ``inputs`` (N, 2, H, W) float32 network input, ``targets`` (N, 1, H, W) ground truth,
    ``degraded`` (N, 1, H, W) input magnitude (for rPSNR), ``labels`` (N, H, W) int64 or None, ``ids`` N strings,
    ``subjects`` N strings (the subject of each slice; default: its volume id, ``data.identity.volume_of``)."""

    inputs: Tensor
    targets: Tensor
    degraded: Tensor
    labels: Tensor | None = None
    ids: list[str] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = int(self.targets.shape[0]) if self.targets.ndim == 4 else -1
        h, w = self.targets.shape[-2:] if self.targets.ndim == 4 else (0, 0)
        if n < 1 or self.targets.shape[1] != 1:
            raise DataError(
                f"eval data targets: expected shape (N, 1, H, W) with N >= 1, got {tuple(self.targets.shape)}"
            )
        if self.inputs.ndim != 4 or self.inputs.shape[0] != n or tuple(self.inputs.shape[-2:]) != (h, w):
            raise DataError(f"eval data inputs: expected shape ({n}, C, {h}, {w}), got {tuple(self.inputs.shape)}")
        if tuple(self.degraded.shape) != (n, 1, h, w):
            raise DataError(f"eval data degraded: expected shape ({n}, 1, {h}, {w}), got {tuple(self.degraded.shape)}")
        if self.labels is not None and tuple(self.labels.shape) != (n, h, w):
            raise DataError(f"eval data labels: expected shape ({n}, {h}, {w}), got {tuple(self.labels.shape)}")
        if not self.ids:
            self.ids = [str(i) for i in range(n)]
        if len(self.ids) != n:
            raise DataError(f"eval data ids: expected {n} ids, got {len(self.ids)}")
        if not self.subjects:
            self.subjects = [volume_of(i) for i in self.ids]
        if len(self.subjects) != n:
            raise DataError(f"eval data subjects: expected {n} subjects, got {len(self.subjects)}")

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def subset(self, indices: Sequence[int] | slice) -> EvalData:
        """The slices at ``indices`` (e.g. ``slice(0, n_test)``), sharing nothing mutable with ``self``."""
        idx = list(range(len(self)))[indices] if isinstance(indices, slice) else [int(i) for i in indices]
        t = torch.as_tensor(idx, dtype=torch.long)
        labels = None if self.labels is None else self.labels[t]
        return EvalData(
            self.inputs[t],
            self.targets[t],
            self.degraded[t],
            labels,
            [self.ids[i] for i in idx],
            [self.subjects[i] for i in idx],
        )

    @classmethod
    def from_arrays(
        cls,
        images: np.ndarray,
        labels: np.ndarray | None,
        forward_model: Any,
        generator_seed: int,
        ids: Sequence[str] | None = None,
        chunk: int = 64,
        subjects: Sequence[str] | None = None,
    ) -> EvalData:
        """Measure each image ``(N, H, W)`` float32 once: ``y = forward_model.measure(x, generator)``.

        One ``torch.Generator`` seeded with ``generator_seed`` draws the noise of all images, in chunks of
        ``chunk`` images in order, so the result is a deterministic function of (images, seed, chunk).
        ``inputs = network_input(y)``, ``degraded = degraded(y)``; ``labels`` become int64.
        """
        images = np.asarray(images)
        if images.ndim != 3 or images.shape[0] < 1:
            raise DataError(f"eval images: expected an array of shape (N, H, W) with N >= 1, got {images.shape}")
        if labels is not None and np.asarray(labels).shape != images.shape:
            raise DataError(
                f"eval labels: expected shape {images.shape} like the images, got {np.asarray(labels).shape}"
            )
        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
        gen = torch.Generator().manual_seed(int(generator_seed))
        inputs, degraded = [], []
        for start in range(0, x.shape[0], chunk):
            y = forward_model.measure(x[start : start + chunk], generator=gen)
            inputs.append(forward_model.network_input(y).float().cpu())
            degraded.append(forward_model.degraded(y).float().cpu())
        lab = None if labels is None else torch.from_numpy(np.asarray(labels).astype(np.int64))
        return cls(
            torch.cat(inputs),
            x,
            torch.cat(degraded),
            lab,
            list(ids) if ids is not None else [],
            list(subjects) if subjects is not None else [],
        )


def lam_grid(n_lams: int, points: int) -> np.ndarray:
    """Evaluation grid ``(P, k)``: k=1 ``linspace(0,1,points)[:, None]`` (P = points); k=2 the product grid,
    row-major with ``lam1`` varying slowest (P = points²)."""
    if n_lams not in (1, 2):
        raise ConfigError(f"lam_grid: n_lams must be 1 or 2, got {n_lams!r}")
    if not isinstance(points, int | np.integer) or points < 2:
        raise ConfigError(f"lam_grid: `points >= 2` must hold, but got points={points!r}")
    axis = np.linspace(0.0, 1.0, int(points))
    if n_lams == 1:
        return axis[:, None]
    a, b = np.meshgrid(axis, axis, indexing="ij")
    return np.stack([a.ravel(), b.ravel()], axis=1)


def _check_lams(lams: np.ndarray, where: str) -> np.ndarray:
    arr = np.asarray(lams, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] not in (1, 2):
        raise ConfigError(f"{where}: λ grid must have shape (P, 1) or (P, 2), got {np.asarray(lams).shape}")
    if not np.all(np.isfinite(arr)) or arr.min() < 0.0 or arr.max() > 1.0:
        raise ConfigError(f"{where}: λ values must lie in [0, 1], got [{np.nanmin(arr)}, {np.nanmax(arr)}]")
    return arr


# ----------------------------------------------------------------------------------------------------------------
# inference


def _device(device: str | torch.device) -> torch.device:
    return device if isinstance(device, torch.device) else torch.device(device)


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ConfigError(f"precision: expected one of {', '.join(PRECISIONS)}, got '{precision}'")


@contextlib.contextmanager
def _inference(models: Sequence[nn.Module | None], device: torch.device, precision: str) -> Iterator[None]:
    """Eval mode, on ``device``, channels_last, inference mode and (bf16) autocast; training flags restored."""
    _check_precision(precision)
    live = [m for m in models if m is not None]
    flags = [m.training for m in live]
    for m in live:
        m.eval()
        m.to(device)
        m.to(memory_format=torch.channels_last)
    try:
        with (
            torch.inference_mode(),
            torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16"),
        ):
            yield
    finally:
        for m, flag in zip(live, flags, strict=True):
            m.train(flag)


def _lam_row(model: nn.Module, lam: np.ndarray | None, device: torch.device) -> Tensor | None:
    """λ as a ``(1, k)`` float32 tensor for a conditional model, None for a plain one."""
    if not getattr(model, "conditional", False):
        return None
    if lam is None:
        raise ConfigError(f"reconstruct: {type(model).__name__} is conditioned on λ; pass lam of shape (k,)")
    arr = np.asarray(lam, dtype=np.float64).reshape(-1)
    k = getattr(model, "n_lams", arr.size)
    if arr.size != k:
        raise ConfigError(f"reconstruct: {type(model).__name__} takes {k} hyperparameter(s), got λ = {arr.tolist()}")
    return torch.as_tensor(arr, dtype=torch.float32, device=device).view(1, -1)


def _forward(model: nn.Module, x: Tensor, lam_row: Tensor | None) -> Tensor:
    """One batch ``(b, 2, H, W) -> (b, 1, H, W)`` float32. Every row gets the same λ (an expanded view), so the
    hypernetwork groups the batch into one λ and generates its weights once (its dense single-group path)."""
    x = x.contiguous(memory_format=torch.channels_last)
    out = model(x) if lam_row is None else model(x, lam_row.expand(x.shape[0], -1))
    return out.float()


def _stage(t: Tensor | None, device: torch.device, total_bytes: int) -> Tensor | None:
    """Move a data tensor to the device once if the data set is small enough, else leave it (moved per batch)."""
    if t is None or total_bytes > _STAGE_MAX_BYTES:
        return t
    return t.to(device)


def _staged(data: EvalData, device: torch.device) -> EvalData:
    tensors = [data.inputs, data.targets, data.degraded] + ([data.labels] if data.labels is not None else [])
    total = sum(t.numel() * t.element_size() for t in tensors)
    return EvalData(
        _stage(data.inputs, device, total),
        _stage(data.targets, device, total),
        _stage(data.degraded, device, total),
        _stage(data.labels, device, total),
        data.ids,
        data.subjects,
    )


def reconstruct(
    model: nn.Module,
    inputs: Tensor,
    lam: np.ndarray | None,
    *,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
) -> Tensor:
    """Reconstruct ``inputs`` (N, C, H, W) with one λ ``(k,)`` for every sample -> (N, 1, H, W) float32 on the CPU.

    Eval mode, ``torch.inference_mode``, channels_last, bf16 autocast when ``precision == "bf16"``. ``lam`` is
    ignored (may be None) for a plain U-Net. The model is moved to ``device`` and its training flag restored.
    """
    dev = _device(device)
    outs = []
    with _inference([model], dev, precision):
        row = _lam_row(model, lam, dev)
        for start in range(0, inputs.shape[0], batch_size):
            outs.append(_forward(model, inputs[start : start + batch_size].to(dev), row).cpu())
    return torch.cat(outs)


def endpoint_lams(baseline_lams: Sequence[Sequence[float]]) -> np.ndarray:
    """The two extreme λ of a baseline grid, ``(2, k)``: its lowest and its highest corner (SL: min and max λ; AO:
    (min λ1, min λ2) and (max λ1, max λ2)). λ-sensitivity compares the reconstructions at these two λ, where the
    baselines have trained models too."""
    arr = _check_lams(np.asarray(baseline_lams, dtype=np.float64), "endpoint_lams")
    return np.stack([arr.min(0), arr.max(0)])


def endpoint_recons(model: nn.Module, data: EvalData, lams: np.ndarray, **kw: Any) -> np.ndarray:
    """``(len(lams), N, H, W)`` float32: every slice of ``data`` reconstructed at each λ row of ``lams`` (a plain
    U-Net ignores λ: pass its own λ once). ``kw`` as :func:`reconstruct` (batch_size, device, precision)."""
    lams = _check_lams(lams, "endpoint_recons")
    return np.stack([reconstruct(model, data.inputs, lam, **kw)[:, 0].numpy() for lam in lams]).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------
# metrics of one batch


def check_metrics(metrics: Sequence[str | Metric], seg_model: nn.Module | None) -> list[Metric]:
    """The metrics to compute, built (names with default parameters; unknown names fail with a did-you-mean, a
    name given twice with a ``ConfigError``); a metric that needs a segmentation net needs ``seg_model``."""
    from .metrics import build_metrics

    built = build_metrics(metrics, where="evaluation metrics")
    for m in built:
        if "seg_model" in m.needs and seg_model is None:
            raise ConfigError(f"evaluation metrics: '{m.name}' needs a segmentation model (seg_model=None)")
    return built


def batch_metrics(
    metrics: Sequence[Metric],
    x_hat: Tensor,
    target: Tensor,
    degraded: Tensor,
    *,
    labels: Tensor | None = None,
    seg_model: nn.Module | None = None,
    n_classes: int | None = None,
    data_range: float = 1.0,
) -> dict[str, Tensor]:
    """Per-sample values ``{name: (b,)}`` of ``metrics`` (built, :func:`check_metrics`) for reconstructions
    ``x_hat`` (b, 1, H, W); ``labels``, ``seg_model`` and ``n_classes`` go to the metrics that need them (Dice)."""
    inputs: dict[str, Any] = dict(
        degraded=degraded, labels=labels, seg_model=seg_model, n_classes=n_classes, data_range=data_range
    )
    return {m.name: m(x_hat, target, **inputs) for m in metrics}


# ----------------------------------------------------------------------------------------------------------------
# the model objective of a λ search


def model_objectives(
    model: Any,
    val_data: Any,
    metrics: Sequence[Any],
    *,
    device: str = "cpu",
    precision: str = "fp32",
    batch_size: int = 32,
    seg_model: Any = None,
    n_classes: int | None = None,
) -> Callable[[np.ndarray | None], tuple[dict[str, float], float]]:
    """``objectives_fn(λ) -> ({metric: mean over the validation slices}, device seconds)``: one pass.

    Reconstruct every validation slice at λ (:func:`hyperrecon.evaluation.reconstruct`'s settings; λ is ignored
    by a plain U-Net, pass None) and compute each of ``metrics`` (names, or metrics built with their parameters,
    :func:`hyperrecon.metrics.build_metrics`; one that needs a segmentation net, ``dice``, needs ``seg_model``).
    The timed span (:class:`hyperrecon.timing.DeviceTimer`) covers the forward passes and the metrics, i.e. one
    trial's work. The model objective of a λ search (:mod:`hyperrecon.search`).
    """
    built = check_metrics(metrics, seg_model)
    names = [m.name for m in built]
    dev = torch.device(device) if isinstance(device, str) else device
    staged = _staged(val_data, dev)
    n = len(val_data)

    def objectives_fn(lam: np.ndarray | None) -> tuple[dict[str, float], float]:
        timer = DeviceTimer(dev)
        totals = torch.zeros(len(metrics), dtype=torch.float64, device=dev)
        with timer, _inference([model, seg_model], dev, precision):
            row = _lam_row(model, lam, dev)
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)
                x_hat = _forward(model, staged.inputs[start:stop].to(dev), row)
                labels = None if staged.labels is None else staged.labels[start:stop].to(dev)
                vals = batch_metrics(
                    built,
                    x_hat,
                    staged.targets[start:stop].to(dev),
                    staged.degraded[start:stop].to(dev),
                    labels=labels,
                    seg_model=seg_model,
                    n_classes=n_classes,
                )
                totals += torch.stack([vals[m].double().sum() for m in names])
            means = (totals / n).tolist()  # synchronises inside the timed span
        return dict(zip(names, means, strict=True)), timer.device_seconds

    return objectives_fn


# ----------------------------------------------------------------------------------------------------------------
# evaluate_model


@dataclass
class EvalResult:
    """What :func:`evaluate_model` returns (see the module docstring for each part)."""

    table: pd.DataFrame
    ranges: pd.DataFrame
    diverse: dict[str, Any]
    examples: dict[str, Any]
    seconds: dict[str, float]


def range_slice_indices(n: int, count: int) -> list[int]:
    """``count`` slice indices at the centres of equal bins of ``range(n)`` (e.g. n=50, 4 -> 6, 18, 31, 43)."""
    count = max(1, min(int(count), n))
    return sorted({int((i + 0.5) * n / count) for i in range(count)})


def example_lam_indices(lams: np.ndarray, count: int = N_EXAMPLES) -> list[int]:
    """Up to ``count`` grid rows: evenly spaced indices (k=1 or an irregular grid), the diagonal of a square
    k=2 grid from :func:`lam_grid`."""
    p = lams.shape[0]
    side = int(round(np.sqrt(p)))
    if lams.shape[1] == 2 and side * side == p and side > 1 and np.allclose(lams, lam_grid(2, side)):
        diag = np.unique(np.round(np.linspace(0, side - 1, min(count, side))).astype(int))
        return [int(i * side + i) for i in diag]
    return [int(i) for i in np.unique(np.round(np.linspace(0, p - 1, min(count, p))).astype(int))]


def _table(
    model_name: str, lams: np.ndarray, ids: list[str], names: list[str], values: np.ndarray, subjects: list[str]
) -> pd.DataFrame:
    p, n, m = values.shape
    lam2 = lams[:, 1] if lams.shape[1] == 2 else np.full(p, np.nan)
    return pd.DataFrame(
        {
            "model": np.full(p * n * m, model_name, dtype=object),
            "lam1": np.repeat(lams[:, 0], n * m),
            "lam2": np.repeat(lam2, n * m),
            "slice": np.tile(np.repeat(np.asarray(ids, dtype=object), m), p),
            "metric": np.tile(np.asarray(names, dtype=object), p * n),
            "value": values.reshape(-1),
            "subject": np.tile(np.repeat(np.asarray(subjects, dtype=object), m), p),  # the statistics' unit
        },
        columns=TABLE_COLUMNS,  # the merge inserts `replicate` before `value`
    )


def evaluate_model(
    model: nn.Module,
    model_name: str,
    data: EvalData,
    lams: np.ndarray,
    metrics: Sequence[str | Metric],
    *,
    seg_model: nn.Module | None = None,
    n_classes: int | None = None,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    batch_size: int = 32,
    range_slices: int = 4,
    rpsnr_threshold: float = 0.0,
    diverse_quantile: float = 0.9,
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Evaluate ``model`` on every slice of ``data`` for every λ of ``lams`` (P, k); see the module docstring.

    A baseline (plain U-Net) is evaluated with ``lams`` = its single λ. ``progress(done, total)`` is called after
    each λ. ``metrics``: names (default parameters) or built metrics (``METRICS.build``); a metric that needs a
    segmentation net (``dice``) needs ``seg_model`` and labelled ``data``. Rows of the table: P * N * len(metrics).
    """
    lams = _check_lams(lams, f"evaluate_model '{model_name}'")
    built = check_metrics(metrics, seg_model)
    all_names = [m.name for m in built]
    if not 0.0 <= float(diverse_quantile) <= 1.0:
        raise ConfigError(f"evaluate_model: `0 <= diverse_quantile <= 1` must hold, but got {diverse_quantile!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"evaluate_model: `batch_size >= 1` must hold, but got batch_size={batch_size!r}")
    dev = _device(device)
    p_count, n = lams.shape[0], len(data)
    h, w = data.targets.shape[-2:]
    ranged = range_slice_indices(n, range_slices)  # ranged[0]: the slice of the diverse pair and examples

    values = np.empty((p_count, n, len(all_names)), dtype=np.float64)
    track = _SliceTracker(ranged, p_count, (h, w), rpsnr_threshold, example_lam_indices(lams), dev)
    total = DeviceTimer(dev)
    infer = DeviceTimer(dev)
    with total, _inference([model, seg_model], dev, precision):
        staged = _staged(data, dev)
        for p, lam in enumerate(lams):
            row = _lam_row(model, lam, dev)
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)
                target = staged.targets[start:stop].to(dev)
                degraded = staged.degraded[start:stop].to(dev)
                labels = None if staged.labels is None else staged.labels[start:stop].to(dev)
                with infer:
                    x_hat = _forward(model, staged.inputs[start:stop].to(dev), row)
                vals = batch_metrics(
                    built, x_hat, target, degraded, labels=labels, seg_model=seg_model, n_classes=n_classes
                )
                values[p, start:stop] = torch.stack([vals[m] for m in all_names], 1).double().cpu().numpy()
                track.update(p, start, x_hat, target, degraded)
            if progress is not None:
                progress(p + 1, p_count)
        diverse = _diverse(model, data, lams, ranged[0], track.focus_psnr, diverse_quantile, values, all_names, dev)

    table = _table(model_name, lams, data.ids, all_names, values, data.subjects)
    ranges = track.ranges(model_name, data.ids)
    slices_done = p_count * n
    seconds = {
        "device_seconds": total.device_seconds,
        "wall_seconds": total.wall_seconds,
        "inference_device_seconds": infer.device_seconds,
        "inference_wall_seconds": infer.wall_seconds,
        "inference_seconds_per_slice": infer.device_seconds / slices_done,
        "inference_wall_seconds_per_slice": infer.wall_seconds / slices_done,
        "n_forward_slices": float(slices_done),
    }
    focus, rows = ranged[0], track.example_rows
    example = {
        "slice": data.ids[focus],
        "slice_index": focus,
        "target": data.targets[focus, 0].cpu().numpy().astype(np.float32),
        "input": data.degraded[focus, 0].cpu().numpy().astype(np.float32),
        "lams": lams[rows].copy(),
        "recons": np.stack(track.examples),
        "metrics": [dict(zip(all_names, values[p, focus].tolist(), strict=True)) for p in rows],
    }
    return EvalResult(table, ranges, diverse, example, seconds)


class _SliceTracker:
    """Streams over (λ, batch): running max/min images of the range slices over the λ whose rPSNR exceeds the
    threshold, the rPSNR of every (λ, range slice), the PSNR of the focus slice (``ranged[0]``) for every λ and its
    reconstructions at the example λ rows."""

    def __init__(
        self,
        ranged: list[int],
        p_count: int,
        shape: tuple[int, int],
        threshold: float,
        example_rows: list[int],
        dev: torch.device,
    ) -> None:
        self.ranged, self.threshold, self.example_rows = ranged, float(threshold), example_rows
        self.gains = np.empty((p_count, len(ranged)), dtype=np.float64)
        self.focus_psnr = np.empty(p_count, dtype=np.float64)
        self.hi = torch.full((len(ranged), 1, *shape), -torch.inf, device=dev)
        self.lo = torch.full((len(ranged), 1, *shape), torch.inf, device=dev)
        self.examples: list[np.ndarray] = []

    def update(self, p: int, start: int, x_hat: Tensor, target: Tensor, degraded: Tensor) -> None:
        from .metrics import psnr, rpsnr

        local = [(r, s - start) for r, s in enumerate(self.ranged) if start <= s < start + x_hat.shape[0]]
        if not local:
            return
        pos = torch.as_tensor([i for _, i in local], device=x_hat.device)
        sub, sub_t, sub_d = x_hat[pos], target[pos], degraded[pos]
        gains = rpsnr(sub, sub_t, sub_d).double().cpu().numpy()
        for j, (r, _) in enumerate(local):
            self.gains[p, r] = gains[j]
            if gains[j] > self.threshold:
                self.hi[r] = torch.maximum(self.hi[r], sub[j])
                self.lo[r] = torch.minimum(self.lo[r], sub[j])
            if r == 0:
                self.focus_psnr[p] = float(psnr(sub[j : j + 1], sub_t[j : j + 1]))
                if p in self.example_rows:
                    self.examples.append(sub[j, 0].cpu().numpy().astype(np.float32))

    def ranges(self, model_name: str, ids: list[str]) -> pd.DataFrame:
        rows = []
        h, w = self.hi.shape[-2:]
        for r, s in enumerate(self.ranged):
            above = int(np.sum(self.gains[:, r] > self.threshold))
            # as metrics.pixel_range: float32 spread, float64 sum; undefined (NaN) over an empty set
            total = float((self.hi[r, 0] - self.lo[r, 0]).double().sum()) if above else float("nan")
            rows.append(
                {
                    "model": model_name,
                    "slice": ids[s],
                    "slice_index": s,
                    "n_above": above,
                    "n_lams": int(self.gains.shape[0]),
                    "rpsnr_threshold": self.threshold,
                    "range_sum": total,
                    "range_mean_per_pixel": total / (h * w),
                }
            )
        return pd.DataFrame(rows)


def _diverse(
    model: nn.Module,
    data: EvalData,
    lams: np.ndarray,
    focus: int,
    scores: np.ndarray,
    quantile: float,
    values: np.ndarray,
    names: list[str],
    dev: torch.device,
) -> dict[str, Any]:
    """``diverse_pair`` on the focus slice: the kept λ (as diverse_pair keeps them) are reconstructed again."""
    from .metrics import diverse_pair

    valid = np.flatnonzero(~np.isnan(scores))
    if valid.size < 2:
        return {}
    kept = valid[scores[valid] >= np.quantile(scores[valid], quantile)]  # the rule of metrics.diverse_pair
    if kept.size < 2:
        kept = valid[np.argsort(-scores[valid], kind="stable")[:2]]
    kept = np.sort(kept)
    x = data.inputs[focus : focus + 1].to(dev)
    recons = torch.cat([_forward(model, x, _lam_row(model, lams[i], dev)) for i in kept]).cpu().numpy()
    pair = diverse_pair(recons, scores[kept], quantile=0.0)
    a, b = int(kept[pair.i]), int(kept[pair.j])
    return {
        "slice": data.ids[focus],
        "slice_index": focus,
        "quantile": float(quantile),
        "n_kept": int(kept.size),
        "distance": pair.distance,
        "lam_a": lams[a].tolist(),
        "lam_b": lams[b].tolist(),
        "metrics_a": dict(zip(names, values[a, focus].tolist(), strict=True)),
        "metrics_b": dict(zip(names, values[b, focus].tolist(), strict=True)),
        "psnr_a": float(scores[a]),
        "psnr_b": float(scores[b]),
        "image_a": recons[pair.i, 0].astype(np.float32),
        "image_b": recons[pair.j, 0].astype(np.float32),
        "target": data.targets[focus, 0].cpu().numpy().astype(np.float32),
    }
