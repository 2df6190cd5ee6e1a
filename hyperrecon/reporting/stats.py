"""Statistics over replicates and subjects, never over slices (numpy/pandas/scipy only).

Slices of one subject are not independent samples, and one training seed is not a replicate of a method. So every
number a report tests or puts a confidence interval on is built in two steps:

1. **Units.** The results table (``model, lam1, lam2, slice, subject, metric, replicate, value``) is averaged over
   the slices of each *unit* = (replicate, subject). The subject of a slice is the table's ``subject`` column,
   written by evaluation from the data bundle (the reader's patient/subject of each slice: fastMRI's
   ``patient_id``, the FreeSurfer subject folder, the phantom subject; else the slice's volume), so nested ids
   such as ``siteA/patient1/file/000`` group by patient, not by site (:func:`subjects`). Tables written before
   that column (only the synthetic sources, whose ids start with the subject) fall back to :func:`subject_of`.
   Subjects of different replicates are different units (the knee phantom draws new subjects per seed; the MNI
   brain has one subject per replicate).
2. **Replicates.** A statistic is averaged over the units of each replicate; its 95% confidence interval is the
   Student t interval over the replicate means (:func:`t_interval`, ``scipy.stats.t``), so it includes the
   variation between training seeds. One replicate gives no interval (NaN).

Paired comparisons (model − baseline at one λ) also get a Wilcoxon signed-rank p over the units
(:func:`paired_units`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

CI_LEVEL = 0.95
CI_METHOD = "95% Student t interval over replicates (scipy.stats.t; the mean over subjects per replicate)"
UNIT_TEST = "Wilcoxon signed-rank over (replicate, subject) units, two-sided (scipy.stats.wilcoxon)"
_ATOL = 1e-6


def subject_of(slice_id: Any) -> str:
    """Fallback subject of a slice id in a table without a ``subject`` column: the part before the first ``/``
    (``"knee-test001/PD/s03"`` -> ``"knee-test001"``, ``"mni152/z040/c0"`` -> ``"mni152"``; right for the synthetic
    sources those tables came from, wrong for nested file ids, hence the column); an id without ``/`` is its own
    subject."""
    return str(slice_id).split("/", 1)[0]


def subjects(rows: pd.DataFrame) -> pd.Series:
    """The subject of each row of a results table: its ``subject`` column where set, else :func:`subject_of`."""
    fallback = rows["slice"].map(subject_of)
    if "subject" not in rows.columns:
        return fallback
    given = rows["subject"]
    return given.where(given.notna() & (given.astype(str) != ""), fallback).astype(str)


def t_interval(values: Any, level: float = CI_LEVEL) -> dict[str, float]:
    """Mean and two-sided Student t interval of independent ``values`` (NaNs dropped).

    Returns ``{"n", "mean", "sd", "lo", "hi"}``; ``sd`` is the sample std (ddof=1). With fewer than two values the
    interval is NaN (no spread to estimate); with zero spread it is the mean itself.
    """
    from scipy import stats

    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    n = int(v.size)
    if n == 0:
        return {"n": 0, "mean": math.nan, "sd": math.nan, "lo": math.nan, "hi": math.nan}
    mean = float(v.mean())
    if n < 2:
        return {"n": 1, "mean": mean, "sd": math.nan, "lo": math.nan, "hi": math.nan}
    sd = float(v.std(ddof=1))
    if sd == 0.0:
        return {"n": n, "mean": mean, "sd": 0.0, "lo": mean, "hi": mean}
    lo, hi = stats.t.interval(level, n - 1, loc=mean, scale=sd / math.sqrt(n))
    return {"n": n, "mean": mean, "sd": sd, "lo": float(lo), "hi": float(hi)}


def lam_mask(rows: pd.DataFrame, lam: tuple[float, ...] | None) -> pd.Series:
    """Rows at ``lam`` (within 1e-6 per axis); every row when ``lam`` is None."""
    if lam is None:
        return pd.Series(True, index=rows.index)
    keep = (rows["lam1"] - lam[0]).abs() < _ATOL
    if len(lam) > 1:
        keep &= (rows["lam2"] - lam[1]).abs() < _ATOL
    return keep


def unit_values(results: pd.DataFrame, model: str, metric: str, lam: tuple[float, ...] | None = None) -> pd.Series:
    """Mean over the slices of each (replicate, subject) unit of one model and metric (at ``lam`` when given):
    a Series with a (replicate, subject) MultiIndex, sorted."""
    rows = results[(results["model"] == model) & (results["metric"] == metric)]
    rows = rows[lam_mask(rows, lam)]
    rep = rows["replicate"] if "replicate" in rows.columns else pd.Series(0, index=rows.index)
    keys = pd.DataFrame({"replicate": rep.astype(int), "subject": subjects(rows), "value": rows["value"].astype(float)})
    return keys.groupby(["replicate", "subject"])["value"].mean()


def replicate_means(units: pd.Series) -> pd.Series:
    """Mean over the subjects of each replicate of a unit Series (index level ``replicate``)."""
    return units.groupby(level="replicate").mean()


def summarise_units(units: pd.Series, level: float = CI_LEVEL) -> dict[str, float]:
    """Mean over units and the t interval over replicates of a unit Series; plus the unit and replicate counts."""
    reps = replicate_means(units)
    ci = t_interval(reps.to_numpy(), level)
    return {
        "mean": ci["mean"],
        "lo": ci["lo"],
        "hi": ci["hi"],
        "n_replicates": int(reps.size),
        "n_units": int(units.size),
        "sd_units": float(units.std(ddof=1)) if units.size > 1 else math.nan,
    }


def paired_units(a: pd.Series, b: pd.Series, level: float = CI_LEVEL) -> dict[str, Any]:
    """Paired comparison ``a − b`` of two unit Series on their common units.

    ``mean_diff`` = mean over replicates of the mean difference over each replicate's subjects, with its t interval
    (``lo``, ``hi``) over replicates; ``p`` = two-sided Wilcoxon signed-rank over the units (1.0 when every
    difference is zero, NaN for fewer than two units); ``std_diff`` = sample std of the unit differences.
    """
    from scipy.stats import wilcoxon

    common = a.index.intersection(b.index)
    d = (a.loc[common] - b.loc[common]).astype(float)
    d = d[np.isfinite(d.to_numpy())]
    n = int(d.size)
    if n == 0:
        return {
            "n": 0,
            "n_replicates": 0,
            "mean_diff": math.nan,
            "std_diff": math.nan,
            "lo": math.nan,
            "hi": math.nan,
            "p": math.nan,
        }
    if n < 2:
        p = math.nan
    elif np.all(d.to_numpy() == 0):
        p = 1.0
    else:
        p = float(wilcoxon(d.to_numpy(), alternative="two-sided").pvalue)
    s = summarise_units(d, level)
    return {
        "n": n,
        "n_replicates": s["n_replicates"],
        "mean_diff": s["mean"],
        "lo": s["lo"],
        "hi": s["hi"],
        "std_diff": s["sd_units"],
        "p": p,
    }


def per_replicate(results: pd.DataFrame, fn) -> pd.Series:
    """``fn(table of one replicate) -> float`` for every replicate of ``results``: a Series indexed by replicate."""
    rep = results["replicate"] if "replicate" in results.columns else pd.Series(0, index=results.index)
    return pd.Series({int(r): float(fn(results[rep == r])) for r in sorted(rep.unique())}, dtype=float)


def curve_ci(results: pd.DataFrame, model: str, metric: str, level: float = CI_LEVEL) -> dict[str, np.ndarray]:
    """One hyperparameter: per λ of ``model``, the mean over units and the t interval over replicates of the mean
    over each replicate's subjects. ``{"lam", "mean", "lo", "hi", "sd"}`` (sd over units), sorted by λ."""
    rows = results[(results["model"] == model) & (results["metric"] == metric)]
    rep = rows["replicate"] if "replicate" in rows.columns else pd.Series(0, index=rows.index)
    units = pd.DataFrame(
        {
            "lam": rows["lam1"].astype(float),
            "replicate": rep.astype(int),
            "subject": subjects(rows),
            "value": rows["value"].astype(float),
        }
    )
    units = units.groupby(["lam", "replicate", "subject"])["value"].mean()
    lams = np.sort(units.index.get_level_values("lam").unique().to_numpy())
    out = {k: np.full(lams.size, np.nan) for k in ("mean", "lo", "hi", "sd")}
    for i, lam in enumerate(lams):
        s = summarise_units(units.xs(lam, level="lam"), level)
        out["mean"][i], out["lo"][i], out["hi"][i], out["sd"][i] = s["mean"], s["lo"], s["hi"], s["sd_units"]
    return {"lam": lams, **out}
