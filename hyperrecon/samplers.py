"""Training-time λ distributions ("samplers"; not to be confused with test-time *search strategies*).

A sampler does two things per training step (paper Algorithm 1):

- ``sample(batch_size, n_lams, generator, step) -> lam (B, k)``: the λ of every sample of the mini-batch, drawn
  with the given ``torch.Generator`` only (the global RNG is never touched), returned float32 on the CPU.
- ``reduce(total (B,), dc (B,) | None, step) -> scalar``: the loss to back-propagate from the per-sample totals.

Registered samplers:

- ``uniform`` (UHS): λ ~ U[0,1]^k, loss = batch mean.
- ``dhs`` (data-driven hyperparameter sampling): λ ~ U[0,1]^k, but only the ``top_k`` samples with the *lowest*
  data-consistency loss of the batch are back-propagated (mean over them); the others get no gradient. With
  ``groups`` (G distinct λ per batch) the *λ* are ranked, not the images: each group's DC is the mean over its B/G
  samples and the round(top_k·G/B) groups of lowest mean DC are kept (at least one). Ranking single samples there
  kept the easiest images whatever their λ (issue 15: the kept λ of ``quick`` were exactly U[0,1]). Needs a
  ``dc`` term: building it with ``has_dc=False`` (the study runner passes whether its loss has one) is a
  ``ConfigError``, and ``reduce`` without dc values is one too. ``top_k`` defaults to B/4 (paper: 8 of 32);
  ``warmup_steps`` of plain UHS may come first (the conference version did so). The λ it kept are recorded
  (``kept_lams()``, one row per kept sample, or per kept group under ``groups``; ``kept_steps()`` their steps) for
  the DHS histogram and the uniformity test of the reports (:mod:`hyperrecon.dhs_check`).
- ``fixed``: one constant λ for every sample (per-λ baselines).

``groups`` (uniform and dhs): ``None`` draws one λ per sample. ``G`` draws only G distinct λ per mini-batch, each
shared by a contiguous block of B/G samples (B must be divisible by G). This is a *speed/quality trade-off*: a
hypernetwork can then generate G weight sets and run G dense convolutions on B/G samples each (fast, bf16 and
channels_last friendly) instead of one grouped convolution with B groups, at the price of fewer distinct λ per
gradient step (noisier coverage of [0,1]^k for the same number of steps).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .errors import ConfigError
from .registry import Registry


class LamSampler:
    """Base class: per-sample or grouped uniform draws and mean reduction."""

    def __init__(self, groups: int | None = None) -> None:
        if groups is not None and (not isinstance(groups, int) or isinstance(groups, bool) or groups < 1):
            raise ConfigError(f"sampler groups: `groups >= 1` (an integer) or none must hold, but got {groups!r}")
        self.groups = groups
        self.last_lam: Tensor | None = None  # λ of the latest ``sample`` call, (B, k)

    def _name(self) -> str:
        return getattr(self, "registry_name", type(self).__name__)

    def validate(self, batch_size: int) -> None:
        """Raise ``ConfigError`` if this sampler cannot work with mini-batches of ``batch_size``."""
        if self.groups is not None and batch_size % self.groups != 0:
            raise ConfigError(
                f"sampler '{self._name()}' groups: batch_size ({batch_size}) must be divisible by groups "
                f"({self.groups})"
            )

    def _draw(self, n: int, n_lams: int, generator: torch.Generator) -> Tensor:
        return torch.rand(n, n_lams, generator=generator, dtype=torch.float32)

    def sample(self, batch_size: int, n_lams: int, generator: torch.Generator, step: int) -> Tensor:
        if n_lams < 1:
            raise ConfigError(f"sampler '{self._name()}': n_lams >= 1 must hold, but got {n_lams}")
        self.validate(batch_size)
        if self.groups is None:
            lam = self._draw(batch_size, n_lams, generator)
        else:
            lam = self._draw(self.groups, n_lams, generator).repeat_interleave(batch_size // self.groups, dim=0)
        self.last_lam = lam
        return lam

    def reduce(self, total: Tensor, dc: Tensor | None, step: int) -> Tensor:
        return total.mean()

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors/containers to checkpoint (loadable with ``torch.load(weights_only=True)``)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


SAMPLERS: Registry[type[LamSampler]] = Registry("sampler")


@SAMPLERS.register("uniform", description="UHS: λ ~ U[0,1]^k, batch-mean loss", smoke_params={"groups": 2})
class UniformSampler(LamSampler):
    """Uniform hyperparameter sampling (UHS, paper Sec. 4.2): the base class's draws and batch mean."""


