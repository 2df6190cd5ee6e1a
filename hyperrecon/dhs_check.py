"""Does DHS select λ? The kept-λ distribution tested against the uniform draw it starts from (issue 15, item 1).

DHS draws λ ~ U[0,1]^k and back-propagates only the λ of lowest data-consistency loss. If the ranking depended on
something other than λ (e.g. which images happen to be easy), the kept λ would still be U[0,1]^k: DHS would then be
UHS on a smaller batch. :func:`kept_uniformity` tests the kept λ against U[0,1]^k:

- per axis, the one-sample Kolmogorov-Smirnov test against U[0,1] (``scipy.stats.kstest``);
- for k = 2 also Pearson's χ² test of the joint histogram on a ``b x b`` grid against equal counts
  (``scipy.stats.chisquare``), with b the largest of 5, 4, 3, 2 that leaves at least 5 expected per cell;
- the p-values are combined by Bonferroni (smallest p times the number of tests, capped at 1).

Rows recorded during a UHS warm-up are dropped (``steps >= warmup_steps``). The rows must be independent draws: the
sampler records one row per kept λ (one per kept *group* under ``groups``), not one per sample.

Verdict: ``"selects"`` when the combined p-value is below ``alpha`` (default 0.01), ``"selects nothing"``
otherwise (the kept λ are indistinguishable from uniform: the DHS-vs-UHS comparison then says nothing about DHS),
``"too few"`` with fewer than ``min_n`` rows (default 20).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

ALPHA = 0.01
MIN_N = 20


@dataclass(frozen=True)
class KeptCheck:
    """Result of :func:`kept_uniformity`. ``ks``: KS statistic D per axis; ``statistic``: the largest D;
    ``chi2``/``chi2_p``: the joint-histogram test (k = 2 only); ``mean``: mean kept λ per axis."""

    n: int
    statistic: float
    p_value: float
    verdict: str
    ks: tuple[float, ...]
    ks_p: tuple[float, ...]
    chi2: float | None
    chi2_p: float | None
    mean: tuple[float, ...]

    @property
    def selects(self) -> bool:
        return self.verdict == "selects"

    def to_dict(self) -> dict:
        return asdict(self)


def kept_uniformity(
    lams: np.ndarray,
    steps: np.ndarray | None = None,
    *,
    warmup_steps: int = 0,
    alpha: float = ALPHA,
    min_n: int = MIN_N,
) -> KeptCheck:
    """Test the kept λ ``lams`` ``(n, k)`` in [0, 1] against U[0,1]^k (module doc).

    ``steps`` ``(n,)``: the training step of each row (rows before ``warmup_steps`` are dropped); ``ValueError`` on
    shapes that do not match or values outside [0, 1].
    """
    from scipy import stats

    lams = np.asarray(lams, dtype=float)
    if lams.ndim == 1:
        lams = lams[:, None]
    if lams.ndim != 2:
        raise ValueError(f"kept λ: expected shape (n, k), got {lams.shape}")
    if steps is not None:
        steps = np.asarray(steps)
        if steps.shape != (len(lams),):
            raise ValueError(f"kept λ steps: expected shape ({len(lams)},), got {steps.shape}")
        lams = lams[steps >= warmup_steps]
    if lams.size and (not np.isfinite(lams).all() or lams.min() < 0 or lams.max() > 1):
        raise ValueError("kept λ: values must lie in [0, 1]")
    n, k = lams.shape
    mean = tuple(float(v) for v in lams.mean(0)) if n else tuple(float("nan") for _ in range(k))
    if n < min_n:
        nan = tuple(float("nan") for _ in range(k))
        return KeptCheck(n, float("nan"), float("nan"), "too few", nan, nan, None, None, mean)
    ks = [stats.kstest(lams[:, i], "uniform") for i in range(k)]
    pvals = [float(r.pvalue) for r in ks]
    chi2 = chi2_p = None
    if k == 2:
        bins = next((b for b in (5, 4, 3, 2) if n / b**2 >= 5), None)
        if bins is not None:
            counts, _, _ = np.histogram2d(lams[:, 0], lams[:, 1], bins=bins, range=[[0, 1], [0, 1]])
            res = stats.chisquare(counts.ravel())
            chi2, chi2_p = float(res.statistic), float(res.pvalue)
            pvals.append(chi2_p)
    p = min(1.0, min(pvals) * len(pvals))
    return KeptCheck(
        n,
        float(max(r.statistic for r in ks)),
        p,
        "selects" if p < alpha else "selects nothing",
        tuple(float(r.statistic) for r in ks),
        tuple(float(r.pvalue) for r in ks),
        chi2,
        chi2_p,
        mean,
    )
