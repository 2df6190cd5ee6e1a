"""The paper's main network: a 4-level U-Net of constant width (reference-notes "Main network").

Topology (h = ``width``, 15 convolutions, 14 BatchNorms)::

    enc0: block(in -> h)            H   x W
    enc1: block(h -> h) after pool  H/2 x W/2
    enc2: block(h -> h) after pool  H/4 x W/4
    enc3: block(h -> h) after pool  H/8 x W/8      (bottleneck)
    dec2: up x2, cat skip enc2 -> block(2h -> h)
    dec1: up x2, cat skip enc1 -> block(2h -> h)
    dec0: up x2, cat skip enc0 -> block(2h -> h)
    head: 1x1 conv h -> out (no activation)

with ``block = [3x3 conv (pad 1) -> BatchNorm2d -> ReLU] x 2``, ``MaxPool2d(2)`` and bilinear x2 upsampling
(``align_corners=True``). At ``in=2, out=1, h=32`` it has exactly 149,409 parameters (148,513 conv + 896 BN).

The topology lives in :class:`UNetSkeleton`, which owns the BatchNorms and calls back for every convolution, so
the hypernetwork (generated conv weights) and the FiLM model (modulation after BN) reuse it unchanged.
Inputs must have H and W divisible by 8 (three poolings); anything else raises :class:`InputShapeError`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..accel import host_copy
from ..errors import DataError
from .registry import MODELS

N_LEVELS = 4
DIVISOR = 2 ** (N_LEVELS - 1)  # H and W must be multiples of this (3 poolings)
N_CONVS = 2 * (2 * N_LEVELS - 1) + 1  # 7 blocks x 2 convs + 1x1 head = 15
N_NORMS = N_CONVS - 1  # every conv except the head is followed by a BatchNorm

ConvFn = Callable[[int, Tensor], Tensor]
ModulateFn = Callable[[int, Tensor], Tensor]


class InputShapeError(DataError, ValueError):
    """A model input (image or λ batch) has the wrong shape or range. Both a ``DataError`` and a ``ValueError``."""


def conv_specs(in_channels: int, out_channels: int, width: int) -> list[tuple[int, int, int]]:
    """``(c_in, c_out, kernel)`` of the 15 convolutions in execution order (encoder, decoder, head)."""
    specs = [(in_channels, width, 3), (width, width, 3)]
    for _ in range(N_LEVELS - 1):  # encoder levels 1..3
        specs += [(width, width, 3), (width, width, 3)]
    for _ in range(N_LEVELS - 1):  # decoder levels: input is cat(upsampled, skip)
        specs += [(2 * width, width, 3), (width, width, 3)]
    specs.append((width, out_channels, 1))
    return specs


def check_channels(in_channels: int, out_channels: int, width: int) -> None:
    """Raise ``ValueError`` (turned into ``ConfigError`` by ``Registry.build``) on non-positive sizes."""
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("width", width)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"`{name} >= 1` (an integer) must hold, but got {name}={value!r}")


def check_image(x: Tensor, in_channels: int) -> None:
    """Raise :class:`InputShapeError` unless ``x`` is ``(B, in_channels, H, W)`` with H, W divisible by 8."""
    if x.ndim != 4 or x.shape[1] != in_channels:
        raise InputShapeError(f"model input: expected shape (B, {in_channels}, H, W), got {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h % DIVISOR or w % DIVISOR or h == 0 or w == 0:
        raise InputShapeError(
            f"model input: H and W must be positive multiples of {DIVISOR} (3 poolings), got H x W = {h} x {w}"
            f" (shape {tuple(x.shape)}); pad or crop the images"
        )


def check_lam(lam: Tensor | None, n_lams: int, batch_size: int) -> Tensor:
    """Raise :class:`InputShapeError` unless ``lam`` is ``(batch_size, n_lams)``, finite and inside [0, 1]."""
    if lam is None:
        raise InputShapeError(f"model input: this model is conditioned on λ; pass lam of shape (B, {n_lams})")
    if lam.ndim != 2 or lam.shape != (batch_size, n_lams):
        raise InputShapeError(
            f"model input: lam must have shape (B, n_lams) = ({batch_size}, {n_lams}), got {tuple(lam.shape)}"
        )
    if not lam.is_floating_point():
        raise InputShapeError(f"model input: lam must be a floating-point tensor, got dtype {lam.dtype}")
    lo, hi = torch.aminmax(host_copy(lam).detach())  # the CPU copy where there is one: no device sync
    if not (0.0 <= float(lo) and float(hi) <= 1.0):  # also rejects NaN
        raise InputShapeError(f"model input: lam must lie in [0, 1], got values in [{float(lo)}, {float(hi)}]")
    return lam


def magnitude(x: Tensor) -> Tensor:
    """|zero-filled| of a 2-channel (real, imag) image: ``(B, 2, H, W) -> (B, 1, H, W)``."""
    return torch.sqrt(x[:, :1] ** 2 + x[:, 1:2] ** 2 + 1e-12)


class UNetSkeleton(nn.Module):
    """U-Net topology with its BatchNorms; convolutions (and optional modulation after BN) are callbacks.

    ``run(x, conv, modulate)`` calls ``conv(i, h)`` for conv ``i`` in ``0..14`` (order of :func:`conv_specs`)
    and, if given, ``modulate(j, h)`` right after BatchNorm ``j`` in ``0..13`` (before its ReLU).
    """

    def __init__(self, in_channels: int, out_channels: int, width: int, residual: bool = False) -> None:
        super().__init__()
        check_channels(in_channels, out_channels, width)
        if residual and (in_channels != 2 or out_channels != 1):
            raise ValueError(
                "residual=True adds |zero-filled| to the output and needs in_channels=2, out_channels=1, "
                f"got in_channels={in_channels}, out_channels={out_channels}"
            )
        self.in_channels, self.out_channels, self.width, self.residual = in_channels, out_channels, width, residual
        self.specs = conv_specs(in_channels, out_channels, width)
        self.norms = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(N_NORMS))

    def _block(
        self, h: Tensor, level: int, conv: ConvFn, modulate: ModulateFn | None, norm: ModulateFn | None
    ) -> Tensor:
        for i in (2 * level, 2 * level + 1):
            h = conv(i, h)
            if norm is not None:
                h = norm(i, h)
            else:
                h = self.norms[i](h)
                if modulate is not None:
                    h = modulate(i, h)
            h = F.relu(h, inplace=True)  # in place: BN backward needs its input, not its output
        return h

    def run(
        self, x: Tensor, conv: ConvFn, modulate: ModulateFn | None = None, norm: ModulateFn | None = None
    ) -> Tensor:
        """``(B, in, H, W) -> (B, out, H, W)``; shapes are checked here.

        ``norm(j, h)``, if given, replaces BatchNorm ``j`` and the modulation (for a caller that folds both into
        one affine map, e.g. FiLM at inference)."""
        check_image(x, self.in_channels)
        skips = []
        h = x
        for level in range(N_LEVELS):
            if level:
                h = F.max_pool2d(h, 2)
            h = self._block(h, level, conv, modulate, norm)
            skips.append(h)
        skips.pop()  # the bottleneck is not a skip
        for level in range(N_LEVELS, 2 * N_LEVELS - 1):
            h = F.interpolate(h, scale_factor=2.0, mode="bilinear", align_corners=True)
            h = torch.cat([h, skips.pop()], dim=1)
            h = self._block(h, level, conv, modulate, norm)
        out = conv(N_CONVS - 1, h)
        if self.residual:
            out = out + magnitude(x).to(out.dtype)
        return out


def conv_l1(weights: list[tuple[Tensor, Tensor]]) -> Tensor:
    """Layer-wise L1 of conv weights: ``sum_l ||W_l||_1 + ||b_l||_1`` with a leading batch axis kept.

    Each ``W_l`` is ``(B, out, in, k, k)`` and ``b_l`` is ``(B, out)``; returns ``(B,)``.
    """
    terms = [w.abs().flatten(1).sum(1) + b.abs().sum(1) for w, b in weights]
    return torch.stack(terms, 0).sum(0)


def expand_l1(value: Tensor, lam: Tensor | None, batch_size: int | None) -> Tensor:
    """Broadcast a scalar L1 to ``(B,)``; B from ``batch_size``, else ``lam.shape[0]``, else 1."""
    b = batch_size if batch_size is not None else (lam.shape[0] if lam is not None else 1)
    return value.expand(b)


@MODELS.register(
    "unet", description="Plain U-Net (paper's main network, 149,409 parameters; one per λ)", smoke_params={"width": 4}
)
class UNet(nn.Module):
    """Plain U-Net (paper's main network, 149,409 parameters at defaults); also the segmentation network.

    ``forward(x (B, in, H, W), lam=None) -> (B, out, H, W)``; ``lam`` is accepted and ignored so every model
    shares one signature. For segmentation use ``out_channels=C``: the output are logits (softmax in the loss).
    """

    conditional = False

    def __init__(self, in_channels: int = 2, out_channels: int = 1, width: int = 32, residual: bool = False) -> None:
        super().__init__()
        self.skeleton = UNetSkeleton(in_channels, out_channels, width, residual)
        self.convs = nn.ModuleList(nn.Conv2d(cin, cout, k, padding=k // 2) for cin, cout, k in self.skeleton.specs)

    def forward(self, x: Tensor, lam: Tensor | None = None) -> Tensor:
        return self.skeleton.run(x, lambda i, h: self.convs[i](h))

    def weight_l1(self, lam: Tensor | None = None, batch_size: int | None = None) -> Tensor:
        """``sum_l ||W_l||_1 + ||b_l||_1`` over the 15 convs, the same for every sample: ``(B,)``."""
        total = torch.stack([c.weight.abs().sum() + c.bias.abs().sum() for c in self.convs]).sum()
        return expand_l1(total, lam, batch_size)
