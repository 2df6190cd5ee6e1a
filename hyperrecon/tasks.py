"""Training tasks: what a training step computes per sample for a model and a batch of indices.

:class:`ReconTask` (reconstruction: network input, optional targets, measurements, forward model, composite loss)
and :class:`SegTask` (segmentation: images, integer labels, soft Dice). ``batch_loss(model, idx, lam)`` returns
per-sample totals ``(B,)``, the data-consistency term (for DHS) and the named loss parts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from .accel import stage, with_host_copy
from .errors import ConfigError, DataError
from .losses import CompositeLoss, LossContext


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _to_device(t: Tensor, device: torch.device, channels_last: bool = False, idx: Tensor | None = None) -> Tensor:
    """``t[idx]`` on ``device``; CPU -> GPU through pinned memory without a host wait (:func:`accel.stage`)."""
    t = stage(t, idx, device)
    if channels_last and t.ndim == 4:
        t = t.contiguous(memory_format=torch.channels_last)
    return t


def _move_forward_model(forward_model: Any, device: torch.device) -> Any:
    if forward_model is None or not hasattr(forward_model, "to"):
        return forward_model
    moved = forward_model.to(device)
    return forward_model if moved is None else moved


@dataclass
class ReconTask:
    """Reconstruction training data and loss.

    inputs: network inputs (N, 2, H, W) (zero-filled image as real/imag); targets: (N, 1, H, W) or None (AO);
    measurements: y (N, ...) or None; forward_model: has ``data_consistency(x_hat, y) -> (B,)`` or None;
    loss: the composite loss over k + 1 terms (k = ``n_lams``).
    """

    inputs: Tensor
    targets: Tensor | None
    measurements: Tensor | None
    forward_model: Any
    loss: CompositeLoss

    def __post_init__(self) -> None:
        if self.inputs.ndim != 4 or self.inputs.shape[1] != 2:
            raise DataError(f"recon task inputs: expected shape (N, 2, H, W), got {tuple(self.inputs.shape)}")
        n, _, h, w = self.inputs.shape
        if n < 1:
            raise DataError("recon task inputs: at least one sample is needed, got N=0")
        if self.targets is not None and tuple(self.targets.shape) != (n, 1, h, w):
            raise DataError(f"recon task targets: expected shape {(n, 1, h, w)}, got {tuple(self.targets.shape)}")
        if self.measurements is not None and self.measurements.shape[0] != n:
            raise DataError(
                f"recon task measurements: expected {n} samples (first axis), "
                f"got shape {tuple(self.measurements.shape)}"
            )
        if self.loss.supervised and self.targets is None:
            raise ConfigError(f"loss terms {self.loss.terms} are supervised, but the task has no targets")
        if self.loss.needs_measurement and (self.measurements is None or self.forward_model is None):
            raise ConfigError(f"loss terms {self.loss.terms} need measurements y and a forward model")

    @property
    def n_samples(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def n_lams(self) -> int:
        return self.loss.n_lams

    @property
    def has_dc(self) -> bool:
        return self.loss.has_dc

    def to(self, device: str | torch.device) -> ReconTask:
        """The same task with the forward model on ``device`` (data stay put; batches move when used)."""
        return replace(self, forward_model=_move_forward_model(self.forward_model, torch.device(device)))

    def non_finite_data(self, idx: Tensor) -> list[str]:
        """Names of the data arrays that hold a non-finite value in the samples ``idx``."""
        named = [("inputs", self.inputs), ("targets", self.targets), ("measurements", self.measurements)]
        return [name for name, t in named if t is not None and not bool(torch.isfinite(t[idx]).all())]

    def batch_loss(
        self, model: nn.Module, idx: Tensor, lam: Tensor | None, *, channels_last: bool = False
    ) -> tuple[Tensor, Tensor | None, dict[str, Tensor]]:
        """Per-sample losses of the samples ``idx`` at ``lam`` (B, k): ``(total (B,), dc (B,) | None, parts)``."""
        if lam is None:
            raise ConfigError(f"loss terms {self.loss.terms} need λ of shape (B, {self.n_lams}), but got none")
        device = _model_device(model)
        idx_cpu = idx.cpu()
        x = _to_device(self.inputs, device, channels_last, idx_cpu)
        lam = with_host_copy(lam, device)  # λ checks and grouping read the host copy: no device-to-host sync
        x_hat = model(x, lam) if getattr(model, "conditional", False) else model(x)
        if x_hat.ndim != 4 or x_hat.shape[1] != 1 or x_hat.shape[0] != x.shape[0]:
            raise ConfigError(
                f"recon task: the model must output (B, 1, H, W) reconstructions, got {tuple(x_hat.shape)}"
            )
        ctx = LossContext(
            x_hat=x_hat,
            target=None if self.targets is None else _to_device(self.targets, device, idx=idx_cpu),
            y=None if self.measurements is None else _to_device(self.measurements, device, idx=idx_cpu),
            forward_model=self.forward_model,
            model=model,
            lam=lam,
        )
        total, parts = self.loss(ctx)
        return total, parts.get("dc"), parts


@dataclass
class SegTask:
    """Segmentation training data: images (N, 1, H, W), integer labels (N, H, W) in [0, n_classes).

    The model outputs logits (B, n_classes, H, W); the loss is the soft Dice loss of their softmax (float32).
    """

    images: Tensor
    labels: Tensor
    n_classes: int

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[0] < 1:
            raise DataError(f"seg task images: expected shape (N, C, H, W), got {tuple(self.images.shape)}")
        n, _, h, w = self.images.shape
        if tuple(self.labels.shape) != (n, h, w):
            raise DataError(f"seg task labels: expected shape {(n, h, w)}, got {tuple(self.labels.shape)}")
        if self.labels.is_floating_point() or self.labels.is_complex():
            raise DataError(f"seg task labels: expected integer class labels, got dtype {self.labels.dtype}")
        if not isinstance(self.n_classes, int) or self.n_classes < 2:
            raise ConfigError(f"seg task n_classes: `n_classes >= 2` must hold, but got {self.n_classes!r}")
        lo, hi = int(self.labels.min()), int(self.labels.max())
        if lo < 0 or hi >= self.n_classes:
            raise DataError(f"seg task labels: values must lie in [0, {self.n_classes}), got [{lo}, {hi}]")

    n_lams = 0
    has_dc = False

    @property
    def n_samples(self) -> int:
        return int(self.images.shape[0])

    def to(self, device: str | torch.device) -> SegTask:
        return self

    def non_finite_data(self, idx: Tensor) -> list[str]:
        return [] if bool(torch.isfinite(self.images[idx]).all()) else ["images"]

    def batch_loss(
        self, model: nn.Module, idx: Tensor, lam: Tensor | None = None, *, channels_last: bool = False
    ) -> tuple[Tensor, None, dict[str, Tensor]]:
        """Soft Dice loss per sample: ``(total (B,), None, {"soft_dice": total})``; ``lam`` is ignored."""
        from .metrics import soft_dice_loss

        device = _model_device(model)
        idx_cpu = idx.cpu()
        logits = model(_to_device(self.images, device, channels_last, idx_cpu))
        if logits.ndim != 4 or logits.shape[1] != self.n_classes:
            raise ConfigError(
                f"seg task: the model must output (B, {self.n_classes}, H, W) logits, got {tuple(logits.shape)}"
            )
        with torch.autocast(device_type=device.type, enabled=False):
            probs = torch.softmax(logits.float(), dim=1)
            total = soft_dice_loss(probs, with_host_copy(self.labels[idx_cpu], device))
        return total, None, {"soft_dice": total}


Task = ReconTask | SegTask
