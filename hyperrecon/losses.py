"""Loss terms and the λ-weighted composite loss (paper Eq. 9/10 with matched output scales, Sec. 4.4).

Every loss term maps a :class:`LossContext` to per-sample values of shape ``(B,)``; reductions over the batch
(mean for UHS, top-K for DHS) belong to the samplers. Terms are plugins in ``LOSSES``:

=============  ====================================================================  ==========
name           per-sample value                                                      needs
=============  ====================================================================  ==========
``mae``        mean_p |x̂_p - x_p|                                                    target
``mse``        mean_p (x̂_p - x_p)²                                                   target
``ssim``       1 - SSIM(x̂, x) (11x11 Gaussian window, σ 1.5, data range 1)            target
``dc``         ||M F x̂ - y||² (the forward model's data consistency, Eq. 3)          y, forward model
``tv``         sum_p |x̂[p + e1] - x̂[p]| + |x̂[p + e2] - x̂[p]| (anisotropic TV)        -
``l1_weights`` layer-wise L1 of the main network's conv weights (per sample for H(λ))  model
=============  ====================================================================  ==========

The composite loss with terms L_0..L_k, scales s_0..s_k and λ ∈ [0,1]^k is, per sample,

    total = sum_i c_i(λ) / s_i * L_i,        c = coefficients(λ)  (Eq. 9 for k=1, Eq. 10 for k=2),

so a scale ``s_i`` is the *typical magnitude* of term i and *divides* it (the paper's α_i = 1/s_i); see
``hyperrecon.scales`` for the automatic choices. All terms compute in float32, also under bf16 autocast.

Adding a loss: decorate a class with ``@LOSSES.register("name", description=..., smoke_params={...})``, give it
``supervised`` and ``__call__(ctx) -> (B,)``; the contract tests (:mod:`hyperrecon.testing.contracts`) pick it up
by name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from .coefficients import coefficients
from .errors import ConfigError, TrainingError
from .registry import Registry


@dataclass
class LossContext:
    """Everything a loss term may look at for one mini-batch.

    x_hat: reconstruction (B,1,H,W) float32; target: ground truth (B,1,H,W) or None (AO has none);
    y: measurement (shape set by the forward model) or None; forward_model: object with
    ``data_consistency(x_hat, y) -> (B,)`` or None; model: the network (for weight penalties);
    lam: hyperparameters (B,k) or None.
    """

    x_hat: Tensor
    target: Tensor | None = None
    y: Tensor | None = None
    forward_model: Any = None
    model: Any = None
    lam: Tensor | None = None


class LossTerm:
    """Base class of loss terms: ``__call__(ctx) -> (B,)`` float32 per-sample values."""

    supervised = False  # needs ctx.target
    needs_measurement = False  # needs ctx.y and ctx.forward_model

    def __call__(self, ctx: LossContext) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def _name(self) -> str:
        return getattr(self, "registry_name", type(self).__name__)

    def _target(self, ctx: LossContext) -> Tensor:
        if ctx.target is None:
            raise ConfigError(f"loss '{self._name()}' is supervised and needs ground-truth targets, but got none")
        if ctx.target.shape != ctx.x_hat.shape:
            raise ConfigError(
                f"loss '{self._name()}': target shape {tuple(ctx.target.shape)} differs from the "
                f"reconstruction's {tuple(ctx.x_hat.shape)}"
            )
        return ctx.target


LOSSES: Registry[type[LossTerm]] = Registry("loss")


@LOSSES.register("mae", description="mean absolute error to the target, per sample (supervised)")
class MAELoss(LossTerm):
    supervised = True

    def __call__(self, ctx: LossContext) -> Tensor:
        return (ctx.x_hat - self._target(ctx)).abs().flatten(1).mean(1)


@LOSSES.register("mse", description="mean squared error to the target, per sample (supervised)")
class MSELoss(LossTerm):
    supervised = True

    def __call__(self, ctx: LossContext) -> Tensor:
        return (ctx.x_hat - self._target(ctx)).square().flatten(1).mean(1)


@LOSSES.register(
    "ssim",
    description="1 - SSIM to the target (11x11 Gaussian window, sigma 1.5; supervised)",
    smoke_params={"data_range": 1.0},
)
class SSIMLoss(LossTerm):
    supervised = True

    def __init__(self, data_range: float = 1.0) -> None:
        if not (isinstance(data_range, int | float) and data_range > 0):
            raise ConfigError(f"loss 'ssim' data_range: `data_range > 0` must hold, but got {data_range!r}")
        self.data_range = float(data_range)

    def __call__(self, ctx: LossContext) -> Tensor:
        from .metrics import ssim  # imported late: metrics pulls in its own helpers

        return 1.0 - ssim(ctx.x_hat, self._target(ctx), data_range=self.data_range)


@LOSSES.register("dc", description="data consistency ||M F x_hat - y||^2 with the measurement y (AO)")
class DataConsistencyLoss(LossTerm):
    needs_measurement = True

    def __call__(self, ctx: LossContext) -> Tensor:
        if ctx.forward_model is None or ctx.y is None:
            raise ConfigError("loss 'dc' needs a forward model and measurements y, but the task has none")
        return ctx.forward_model.data_consistency(ctx.x_hat, ctx.y)


@LOSSES.register("tv", description="anisotropic total variation sum |D1 x| + |D2 x| per sample")
class TotalVariationLoss(LossTerm):
    """Forward differences along H and W, no wrap-around: (H-1)·W + H·(W-1) differences per channel, summed."""

    def __call__(self, ctx: LossContext) -> Tensor:
        x = ctx.x_hat
        d1 = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).sum(1)
        d2 = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).sum(1)
        return d1 + d2


@LOSSES.register("l1_weights", description="layer-wise L1 of the main network's conv weights (per sample)")
class WeightL1Loss(LossTerm):
    def __call__(self, ctx: LossContext) -> Tensor:
        if ctx.model is None or not hasattr(ctx.model, "weight_l1"):
            raise ConfigError("loss 'l1_weights' needs a model with a weight_l1(lam, batch_size) method")
        return ctx.model.weight_l1(ctx.lam, ctx.x_hat.shape[0])


class CompositeLoss:
    """Per-sample ``total = sum_i c_i(λ) / s_i * L_i`` over ``k + 1`` named terms.

    ``terms``: loss names in coefficient order (SL: ``["mae", "ssim"]``, so λ=0 is pure MAE; AO:
    ``["dc", "l1_weights", "tv"]``, so λ1 weighs DC). ``scales``: one positive ``s_i`` per term, the typical
    magnitude that term i is divided by. ``params``: optional constructor parameters per term name.
    ``__call__(ctx) -> (total (B,), parts)`` where ``parts[name]`` are the *unscaled* per-sample L_i (B,).
    """

    def __init__(
        self,
        terms: Sequence[str],
        scales: Sequence[float] | None = None,
        params: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        terms = list(terms)
        if len(terms) not in (2, 3):
            raise ConfigError(
                f"loss terms: 2 terms (k=1) or 3 terms (k=2) are needed (paper Eq. 9/10), but got {len(terms)}: {terms}"
            )
        if len(set(terms)) != len(terms):
            raise ConfigError(f"loss terms: each term may appear once, but got {terms}")
        scales = [1.0] * len(terms) if scales is None else [float(s) for s in scales]
        if len(scales) != len(terms):
            raise ConfigError(f"loss scales: one scale per term ({len(terms)}) is needed, but got {len(scales)}")
        for name, s in zip(terms, scales, strict=True):
            if not (math.isfinite(s) and s > 0):
                raise ConfigError(f"loss scales: `scale > 0` (finite) must hold, but got {name}={s}")
        params = dict(params or {})
        for key in params:
            if key not in terms:
                raise ConfigError(f"loss params: '{key}' is not one of the terms {terms}")
        self.terms = terms
        self.scales = scales
        self.params = {k: dict(v) for k, v in params.items()}
        self.modules: list[LossTerm] = [LOSSES.build(name, self.params.get(name), where="loss terms") for name in terms]

    @property
    def n_lams(self) -> int:
        """k, the number of hyperparameters: number of terms - 1."""
        return len(self.terms) - 1

    @property
    def supervised(self) -> bool:
        return any(m.supervised for m in self.modules)

    @property
    def needs_measurement(self) -> bool:
        return any(m.needs_measurement for m in self.modules)

    @property
    def has_dc(self) -> bool:
        """Whether a data-consistency term named ``dc`` is present (DHS ranks samples by it)."""
        return "dc" in self.terms

    def with_scales(self, scales: Sequence[float]) -> CompositeLoss:
        """The same terms with new scales (e.g. after ``hyperrecon.scales`` computed them)."""
        return CompositeLoss(self.terms, scales, self.params)

    def __repr__(self) -> str:
        return f"CompositeLoss(terms={self.terms}, scales={self.scales})"

    def __call__(self, ctx: LossContext) -> tuple[Tensor, dict[str, Tensor]]:
        if ctx.lam is None or ctx.lam.ndim != 2 or ctx.lam.shape[1] != self.n_lams:
            got = None if ctx.lam is None else tuple(ctx.lam.shape)
            raise ConfigError(
                f"loss with terms {self.terms} needs λ of shape (B, {self.n_lams}) (terms = k + 1), but got {got}"
            )
        x_hat = ctx.x_hat
        # Loss terms are reductions that lose precision in bf16: compute them in float32 outside autocast.
        with torch.autocast(device_type=x_hat.device.type, enabled=False):
            ctx = replace(
                ctx,
                x_hat=x_hat.float(),
                target=None if ctx.target is None else ctx.target.float(),
                lam=ctx.lam.float(),
            )
            parts: dict[str, Tensor] = {}
            for name, module in zip(self.terms, self.modules, strict=True):
                value = module(ctx)
                if value.shape != (x_hat.shape[0],):
                    raise TrainingError(
                        f"loss '{name}' returned shape {tuple(value.shape)}, expected per-sample ({x_hat.shape[0]},)"
                    )
                parts[name] = value.float()
            c = coefficients(ctx.lam.to(x_hat.device))
            # c_i / s_i with the scales as Python scalars: no host-to-device copy (on a GPU a synchronising one)
            weights = torch.stack([c[:, i] * (1.0 / s) for i, s in enumerate(self.scales)], dim=1)
            stacked = torch.stack([parts[name] for name in self.terms], dim=1)  # (B, k+1)
            total = (weights * stacked).sum(1)
        return total, parts
