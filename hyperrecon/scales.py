"""Automatic loss output scales s_i (paper Sec. 4.4): the composite loss uses sum_i c_i(λ) / s_i * L_i.

A scale is the *typical magnitude* of its term and divides it, so every scaled term is O(1) and no term dominates
the landscape over λ.

- **SL** (paper Sec. 4.4 / 5.4.1): s_i is the mean validation value of term i for a model trained on term i alone,
  i.e. the U-Net baseline at the λ whose coefficients put all weight on term i (λ=0 for the first of two terms,
  λ=1 for the second). The study runner trains those baselines anyway; it calls :func:`sl_auto_scales` with them.
  :func:`scales_from_single_term_values` takes such values when they are known already.
- **AO** (the paper tuned the scales by hand; the best-case values of DC and the regularisers are 0, so the SL rule
  cannot apply). Rule used here (:func:`ao_auto_scales`): evaluate every term, per sample, on the reconstructions a
  *calibration model* gives at the equal-weight λ (all coefficients 1/(k+1); see :func:`equal_weight_lam`) over
  some validation samples, and set s_i to the **median** over samples. Then every scaled term has median exactly 1
  on the calibration data. The median rather than the mean keeps a few outlier slices from setting the scale. The
  calibration model is the caller's choice: a freshly initialised network (cheap; L1 of the weights is then the
  initial one) or, better, a U-Net trained briefly at the equal-weight λ with those first scales (a second pass).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from .coefficients import coefficients
from .errors import ConfigError, TrainingError
from .tasks import ReconTask


def scales_from_single_term_values(values: Sequence[float] | Mapping[str, float]) -> list[float]:
    """Scales from "best-case" term values (SL rule): s_i = values_i, which must be finite and > 0."""
    items = list(values.items()) if isinstance(values, Mapping) else [(str(i), v) for i, v in enumerate(values)]
    scales = []
    for key, v in items:
        v = float(v)
        if not (math.isfinite(v) and v > 0):
            raise ConfigError(f"loss scale for term {key}: `scale > 0` (finite) must hold, but got {v}")
        scales.append(v)
    return scales


def equal_weight_lam(n_lams: int) -> Tensor:
    """The λ (1, k) whose coefficients are all 1/(k+1): k=1 -> (0.5,), k=2 -> (1/3, 1/2)."""
    if n_lams == 1:
        return torch.tensor([[0.5]])
    if n_lams == 2:
        return torch.tensor([[1.0 / 3.0, 0.5]])
    raise ConfigError(f"n_lams: 1 or 2 hyperparameters are supported (paper Eq. 9/10), got {n_lams}")


def vertex_lam(term: int, n_lams: int) -> Tensor:
    """The λ (1, k) whose coefficients put all weight on term ``term`` (a model trained on that term alone)."""
    table = {1: [[0.0], [1.0]], 2: [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]}
    if n_lams not in table or not 0 <= term <= n_lams:
        raise ConfigError(f"vertex_lam: term index {term} with n_lams={n_lams} is out of range")
    return torch.tensor([table[n_lams][term]])


def _lam_key(key: float | Sequence[float], n_lams: int) -> Tensor:
    row = [float(key)] if isinstance(key, int | float) else [float(v) for v in key]
    if len(row) != n_lams:
        raise ConfigError(f"models_by_lam: key {key!r} has {len(row)} values, expected k={n_lams}")
    return torch.tensor([row])


@torch.no_grad()
def term_values(
    model: nn.Module,
    task: ReconTask,
    lam: Tensor | float | Sequence[float],
    *,
    batch_size: int = 32,
    indices: Tensor | None = None,
) -> dict[str, Tensor]:
    """Unscaled per-sample values of every loss term of ``task.loss``: ``{name: (N,)}`` (float32, CPU).

    ``lam``: one λ for all samples, (1, k) or k numbers. The model runs in eval mode (its mode is restored).
    """
    lam_row = lam if isinstance(lam, Tensor) else _lam_key(lam, task.n_lams)
    lam_row = lam_row.reshape(1, -1).float()
    if lam_row.shape[1] != task.n_lams:
        raise ConfigError(f"term_values: λ has {lam_row.shape[1]} values, the loss needs k={task.n_lams}")
    idx_all = torch.arange(task.n_samples) if indices is None else indices.cpu()
    was_training = model.training
    model.eval()
    out: dict[str, list[Tensor]] = {name: [] for name in task.loss.terms}
    try:
        for chunk in idx_all.split(batch_size):
            _, _, parts = task.batch_loss(model, chunk, lam_row.expand(chunk.numel(), -1))
            for name in out:
                out[name].append(parts[name].float().cpu())
    finally:
        model.train(was_training)
    return {name: torch.cat(vs) for name, vs in out.items()}


def sl_auto_scales(
    models_by_lam: Mapping[float | tuple[float, ...], nn.Module],
    task: ReconTask,
    *,
    batch_size: int = 32,
    indices: Tensor | None = None,
) -> list[float]:
    """SL scales from single-term baselines: s_i = mean over ``task``'s samples of L_i for the model trained at
    the λ that weighs term i alone (k=1: ``{0.0: model_for_term0, 1.0: model_for_term1}``).

    ``task`` holds the validation data; other keys of ``models_by_lam`` are ignored.
    """
    k = task.n_lams
    scales = []
    for i, name in enumerate(task.loss.terms):
        chosen = None
        for key, model in models_by_lam.items():
            c = coefficients(_lam_key(key, k))[0]
            if abs(float(c[i]) - 1.0) < 1e-9:
                chosen = (key, model)
                break
        if chosen is None:
            want = vertex_lam(i, k)[0].tolist()
            raise ConfigError(
                f"sl_auto_scales: no model trained on term '{name}' alone (λ={want}); got λ keys {list(models_by_lam)}"
            )
        key, model = chosen
        values = term_values(model, task, _lam_key(key, k), batch_size=batch_size, indices=indices)[name]
        scales.append(float(values.mean()))
    return scales_from_single_term_values(dict(zip(task.loss.terms, scales, strict=True)))


def median_scales(values: Mapping[str, Tensor], terms: Sequence[str]) -> list[float]:
    """AO rule: s_i = median over samples of term i's per-sample values; TrainingError if one is 0 or NaN."""
    scales = []
    for name in terms:
        v = values[name].float()
        med = float(torch.quantile(v.double(), 0.5)) if v.numel() else float("nan")  # mid-point for even N
        if not (math.isfinite(med) and med > 0):
            raise TrainingError(
                f"automatic scale for loss term '{name}': its median over the calibration samples is {med}, "
                "so it cannot set the term's magnitude; give scales by hand"
            )
        scales.append(med)
    return scales


def ao_auto_scales(
    model: nn.Module,
    task: ReconTask,
    *,
    lam: Tensor | Sequence[float] | None = None,
    batch_size: int = 32,
    indices: Tensor | None = None,
) -> list[float]:
    """AO scales by the median rule (module doc) on ``model``'s reconstructions at ``lam`` (default: equal weights)."""
    lam_row = equal_weight_lam(task.n_lams) if lam is None else lam
    values = term_values(model, task, lam_row, batch_size=batch_size, indices=indices)
    return median_scales(values, task.loss.terms)
