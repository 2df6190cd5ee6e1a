"""Loss coefficients from the hyperparameter λ ∈ [0,1]^k (paper Eq. 9 and Eq. 10).

This is the one place that defines what the hypernetwork sees: its input is the coefficient vector, not λ itself.

- k = 1 (two loss terms, e.g. SL MAE + SSIM):      c = (1 - λ, λ)
- k = 2 (three loss terms, e.g. AO DC + R1 + R2):  c = (λ1, (1 - λ1) λ2, (1 - λ1)(1 - λ2))

Both map [0,1]^k onto the probability simplex with k + 1 vertices, so the coefficients sum to 1.
"""

from __future__ import annotations

import torch


def n_terms(n_lams: int) -> int:
    """Number of loss terms weighted by ``n_lams`` hyperparameters."""
    if n_lams not in (1, 2):
        raise ValueError(f"n_lams must be 1 or 2 (paper Eq. 9/10), got {n_lams}")
    return n_lams + 1


def coefficients(lam: torch.Tensor) -> torch.Tensor:
    """Map λ of shape ``(B, k)`` (k = 1 or 2) to loss coefficients of shape ``(B, k + 1)``."""
    if lam.ndim != 2 or lam.shape[1] not in (1, 2):
        raise ValueError(f"lam must have shape (B, 1) or (B, 2), got {tuple(lam.shape)}")
    if lam.shape[1] == 1:
        return torch.cat([1 - lam, lam], dim=1)
    a, b = lam[:, :1], lam[:, 1:]
    return torch.cat([a, (1 - a) * b, (1 - a) * (1 - b)], dim=1)
