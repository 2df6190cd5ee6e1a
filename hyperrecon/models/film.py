"""λ-conditioned U-Net by feature-wise affine modulation (FiLM; loss-conditional training, Dosovitskiy & Djolonga 2020).

A cheap alternative to the hypernetwork: the 15 convolutions are ordinary shared weights, and a small MLP on the
loss coefficients ``c = coefficients(λ)`` (``(B, k+1)``) emits, for each of the 14 BatchNorms ``j``, a per-channel
scale and shift applied right after the BatchNorm (before its ReLU)::

    (γ, β) = MLP(c)                    γ, β ∈ R^{B x 14 x width}
    h_j ← BN_j(conv_j(h)) * (1 + γ_j) + β_j

The MLP is ``Linear(k+1, hidden) -> ReLU -> Linear(hidden, hidden) -> ReLU -> Linear(hidden, 2 * 14 * width)``;
its last layer starts at zero so the untrained model is exactly a plain U-Net (modulation learned from there).
Cost over a plain U-Net: one tiny MLP and one multiply-add per BN output in training; at inference (BN on running
statistics) BN and FiLM fold into one per-sample affine map, the cost of the plain U-Net's BN.

``weight_l1`` is the L1 of the shared conv weights, identical for every sample (the modulation is not a conv
weight; an AO R1 term on this model therefore does not depend on λ except through its coefficient).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..coefficients import coefficients, n_terms
from .registry import MODELS
from .unet import N_NORMS, UNetSkeleton, check_image, check_lam, expand_l1


@MODELS.register(
    "film-unet",
    description="U-Net conditioned on λ by FiLM (per-channel scale/shift after each BatchNorm)",
    smoke_params={"n_lams": 1, "width": 4, "hidden": 8},
)
class FiLMUNet(nn.Module):
    """U-Net conditioned on λ by FiLM (per-BN channel scale/shift from an MLP on the loss coefficients)."""

    conditional = True

    def __init__(
        self,
        n_lams: int = 1,
        width: int = 32,
        hidden: int = 64,
        in_channels: int = 2,
        out_channels: int = 1,
        residual: bool = False,
    ) -> None:
        super().__init__()
        n_in = n_terms(n_lams)
        if not isinstance(hidden, int) or isinstance(hidden, bool) or hidden < 1:
            raise ValueError(f"`hidden >= 1` (an integer) must hold, but got hidden={hidden!r}")
        self.n_lams = n_lams
        self.skeleton = UNetSkeleton(in_channels, out_channels, width, residual)
        self.convs = nn.ModuleList(nn.Conv2d(cin, cout, k, padding=k // 2) for cin, cout, k in self.skeleton.specs)
        self.film = nn.Sequential(
            nn.Linear(n_in, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 2 * N_NORMS * width),
        )
        nn.init.zeros_(self.film[-1].weight)
        nn.init.zeros_(self.film[-1].bias)

    def modulation(self, lam: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, n_lams) -> (1 + γ, β)``, each ``(B, 14, width)``."""
        gb = self.film(coefficients(lam.to(self.film[0].weight.dtype)))
        gb = gb.view(lam.shape[0], N_NORMS, 2, self.skeleton.width)
        return 1 + gb[:, :, 0], gb[:, :, 1]

    def forward(self, x: Tensor, lam: Tensor | None = None) -> Tensor:
        check_image(x, self.skeleton.in_channels)
        lam = check_lam(lam, self.n_lams, x.shape[0])
        scale, shift = self.modulation(lam)

        def modulate(j: int, h: Tensor) -> Tensor:
            return torch.addcmul(shift[:, j, :, None, None].to(h.dtype), h, scale[:, j, :, None, None].to(h.dtype))

        norms = self.skeleton.norms
        if not self.training and all(n.running_mean is not None for n in norms):
            # inference: BN is a fixed per-channel affine map a x + c; fold FiLM into it (one pass per layer):
            # (a x + c)(1 + γ) + β = x [a (1 + γ)] + [c (1 + γ) + β]
            folded = []
            for j, n in enumerate(norms):
                a = n.weight / torch.sqrt(n.running_var + n.eps)
                c = n.bias - n.running_mean * a
                folded.append((a * scale[:, j], c * scale[:, j] + shift[:, j]))

            def norm(j: int, h: Tensor) -> Tensor:
                mul, add = folded[j]
                return torch.addcmul(add[:, :, None, None].to(h.dtype), h, mul[:, :, None, None].to(h.dtype))

            return self.skeleton.run(x, lambda i, h: self.convs[i](h), norm=norm)
        return self.skeleton.run(x, lambda i, h: self.convs[i](h), modulate)

    def weight_l1(self, lam: Tensor | None = None, batch_size: int | None = None) -> Tensor:
        """``sum_l ||W_l||_1 + ||b_l||_1`` of the shared convs, the same for every sample: ``(B,)``."""
        total = torch.stack([c.weight.abs().sum() + c.bias.abs().sum() for c in self.convs]).sum()
        return expand_l1(total, lam, batch_size)
