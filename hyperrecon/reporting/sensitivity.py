"""λ-sensitivity: how much each model's metrics and images change with λ, conditional models beside baselines.

A λ-conditioned model that gives (nearly) the same reconstruction for every λ can still sit "close to the
baselines" in PSNR, because PSNR hardly moves with λ for anyone; its controllability, the paper's point, is then
absent. This module measures it directly, per model:

- **metric spread**: for each metric, max − min over λ of the model's mean (over units) curve or landscape,
  restricted to the span of the baseline grid; baselines: over their trained λ. Per replicate, then mean and 95%
  t interval over replicates (:mod:`.stats`).
- **direction**: value at the highest minus value at the lowest extreme λ of the baseline grid
  (:func:`hyperrecon.evaluation.endpoint_lams`); ``follows`` says whether a conditional model moves the same way
  as the baselines.
- **image change**: mean over pixels of ``|x(λ_hi) − x(λ_lo)|`` per test slice (images in [0, 1]), from the eval
  job's ``eval/<model>-endpoints.npz``; the baselines' value compares the two U-Nets trained at those λ.
  Averaged per (replicate, subject) unit, then over replicates with a t interval.

A conditional model is **flagged as ignoring λ** when its image change is below :data:`RATIO_MIN` of the baselines'
(or, without endpoint images, when the median over metrics of its spread / the baselines' spread is below it: one
metric that happens to move, such as PSNR in the wrong direction, does not hide a flat SSIM curve).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from .rundata import RunData, read_npz
from .stats import CI_METHOD, summarise_units, t_interval
from .style import model_kind

RATIO_MIN = 0.25
"""A conditional model whose image change (or median metric-spread ratio) is below this fraction of the baselines'
ignores λ."""
_ATOL = 1e-6


def _endpoints(data: RunData, model: str, replicate: int) -> dict[str, np.ndarray] | None:
    path = data.folder.replicate(replicate).eval_file(model, "-endpoints.npz")
    return read_npz(path, "arrays 'lams' (E, k), 'recons' (E, N, H, W) and 'ids' (N,)") if path.exists() else None


def _subjects(e: dict[str, np.ndarray]) -> list[str]:
    """The subject of each slice of an endpoints file: its ``subjects`` array, else :func:`stats.subject_of`."""
    from .stats import subject_of

    return [str(s) for s in e["subjects"]] if "subjects" in e else [subject_of(i) for i in e["ids"]]


def _unit_change(subjects: list[str], a: np.ndarray, b: np.ndarray, replicate: int) -> pd.Series:
    """Mean |a − b| per pixel for each slice, averaged per subject: a (replicate, subject) Series."""
    per_slice = np.abs(a.astype(np.float64) - b.astype(np.float64)).mean(axis=(1, 2))
    frame = pd.DataFrame({"replicate": replicate, "subject": subjects, "value": per_slice})
    return frame.groupby(["replicate", "subject"])["value"].mean()


def image_changes(data: RunData) -> dict[str, pd.Series]:
    """Per model (and ``"baselines"``): unit Series of the mean |x(λ_hi) − x(λ_lo)| per pixel."""
    out: dict[str, list[pd.Series]] = {}
    for r in data.replicates:
        ends: dict[tuple[float, ...], np.ndarray] = {}
        subj = None
        for b in data.baselines:
            e = _endpoints(data, b, r)
            if e is not None and "recons" in e:
                ends[tuple(np.round(e["lams"][0], 9))] = e["recons"][0]
                subj = _subjects(e)
        if len(ends) == 2 and subj is not None:
            (_, a), (_, b) = sorted(ends.items())
            out.setdefault("baselines", []).append(_unit_change(subj, b, a, r))
        for m in data.conditional:
            e = _endpoints(data, m, r)
            if e is not None and "recons" in e and len(e["recons"]) == 2:
                out.setdefault(m, []).append(_unit_change(_subjects(e), e["recons"][1], e["recons"][0], r))
    return {m: pd.concat(v) for m, v in out.items()}


def _means_by_lam(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean value per λ point (rows of one replicate, model and metric); lam2 NaN-safe."""
    return rows.groupby(["lam1", "lam2"], dropna=False)["value"].mean().reset_index()


def _within(points: pd.DataFrame, box: np.ndarray) -> pd.DataFrame:
    keep = (points["lam1"] >= box[0, 0] - _ATOL) & (points["lam1"] <= box[1, 0] + _ATOL)
    if box.shape[1] > 1:
        keep &= (points["lam2"] >= box[0, 1] - _ATOL) & (points["lam2"] <= box[1, 1] + _ATOL)
    return points[keep]