@SAMPLERS.register(
    "dhs",
    description="DHS: λ ~ U[0,1]^k, back-propagate only the top_k samples of lowest DC loss",
    smoke_params={"top_k": 2, "warmup_steps": 1},
)
class DHSSampler(LamSampler):
    """Data-driven hyperparameter sampling (paper Sec. 4.3, Algorithm 1).

    ``top_k``: K samples kept per batch (default ``max(1, B // 4)``); ``1 <= K <= B`` must hold.
    ``warmup_steps``: steps of plain UHS first. ``history_limit``: most recent kept λ rows remembered.
    ``has_dc``: whether the composite loss has a ``dc`` term (False -> ``ConfigError``).
    """

    def __init__(
        self,
        top_k: int | None = None,
        warmup_steps: int = 0,
        groups: int | None = None,
        has_dc: bool = True,
        history_limit: int = 200_000,
    ) -> None:
        super().__init__(groups)
        if not has_dc:
            raise ConfigError(
                "sampler 'dhs' ranks samples by their data-consistency loss, but the loss has no 'dc' term; "
                "add 'dc' to the loss terms or use sampler 'uniform'"
            )
        if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
            raise ConfigError(f"sampler 'dhs' top_k: `top_k >= 1` must hold, but got top_k={top_k!r}")
        if not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise ConfigError(f"sampler 'dhs' warmup_steps: `warmup_steps >= 0` must hold, but got {warmup_steps!r}")
        if not isinstance(history_limit, int) or history_limit < 0:
            raise ConfigError(f"sampler 'dhs' history_limit: `history_limit >= 0` must hold, got {history_limit!r}")
        self.top_k = top_k
        self.warmup_steps = warmup_steps
        self.history_limit = history_limit
        self.last_kept: Tensor | None = None  # indices kept by the latest reduce, (K,)
        self._kept_lams: list[Tensor] = []
        self._kept_steps: list[Tensor] = []
        self._n_kept = 0

    def k_for(self, batch_size: int) -> int:
        return self.top_k if self.top_k is not None else max(1, batch_size // 4)

    def validate(self, batch_size: int) -> None:
        super().validate(batch_size)
        k = self.k_for(batch_size)
        if k > batch_size:
            raise ConfigError(
                f"sampler 'dhs' top_k: `1 <= top_k <= batch_size` must hold, but got top_k={k} "
                f"with batch_size={batch_size}"
            )
        if self.groups == 1:
            raise ConfigError(
                "sampler 'dhs' groups: DHS selects among the distinct λ of a batch, so `groups >= 2` "
                "(or none) must hold, but got groups=1"
            )

    def groups_kept(self, batch_size: int) -> int:
        """Under ``groups``: how many of the G distinct λ of a batch are kept, round(K·G/B) within [1, G]."""
        if self.groups is None:
            raise ValueError("groups_kept: this sampler draws one λ per sample")
        return min(self.groups, max(1, round(self.k_for(batch_size) * self.groups / batch_size)))

    def reduce(self, total: Tensor, dc: Tensor | None, step: int) -> Tensor:
        batch_size = total.shape[0]
        if step < self.warmup_steps:
            kept = torch.arange(batch_size, device=total.device)
        else:
            if dc is None:
                raise ConfigError("sampler 'dhs' needs the per-sample data-consistency loss, but the loss has no 'dc'")
            self.validate(batch_size)
            # Rank by the DC loss alone; no gradient flows through the ranking.
            dc = dc.detach().float()
            if self.groups is None:
                kept = torch.topk(dc, self.k_for(batch_size), largest=False, sorted=True).indices
            else:
                # ``sample`` gave each λ a contiguous block of b = B/G samples: rank the λ by their block's mean.
                b = batch_size // self.groups
                order = torch.topk(
                    dc.view(self.groups, b).mean(1), self.groups_kept(batch_size), largest=False, sorted=True
                ).indices
                kept = (order[:, None] * b + torch.arange(b, device=dc.device)).flatten()
        self.last_kept = kept
        self._record(kept, step)
        return total[kept].mean()

    def _record(self, kept: Tensor, step: int) -> None:
        if self.last_lam is None or self.history_limit == 0:
            return
        rows = kept.cpu()
        if self.groups is not None:
            rows = rows[:: self.last_lam.shape[0] // self.groups]  # one row per kept λ, not per sample
        lams = self.last_lam[rows].clone()
        self._kept_lams.append(lams)
        self._kept_steps.append(torch.full((lams.shape[0],), step, dtype=torch.int64))
        self._n_kept += lams.shape[0]
        while self._n_kept - self._kept_lams[0].shape[0] >= self.history_limit:
            self._n_kept -= self._kept_lams.pop(0).shape[0]
            self._kept_steps.pop(0)

    def kept_lams(self, since_step: int | None = None) -> Tensor:
        """λ rows that were back-propagated, (n, k), optionally only those from steps >= ``since_step``."""
        if not self._kept_lams:
            k = 0 if self.last_lam is None else self.last_lam.shape[1]
            return torch.zeros(0, k)
        lams, steps = torch.cat(self._kept_lams), torch.cat(self._kept_steps)
        return lams if since_step is None else lams[steps >= since_step]

    def kept_steps(self) -> Tensor:
        """The training step of every row of :meth:`kept_lams` ``(n,)`` int64."""
        return torch.cat(self._kept_steps) if self._kept_steps else torch.zeros(0, dtype=torch.int64)

    @property
    def kept_history(self) -> list[Tensor]:
        """Per step, the kept λ (K, k) (as many steps as ``history_limit`` rows allow)."""
        return list(self._kept_lams)

    def state_dict(self) -> dict[str, Any]:
        if not self._kept_lams:
            return {"kept_lams": torch.zeros(0), "kept_steps": torch.zeros(0, dtype=torch.int64)}
        return {"kept_lams": torch.cat(self._kept_lams), "kept_steps": torch.cat(self._kept_steps)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        lams, steps = state.get("kept_lams"), state.get("kept_steps")
        self._kept_lams, self._kept_steps, self._n_kept = [], [], 0
        if lams is None or steps is None or lams.numel() == 0:
            return
        # Re-split into per-step chunks so that trimming stays per step.
        for s in torch.unique_consecutive(steps):
            mask = steps == s
            self._kept_lams.append(lams[mask])
            self._kept_steps.append(steps[mask])
            self._n_kept += int(mask.sum())


@SAMPLERS.register("fixed", description="one constant λ for every sample (per-λ baselines)", smoke_params={"lam": 0.5})
class FixedSampler(LamSampler):
    """``lam``: a number (used for every one of the k hyperparameters) or a list of k numbers in [0, 1]."""

    def __init__(self, lam: float | Sequence[float]) -> None:
        super().__init__(None)
        values = [lam] if isinstance(lam, int | float) else list(lam)
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0.0 <= float(v) <= 1.0:
                raise ConfigError(f"sampler 'fixed' lam: `0 <= lam <= 1` must hold, but got lam={lam!r}")
        if not values:
            raise ConfigError("sampler 'fixed' lam: at least one value is needed, but got an empty list")
        self.lam = [float(v) for v in values]

    def sample(self, batch_size: int, n_lams: int, generator: torch.Generator, step: int) -> Tensor:
        if len(self.lam) == 1:
            row = self.lam * n_lams
        elif len(self.lam) == n_lams:
            row = self.lam
        else:
            raise ConfigError(
                f"sampler 'fixed' lam: {len(self.lam)} values given, but the loss has k={n_lams} hyperparameters"
            )
        lam = torch.tensor(row, dtype=torch.float32).expand(batch_size, n_lams).clone()
        self.last_lam = lam
        return lam
