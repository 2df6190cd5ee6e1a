"""Networks: the paper's U-Net, the HyperRecon hypernetwork and a FiLM-conditioned U-Net, in the ``MODELS`` registry.

Every model has ``forward(x (B, C, H, W), lam (B, n_lams) | None = None) -> (B, out, H, W)``, a class attribute
``conditional`` (True when ``forward`` uses ``lam``) and
``weight_l1(lam, batch_size) -> (B,)`` (layer-wise L1 of the main-network conv weights, the AO term R1).
"""

from __future__ import annotations

from torch import nn

from .film import FiLMUNet
from .hyper import HyperUNet
from .registry import MODELS
from .speed import keep_freed_memory, prepare_for_speed
from .unet import InputShapeError, UNet


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = [
    "MODELS",
    "FiLMUNet",
    "HyperUNet",
    "InputShapeError",
    "UNet",
    "count_parameters",
    "keep_freed_memory",
    "prepare_for_speed",
]
