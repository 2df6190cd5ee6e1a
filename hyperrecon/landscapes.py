"""Landscapes and curves from a tidy evaluation table (numpy/pandas only; no torch).

The table is :func:`hyperrecon.evaluation.evaluate_model`'s: columns ``[model, lam1, lam2, slice, subject, metric,
value]`` (``subject``, the statistics' unit, is not needed here).
Landscapes (two hyperparameters) are laid out as ``grid[i, j]`` at ``lam1 = axis[i]``, ``lam2 = axis[j]``
(transpose for ``imshow`` with λ1 on x); curves (one hyperparameter) are sorted by λ.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .errors import ConfigError

TABLE_COLUMNS = ["model", "lam1", "lam2", "slice", "subject", "metric", "value"]
_NEEDED = [c for c in TABLE_COLUMNS if c != "subject"]  # landscapes and curves ignore the subject


def _rows(table: pd.DataFrame, metric: str, model: str | None) -> pd.DataFrame:
    missing = [c for c in _NEEDED if c not in table.columns]
    if missing:
        raise ConfigError(f"evaluation table: missing columns {missing}; expected {_NEEDED}")
    keep = table["metric"] == metric
    if model is not None:
        keep &= table["model"] == model
    rows = table[keep]
    if rows.empty:
        who = f"model '{model}' and " if model is not None else ""
        raise ConfigError(f"evaluation table: no rows for {who}metric '{metric}'")
    return rows


def _means(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample std (ddof=1; NaN for one slice) over slices per λ, sorted by (lam1, lam2)."""
    g = rows.groupby(["lam1", "lam2"], dropna=False, sort=True)["value"]
    return g.agg(["mean", "std"]).reset_index()


def landscape(table: pd.DataFrame, model: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Two hyperparameters: ``(axis (n,), grid (n, n))``, ``grid[i, j]`` = mean over slices at
    ``(lam1, lam2) = (axis[i], axis[j])``; the axis is the union of the λ1 and λ2 values, missing cells NaN."""
    means = _means(_rows(table, metric, model))
    if means["lam2"].isna().any():
        raise ConfigError(f"landscape: model '{model}' has one hyperparameter (lam2 is NaN); use curve()")
    axis = np.union1d(means["lam1"].to_numpy(), means["lam2"].to_numpy())
    grid = np.full((axis.size, axis.size), np.nan)
    grid[np.searchsorted(axis, means["lam1"]), np.searchsorted(axis, means["lam2"])] = means["mean"]
    return axis, grid


def curve(table: pd.DataFrame, model: str, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One hyperparameter: ``(lams (P,), mean (P,), std (P,))`` over slices (sample std), sorted by λ."""
    means = _means(_rows(table, metric, model))
    if not means["lam2"].isna().all():
        raise ConfigError(f"curve: model '{model}' has two hyperparameters; use landscape()")
    return means["lam1"].to_numpy(), means["mean"].to_numpy(), means["std"].to_numpy()


def interpolate_baselines(
    table: pd.DataFrame, metric: str, eval_axis: np.ndarray, models: Sequence[str] | None = None
) -> np.ndarray:
    """The baselines' mean-over-slices metric, linearly interpolated from their (non-uniform) λ grid onto
    ``eval_axis`` (as the paper does): k=1 ``np.interp`` -> (n,); k=2 ``scipy RegularGridInterpolator`` on the
    product grid -> (n, n) laid out like :func:`landscape`. Outside the baseline grid the edge value is kept.

    ``table`` holds the baseline rows (one model per λ); ``models`` restricts to those model names.
    """
    from scipy.interpolate import RegularGridInterpolator

    rows = _rows(table, metric, None)
    if models is not None:
        rows = rows[rows["model"].isin(list(models))]
        if rows.empty:
            raise ConfigError(f"interpolate_baselines: no rows for models {list(models)} and metric '{metric}'")
    means = _means(rows)
    x = np.asarray(eval_axis, dtype=np.float64)
    if means["lam2"].isna().all():
        return np.interp(x, means["lam1"].to_numpy(), means["mean"].to_numpy())
    ax1, ax2 = np.unique(means["lam1"]), np.unique(means["lam2"])
    grid = np.full((ax1.size, ax2.size), np.nan)
    grid[np.searchsorted(ax1, means["lam1"]), np.searchsorted(ax2, means["lam2"])] = means["mean"]
    if np.isnan(grid).any() or ax1.size < 2 or ax2.size < 2:
        raise ConfigError(
            f"interpolate_baselines: the baseline λ grid must be a full product grid with >= 2 values per axis, "
            f"got {len(means)} points over {ax1.size} x {ax2.size} axis values"
        )
    interp = RegularGridInterpolator((ax1, ax2), grid, method="linear")
    a, b = np.meshgrid(np.clip(x, ax1[0], ax1[-1]), np.clip(x, ax2[0], ax2[-1]), indexing="ij")
    return interp(np.stack([a.ravel(), b.ravel()], 1)).reshape(x.size, x.size)


def fraction_above(grid: np.ndarray, thresholds: Sequence[float]) -> dict[float, float]:
    """``{t: fraction of the finite landscape cells with value > t}`` (e.g. rPSNR > 0 dB); NaN cells ignored."""
    values = np.asarray(grid, dtype=np.float64).ravel()
    values = values[~np.isnan(values)]
    if values.size == 0:
        return {float(t): float("nan") for t in thresholds}
    return {float(t): float(np.mean(values > t)) for t in thresholds}