def _nearest(points: pd.DataFrame, lam: np.ndarray) -> float:
    cols = ["lam1", "lam2"][: lam.size]
    d = np.linalg.norm(points[cols].to_numpy(float) - lam[None, :], axis=1)
    return float(points["value"].to_numpy()[int(np.argmin(d))])


def metric_sensitivity(data: RunData, metric: str, box: np.ndarray) -> dict[str, dict[str, Any]]:
    """Per model (and ``"baselines"``): spread and direction of ``metric`` over λ within ``box`` (2, k), each with
    mean and t interval over replicates."""
    res = data.results[data.results["metric"] == metric]
    groups = {"baselines": data.baselines, **{m: [m] for m in data.conditional}}
    out: dict[str, dict[str, Any]] = {}
    for name, models in groups.items():
        spreads, dirs = [], []
        for r in data.replicates:
            rows = res[(res["replicate"] == r) & res["model"].isin(models)]
            if rows.empty:
                continue
            pts = _within(_means_by_lam(rows), box)
            if len(pts) < 2:
                continue
            spreads.append(float(pts["value"].max() - pts["value"].min()))
            dirs.append(_nearest(pts, box[1]) - _nearest(pts, box[0]))
        if spreads:
            s, d = t_interval(spreads), t_interval(dirs)
            out[name] = {
                "spread": s["mean"],
                "spread_lo": s["lo"],
                "spread_hi": s["hi"],
                "direction": d["mean"],
                "direction_lo": d["lo"],
                "direction_hi": d["hi"],
            }
    return out


def _clear_direction(b: dict[str, Any]) -> bool:
    """The baselines' direction (value at λ_hi − at λ_lo) has a 95% interval over replicates that excludes 0.

    With one replicate there is no interval, so no direction is established: at quick scale the baselines'
    λ = 0 -> 1 direction flipped between draws (reports/benchmarks/lam_response.md)."""
    lo, hi = b.get("direction_lo", math.nan), b.get("direction_hi", math.nan)
    return math.isfinite(lo) and math.isfinite(hi) and (lo > 0 or hi < 0)


def sensitivity_analysis(data: RunData, metrics: list[str] | None = None) -> dict[str, Any] | None:
    """Metric spreads, directions and image changes of every model over λ, and the flag of each conditional model.

    Returns ``{"box", "metrics", "spread": {metric: {model: {...}}}, "image": {model: {mean, lo, hi, ...}},
    "models": {model: {"ignores_lam": bool | None, "ratio": float | None, "basis": str, "follows": {metric: bool},
    "direction_unclear": [metric]}}, "ratio_min", "ci_method"}`` or None without conditional models or with fewer
    than two baselines. ``follows`` holds only the metrics whose baseline direction is clear
    (:func:`_clear_direction`); the others are in ``direction_unclear``.
    """
    if not data.conditional or len(data.baselines) < 2:
        return None
    from ..evaluation import endpoint_lams

    box = endpoint_lams([data.baseline_lam(b) for b in data.baselines])
    metrics = [m for m in (metrics or data.metrics) if m in data.metrics]
    spread = {m: metric_sensitivity(data, m, box) for m in metrics}
    image = {
        m: {**summarise_units(v), "kind": model_kind(m) if m != "baselines" else "baseline"}
        for m, v in image_changes(data).items()
    }
    models: dict[str, dict[str, Any]] = {}
    base_img = image.get("baselines", {}).get("mean")
    for m in data.conditional:
        follows: dict[str, bool] = {}
        unclear: list[str] = []
        ratios = []
        for metric in metrics:
            b, c = spread[metric].get("baselines"), spread[metric].get(m)
            if not b or not c:
                continue
            if b["direction"] != 0 and math.isfinite(b["direction"]):
                if _clear_direction(b):
                    follows[metric] = bool(np.sign(c["direction"]) == np.sign(b["direction"]))
                else:  # the baselines' own direction is not established: nothing to follow or go against
                    unclear.append(metric)
            if b["spread"] > 0:
                ratios.append(c["spread"] / b["spread"])
        mine = image.get(m, {}).get("mean")
        if mine is not None and base_img and math.isfinite(mine) and base_img > 0:
            ratio, basis = mine / base_img, "image change"
        elif ratios:
            ratio, basis = float(np.median(ratios)), "median metric-spread ratio"
        else:
            ratio, basis = None, "no baseline reference"
        models[m] = {
            "ignores_lam": None if ratio is None else bool(ratio < RATIO_MIN),
            "ratio": ratio,
            "basis": basis,
            "follows": follows,
            "direction_unclear": unclear,
        }
    return {
        "box": box,
        "metrics": metrics,
        "spread": spread,
        "image": image,
        "models": models,
        "ratio_min": RATIO_MIN,
        "ci_method": CI_METHOD,
    }
