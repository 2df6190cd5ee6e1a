"""The numbers behind each report section, computed from a :class:`RunData` (no plotting, no markdown).

Each ``*_analysis`` function returns a plain dict (NumPy arrays allowed; :func:`jsonable` turns it into JSON for
``hrbench report --json``), or None when the run has no data for that section.

Conventions: statistics are over (replicate, subject) units and replicates, never slices (:mod:`.stats`): means
over units, 95% t intervals over replicates, paired Wilcoxon tests over units; λ landscapes use the layout of
:func:`hyperrecon.evaluation.landscape` (``grid[i, j]`` at ``lam1 = axis[i]``, ``lam2 = axis[j]``); "gap" and
"difference" always mean *conditional model minus baseline*, so a positive gap is better for PSNR/SSIM/Dice and
worse for MAE/HFEN.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from .rundata import RunData, finite
from .stats import CI_METHOD, UNIT_TEST, curve_ci, paired_units, subjects, unit_values
from .style import higher_is_better, hyper_parts

# Paper Table 1 (brain, NVIDIA Titan Xp; Wang et al. MELBA 2022) and its inference note (~0.2 s per slice).
PAPER_TABLE1: dict[str, dict[str, float]] = {
    "unet": {"hours": 4.0, "params": 149e3},
    "all": {"hours": 648.0, "params": 53e6, "n_models": 361},
    "S": {"hours": 5.0, "params": 744e3},
    "M": {"hours": 6.0, "params": 4.9e6},
    "L": {"hours": 7.0, "params": 19e6},
}
PAPER_INFERENCE_S = 0.2
PAPER_DEVICE = "NVIDIA Titan Xp"
SL_METRICS = ("psnr", "ssim", "mae", "hfen")
TOP_FRACTION = 0.10  # "best region": the top 10% cells of the baseline landscape
PAIRED_TEST = UNIT_TEST
_ATOL = 1e-6


# ---------------------------------------------------------------------------------------------------------------
# helpers


def paired_test(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Mean of ``a - b`` over pairs and a two-sided Wilcoxon signed-rank p-value (1.0 when all differences are
    zero, NaN for fewer than two pairs)."""
    from scipy.stats import wilcoxon

    d = np.asarray(a, float) - np.asarray(b, float)
    d = d[np.isfinite(d)]
    n = int(d.size)
    if n == 0:
        return {"n": 0, "mean_diff": math.nan, "std_diff": math.nan, "p": math.nan}
    if n < 2:
        p = math.nan
    elif np.all(d == 0):
        p = 1.0
    else:
        p = float(wilcoxon(d, alternative="two-sided").pvalue)
    return {"n": n, "mean_diff": float(d.mean()), "std_diff": float(d.std(ddof=1)) if n > 1 else math.nan, "p": p}


def min_wilcoxon_p(n: int) -> float:
    """Smallest two-sided p-value the exact signed-rank test can give for ``n`` pairs (all signs equal)."""
    return min(1.0, 2.0 / 2**n) if n > 0 else math.nan


def _lam_mask(rows: pd.DataFrame, lam: tuple[float, ...]) -> pd.Series:
    keep = (rows["lam1"] - lam[0]).abs() < _ATOL
    if len(lam) > 1:
        keep &= (rows["lam2"] - lam[1]).abs() < _ATOL
    return keep


def _per_slice(data: RunData, model: str, metric: str, lam: tuple[float, ...] | None = None) -> pd.Series:
    """Values of one model and metric indexed by slice (at ``lam`` when given)."""
    r = data.results
    rows = r[(r.model == model) & (r.metric == metric)]
    if lam is not None:
        rows = rows[_lam_mask(rows, lam)]
    return rows.groupby("slice")["value"].mean()


def _n_slices(data: RunData) -> int:
    """Test slices per replicate (the largest count)."""
    return int(data.results.groupby("replicate")["slice"].nunique().max())


def n_units(data: RunData) -> int:
    """(replicate, subject) units in the results: what the paired tests count."""
    r = data.results
    return int(pd.MultiIndex.from_arrays([r["replicate"], subjects(r)]).nunique())


def _best_index(values: np.ndarray, maximize: bool) -> int:
    return int(np.nanargmax(values) if maximize else np.nanargmin(values))


# ---------------------------------------------------------------------------------------------------------------
# costs (paper Table 1)


def cost_analysis(data: RunData) -> dict[str, Any]:
    c = data.costs.set_index("model")
    inf_col = c["inference_seconds_per_slice"] if "inference_seconds_per_slice" in c.columns else None
    peak_col = next((c[k] for k in ("peak_memory_mib", "peak_memory_mb") if k in c.columns), None)
    eval_peak_col = c["eval_peak_memory_mib"] if "eval_peak_memory_mib" in c.columns else None

    def peaks(models: list[str]) -> dict[str, float | None]:
        """The largest training and evaluation peak memory (MiB) over ``models``."""
        return {
            "peak_memory_mib": finite(peak_col[models].max()) if peak_col is not None else None,
            "eval_peak_memory_mib": finite(eval_peak_col[models].max()) if eval_peak_col is not None else None,
        }

    def row(label: str, model: str, paper: dict[str, float] | None) -> dict[str, Any]:
        r = c.loc[model]
        return {
            "label": label,
            "model": model,
            "n_params": finite(r.n_params),
            "steps": finite(r.get("steps")),
            "device_seconds": finite(r.device_seconds),
            "wall_seconds": finite(r.wall_seconds),
            "inference_seconds_per_slice": finite(inf_col[model]) if inf_col is not None else None,
            "paper_hours": paper["hours"] if paper else None,
            "paper_params": paper["params"] if paper else None,
            **peaks([model]),
        }

    from .style import model_label

    rows: list[dict[str, Any]] = []
    ratios: dict[str, float | None] = {}
    paper_ratios: dict[str, float | None] = {}
    base = [m for m in data.baselines if m in c.index]
    all_dev = float(c.loc[base, "device_seconds"].sum()) if base else math.nan
    for m in data.conditional:
        if m not in c.index:
            continue
        parts = hyper_parts(m)
        paper = PAPER_TABLE1.get(parts[0]) if parts else None
        rows.append(row(model_label(m), m, paper))
        dev = finite(c.loc[m, "device_seconds"])
        ratios[m] = finite(all_dev / dev) if dev else None
        paper_ratios[m] = PAPER_TABLE1["all"]["hours"] / paper["hours"] if paper else None
    if base:
        b = c.loc[base]
        one = {
            "label": f"U-Net (one baseline; mean of {len(base)})",
            "model": "baseline (mean)",
            "n_params": finite(b.n_params.mean()),
            "steps": finite(b["steps"].mean()) if "steps" in b else None,
            "device_seconds": finite(b.device_seconds.mean()),
            "wall_seconds": finite(b.wall_seconds.mean()),
            "inference_seconds_per_slice": finite(inf_col[base].mean()) if inf_col is not None else None,
            "paper_hours": PAPER_TABLE1["unet"]["hours"],
            "paper_params": PAPER_TABLE1["unet"]["params"],
            **peaks(base),
        }
        every = {
            "label": f"All U-Nets ({len(base)} baselines, sum)",
            "model": "baselines (sum)",
            "n_params": finite(b.n_params.sum()),
            "steps": finite(b["steps"].sum()) if "steps" in b else None,
            "device_seconds": finite(b.device_seconds.sum()),
            "wall_seconds": finite(b.wall_seconds.sum()),
            "inference_seconds_per_slice": one["inference_seconds_per_slice"],
            "paper_hours": PAPER_TABLE1["all"]["hours"],
            "paper_params": PAPER_TABLE1["all"]["params"],
            **peaks(base),
        }
        rows += [one, every]
    overhead = {m: finite(c.loc[m, "device_seconds"]) for m in ("seg", "scales") if m in c.index}
    device = str(c["device"].iloc[0]) if "device" in c.columns else None
    dtype = str(c["dtype"].iloc[0]) if "dtype" in c.columns else None
    return {
        "rows": rows,
        "ratio_all_baselines_over": ratios,
        "paper_ratio_all_baselines_over": paper_ratios,
        "n_baselines": len(base),
        "all_baselines_device_seconds": finite(all_dev),
        "overhead": overhead,
        "device": device,
        "dtype": dtype,
    }


# ---------------------------------------------------------------------------------------------------------------
# paired gaps at the baselines' own λ


def gap_rows(data: RunData, metrics: list[str]) -> list[dict[str, Any]]:
    """For every conditional model, baseline λ that the model was evaluated at, and metric: (model - baseline)
    paired over (replicate, subject) units (:func:`.stats.paired_units`: mean, t interval over replicates
    ``lo``/``hi``, Wilcoxon ``p`` over units)."""
    out = []
    for m in data.conditional:
        for b in data.baselines:
            lam = data.baseline_lam(b)
            for metric in metrics:
                mv = unit_values(data.results, m, metric, lam)
                bv = unit_values(data.results, b, metric)
                if mv.empty or bv.empty or mv.index.intersection(bv.index).empty:
                    continue
                t = paired_units(mv, bv)
                out.append({"model": m, "baseline": b, "lam": list(lam), "metric": metric, **t})
    return out


def _closest(gaps: list[dict[str, Any]], metric: str) -> dict[str, Any] | None:
    """Conditional model with the smallest mean |gap| in ``metric`` over the baseline λ."""
    per: dict[str, list[float]] = {}
    for g in gaps:
        if g["metric"] == metric and np.isfinite(g["mean_diff"]):
            per.setdefault(g["model"], []).append(abs(g["mean_diff"]))
    if not per:
        return None
    scores = {m: float(np.mean(v)) for m, v in per.items()}
    best = min(scores, key=scores.__getitem__)
    return {"metric": metric, "model": best, "mean_abs_gap": scores[best], "mean_abs_gap_by_model": scores}


# ---------------------------------------------------------------------------------------------------------------
# SL: curves over λ


def _curve(data: RunData, model: str, metric: str) -> dict[str, np.ndarray]:
    """Per λ: mean over units, 95% t interval over replicates (``lo``/``hi``, NaN for one replicate) and the std
    over units (``std``)."""
    c = curve_ci(data.results, model, metric)
    return {"lam": c["lam"], "mean": c["mean"], "std": c["sd"], "lo": c["lo"], "hi": c["hi"]}


def sl_analysis(data: RunData) -> dict[str, Any] | None:
    if data.n_lams != 1:
        return None
    metrics = [m for m in SL_METRICS if m in data.metrics]
    if not metrics:
        return None
    curves: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    points: dict[str, list[dict[str, Any]]] = {}
    for metric in metrics:
        curves[metric] = {}
        for m in data.conditional:
            curves[metric][m] = _curve(data, m, metric)
        points[metric] = []
        for b in data.baselines:
            c = _curve(data, b, metric)
            points[metric].append(
                {
                    "model": b,
                    "lam": data.baseline_lam(b)[0],
                    "mean": float(c["mean"][0]),
                    "std": float(c["std"][0]),
                    "lo": float(c["lo"][0]),
                    "hi": float(c["hi"][0]),
                }
            )
    gaps = gap_rows(data, metrics)
    best: dict[str, dict[str, dict[str, float]]] = {}
    for metric in metrics:
        mx = higher_is_better(metric)
        best[metric] = {}
        for m, cv in curves[metric].items():
            i = _best_index(cv["mean"], mx)
            best[metric][m] = {"lam": float(cv["lam"][i]), "value": float(cv["mean"][i])}
        if points[metric]:
            vals = np.array([p["mean"] for p in points[metric]])
            i = _best_index(vals, mx)
            best[metric]["baselines"] = {"lam": points[metric][i]["lam"], "value": float(vals[i])}
    return {
        "metrics": metrics,
        "curves": curves,
        "points": points,
        "gaps": gaps,
        "test": PAIRED_TEST,
        "n_slices": _n_slices(data),
        "n_units": n_units(data),
        "n_replicates": len(data.replicates),
        "ci_method": CI_METHOD,
        "min_p": min_wilcoxon_p(n_units(data)),
        "best": best,
        "closest": _closest(gaps, "psnr" if "psnr" in metrics else metrics[0]),
    }


# ---------------------------------------------------------------------------------------------------------------
# AO: landscapes


def _baseline_rows(data: RunData) -> pd.DataFrame:
    return data.results[data.results.model.isin(data.baselines)]


def landscapes(data: RunData, metric: str) -> dict[str, Any] | None:
    """Landscapes of the conditional models and the baselines interpolated onto their axis.

    Returns ``axis``, ``grids`` {model: (n, n)}, ``baseline`` (n, n), ``box`` (the span of the baseline λ grid:
    (lo1, hi1, lo2, hi2)), ``inside`` (n, n) bool: the cells within that span (no extrapolation), and
    ``baseline_plot``: the baseline landscape with NaN outside that span.
    """
    from ..landscapes import interpolate_baselines, landscape

    if data.n_lams != 2 or not data.conditional or not data.baselines:
        return None
    grids, axis = {}, None
    for m in data.conditional:
        ax, g = landscape(data.results, m, metric)
        if axis is None:
            axis = ax
        if ax.shape != axis.shape or not np.allclose(ax, axis):
            continue  # a model evaluated on another grid is left out of the shared landscape figure
        grids[m] = g
    if axis is None:
        return None
    base = interpolate_baselines(_baseline_rows(data), metric, axis)
    lams = np.array([data.baseline_lam(b) for b in data.baselines])
    box = (float(lams[:, 0].min()), float(lams[:, 0].max()), float(lams[:, 1].min()), float(lams[:, 1].max()))
    in1 = (axis >= box[0] - _ATOL) & (axis <= box[1] + _ATOL)
    in2 = (axis >= box[2] - _ATOL) & (axis <= box[3] + _ATOL)
    inside = in1[:, None] & in2[None, :]
    # outside the trained grid the interpolation only repeats edge values: not data, so not drawn or scored
    plot = np.where(inside, base, np.nan)
    return {
        "axis": axis,
        "grids": grids,
        "baseline": base,
        "baseline_plot": plot,
        "box": box,
        "inside": inside,
        "metric": metric,
    }


def _optimum(axis: np.ndarray, grid: np.ndarray, maximize: bool) -> dict[str, float]:
    flat = _best_index(grid.ravel(), maximize)
    i, j = np.unravel_index(flat, grid.shape)
    return {"lam1": float(axis[i]), "lam2": float(axis[j]), "value": float(grid[i, j])}


def thresholds_for(base_inside: np.ndarray, study_threshold: float) -> list[tuple[float, str]]:
    """Landscape thresholds ``(value, label)``: the study's rPSNR threshold, and the 50th/75th/90th percentiles of
    the baseline landscape (rounded to 0.01), sorted by value without duplicates."""
    levels = [(float(study_threshold), "study threshold")]
    vals = base_inside[np.isfinite(base_inside)]
    if vals.size:
        levels += [(round(float(np.percentile(vals, q)), 2), f"baseline p{q}") for q in (50, 75, 90)]
    seen: dict[float, str] = {}
    for v, label in levels:
        seen.setdefault(v, label)
    return sorted(seen.items())


def top_region(
    base: np.ndarray, inside: np.ndarray, fraction: float = TOP_FRACTION, maximize: bool = True
) -> np.ndarray:
    """Mask of the best ``fraction`` of the baseline landscape cells within the baseline span (at least one)."""
    idx = np.flatnonzero(inside.ravel() & np.isfinite(base.ravel()))
    n = max(1, math.ceil(fraction * idx.size))
    vals = base.ravel()[idx]
    order = np.argsort(-vals if maximize else vals, kind="stable")[:n]
    mask = np.zeros(base.size, bool)
    mask[idx[order]] = True
    return mask.reshape(base.shape)


def ao_analysis(data: RunData) -> dict[str, Any] | None:
    metric = "rpsnr" if "rpsnr" in data.metrics else data.objective
    ls = landscapes(data, metric)
    if ls is None:
        return None
    maximize = higher_is_better(metric)
    axis, base, inside = ls["axis"], ls["baseline"], ls["inside"]
    study_thr = float(data.config.get("evaluation", {}).get("rpsnr_threshold", 0.0))
    labelled = thresholds_for(base[inside], study_thr)
    thresholds = [v for v, _ in labelled]
    from ..landscapes import fraction_above

    top = top_region(base, inside, TOP_FRACTION, maximize)
    per_model: dict[str, dict[str, Any]] = {}
    for m, g in ls["grids"].items():
        diff = g - base
        per_model[m] = {
            "optimum": _optimum(axis, g, maximize),
            "fraction_above": fraction_above(g[inside], thresholds),
            "mean_diff": float(np.nanmean(diff[inside])),
            "mean_abs_diff": float(np.nanmean(np.abs(diff[inside]))),
            "top_region_mean": float(np.nanmean(g[top])),
            "mean": float(np.nanmean(g[inside])),
        }
    baseline = {
        "optimum": _optimum(axis, ls["baseline_plot"], maximize),
        "fraction_above": fraction_above(base[inside], thresholds),
        "top_region_mean": float(np.nanmean(base[top])),
        "mean": float(np.nanmean(base[inside])),
    }
    # the best trained baseline (no interpolation)
    trained = {b: float(_per_slice(data, b, metric).mean()) for b in data.baselines}
    best_b = max(trained, key=trained.__getitem__) if maximize else min(trained, key=trained.__getitem__)
    baseline["best_trained"] = {"model": best_b, "lam": list(data.baseline_lam(best_b)), "value": trained[best_b]}
    dhs_vs_uhs = []
    for m in ls["grids"]:
        parts = hyper_parts(m)
        if parts and parts[1] == "dhs" and f"hyper-{parts[0]}-uniform" in ls["grids"]:
            u = per_model[f"hyper-{parts[0]}-uniform"]
            d = per_model[m]
            dhs_vs_uhs.append(
                {
                    "size": parts[0],
                    "uhs_top": u["top_region_mean"],
                    "dhs_top": d["top_region_mean"],
                    "diff_top": d["top_region_mean"] - u["top_region_mean"],
                    "uhs_mean": u["mean"],
                    "dhs_mean": d["mean"],
                    "diff_mean": d["mean"] - u["mean"],
                    "dhs_better": (d["top_region_mean"] > u["top_region_mean"]) == maximize,
                }
            )
    gaps = gap_rows(data, [metric])
    by_model = []
    for m in data.conditional:
        rows = [g for g in gaps if g["model"] == m and np.isfinite(g["mean_diff"])]
        if rows:
            diffs = np.array([g["mean_diff"] for g in rows])
            t = paired_test(diffs, np.zeros_like(diffs))
            by_model.append(
                {
                    "model": m,
                    "n_lams": len(rows),
                    "mean_diff": float(diffs.mean()),
                    "median_diff": float(np.median(diffs)),
                    "n_better": int(np.sum(diffs > 0 if maximize else diffs < 0)),
                    "p": t["p"],
                }
            )
    closest = None
    if per_model:
        best = min(per_model, key=lambda k: per_model[k]["mean_abs_diff"])
        closest = {
            "metric": metric,
            "model": best,
            "mean_abs_gap": per_model[best]["mean_abs_diff"],
            "mean_abs_gap_by_model": {k: v["mean_abs_diff"] for k, v in per_model.items()},
        }
    n_inside = int(inside.sum())
    return {
        "metric": metric,
        "landscapes": ls,
        "thresholds": thresholds,
        "threshold_labels": [lab for _, lab in labelled],
        "study_threshold": study_thr,
        "models": per_model,
        "baseline": baseline,
        "top_region": top,
        "top_fraction": TOP_FRACTION,
        "n_top_cells": int(top.sum()),
        "n_inside": n_inside,
        "full_span": bool(n_inside == inside.size),
        "dhs_vs_uhs": dhs_vs_uhs,
        "matched": by_model,
        "test": PAIRED_TEST,
        "closest": closest,
        "n_slices": _n_slices(data),
    }


# ---------------------------------------------------------------------------------------------------------------
# DHS, ranges, diverse pairs, examples


def dhs_analysis(data: RunData) -> dict[str, Any] | None:
    kept = {m: lams for m in data.conditional if (lams := data.dhs_kept(m)) is not None}
    if not kept:
        return None
    from ..dhs_check import kept_uniformity

    checks, warmups = {}, {}
    for m, v in list(kept.items()):
        steps, warmup = data.dhs_kept_steps(m)
        steps = steps if steps is not None and len(steps) == len(v) else None
        checks[m] = kept_uniformity(v, steps, warmup_steps=warmup).to_dict()
        warmups[m] = warmup
        if steps is not None:  # the rows of the UHS warm-up are uniform draws: the table and figure leave them out
            kept[m] = v[np.asarray(steps) >= warmup]
    verdicts = {
        m: {
            "selects": c["verdict"] == "selects",
            "p": c["p_value"],
            "statistic": c["statistic"],
            "verdict": c["verdict"],
            "n": c["n"],
        }
        for m, c in checks.items()
    }
    return {
        "kept": kept,
        "checks": checks,
        "verdicts": verdicts,
        "stats": {
            m: {
                "n": int(len(v)),
                "warmup_steps": int(warmups[m]),
                "mean": v.mean(0).tolist(),
                "std": v.std(0).tolist(),
                "ks_statistic": checks[m]["statistic"],
                "p_uniform": checks[m]["p_value"],
                "verdict": checks[m]["verdict"],
            }
            for m, v in kept.items()
        },
    }


def ranges_analysis(data: RunData) -> dict[str, Any] | None:
    rows = []
    for m in data.conditional:
        parts = [t for rep in data.replicates if (t := data.ranges(m, rep)) is not None]
        if not parts:
            continue
        r = pd.concat(parts, ignore_index=True)  # every replicate's range slices
        frac = (r["n_above"] / r["n_lams"].where(r["n_lams"] > 0)).astype(float)
        rs = pd.to_numeric(r.get("range_sum"), errors="coerce") if "range_sum" in r else pd.Series(dtype=float)
        rp = (
            pd.to_numeric(r.get("range_mean_per_pixel"), errors="coerce")
            if "range_mean_per_pixel" in r
            else pd.Series(dtype=float)
        )
        thr = finite(r["rpsnr_threshold"].iloc[0]) if "rpsnr_threshold" in r else None
        rows.append(
            {
                "model": m,
                "n_slices": int(len(r)),
                "n_lams": int(r["n_lams"].max()),
                "frac_above": finite(frac.mean()),
                "n_above_mean": finite(r["n_above"].mean()),
                "range_sum_mean": finite(rs.mean()) if rs.notna().any() else None,
                "range_per_pixel_mean": finite(rp.mean()) if rp.notna().any() else None,
                "n_slices_with_range": int(rs.notna().sum()),
                "threshold": thr,
            }
        )
    diverse = {}
    for m in data.conditional:
        meta, imgs = data.eval_meta(m), data.eval_images(m)
        dv = (meta or {}).get("diverse") or {}
        if imgs is not None and all(f"diverse_{k}" in imgs for k in ("image_a", "image_b", "target")) and dv:
            diverse[m] = {
                **{
                    k: dv.get(k)
                    for k in ("lam_a", "lam_b", "distance", "metrics_a", "metrics_b", "n_kept", "quantile", "slice")
                },
                "image_a": imgs["diverse_image_a"],
                "image_b": imgs["diverse_image_b"],
                "target": imgs["diverse_target"],
            }
    if not rows and not diverse:
        return None
    return {"rows": rows, "diverse": diverse}


def examples_analysis(data: RunData) -> dict[str, Any] | None:
    """Ground truth, input and reconstructions at a few λ per conditional model; baselines at their own λ
    (the ones nearest to the conditional models' example λ, at most as many)."""
    models: dict[str, dict[str, Any]] = {}
    target = inp = None
    slice_id = None
    for m in data.conditional + data.baselines:
        imgs, meta = data.eval_images(m), data.eval_meta(m) or {}
        if imgs is None or "example_recons" not in imgs:
            continue
        ex = meta.get("examples", {})
        if target is None and "example_target" in imgs:
            target, inp, slice_id = imgs["example_target"], imgs.get("example_input"), ex.get("slice")
        lams = np.asarray(imgs.get("example_lams", np.zeros((len(imgs["example_recons"]), 0))), float)
        models[m] = {
            "lams": lams,
            "recons": imgs["example_recons"],
            "metrics": ex.get("metrics", []),
            "slice": ex.get("slice"),
        }
    if target is None or not models:
        return None
    cond = [m for m in data.conditional if m in models]
    base = [m for m in data.baselines if m in models]
    n_cols = max([len(models[m]["lams"]) for m in cond] or [min(5, len(base))])
    if base:
        want = models[cond[0]]["lams"] if cond else np.array([data.baseline_lam(b) for b in base])
        have = np.array([data.baseline_lam(b) for b in base])
        chosen: list[str] = []
        for w in want:
            order = np.argsort(np.linalg.norm(have - w[None, :], axis=1), kind="stable")
            for i in order:
                if base[i] not in chosen:
                    chosen.append(base[i])
                    break
        base = sorted(chosen[:n_cols], key=lambda b: data.baseline_lam(b))
    return {
        "target": target,
        "input": inp,
        "slice": slice_id,
        "models": models,
        "conditional": cond,
        "baselines": base,
        "n_cols": n_cols,
    }


# ---------------------------------------------------------------------------------------------------------------
# downstream Dice


def dice_analysis(data: RunData) -> dict[str, Any] | None:
    if "dice" not in data.metrics:
        return None
    best: dict[str, dict[str, Any]] = {}
    trained = {b: float(_per_slice(data, b, "dice").mean()) for b in data.baselines}
    if trained:
        b = max(trained, key=trained.__getitem__)
        best["baselines"] = {"lam": list(data.baseline_lam(b)), "value": trained[b], "model": b}
    out: dict[str, Any] = {"best": best, "n_lams": data.n_lams}
    from ..segref import read_reference

    ref = read_reference(data.run_dir)  # ceiling (ground truth) and floor (zero-filled) of the segmentation net
    out["ceiling"] = ref["ceiling"] if ref else None
    out["floor"] = ref["floor"] if ref else None
    out["reference"] = ref
    if data.n_lams == 1:
        out["curves"] = {}
        for m in data.conditional:
            c = out["curves"][m] = _curve(data, m, "dice")
            i = _best_index(c["mean"], True)
            best[m] = {"lam": [float(c["lam"][i])], "value": float(c["mean"][i])}
        out["points"] = []
        for b in data.baselines:
            c = _curve(data, b, "dice")
            out["points"].append(
                {
                    "model": b,
                    "lam": data.baseline_lam(b)[0],
                    "mean": float(c["mean"][0]),
                    "std": float(c["std"][0]),
                    "lo": float(c["lo"][0]),
                    "hi": float(c["hi"][0]),
                }
            )
    else:
        ls = landscapes(data, "dice")
        if ls is not None:
            out["landscapes"] = ls
            for m, g in ls["grids"].items():
                o = _optimum(ls["axis"], g, True)
                best[m] = {"lam": [o["lam1"], o["lam2"]], "value": o["value"]}
    return out


# ---------------------------------------------------------------------------------------------------------------
# search


def search_analysis(data: RunData) -> dict[str, Any] | None:
    if data.search is None or data.search_summary is None:
        return None
    ss = data.search_summary
    maximize = higher_is_better(data.objective)
    grid_opt = finite(ss["grid_optimum"].iloc[0]) if "grid_optimum" in ss else None
    targets = list(dict.fromkeys(ss["target"]))
    fastest: dict[str, dict[str, Any]] = {}
    for t in targets:
        rows = ss[ss.target == t]
        if "frac_within" not in rows or "cost_to_within_mean" not in rows:
            continue
        full = rows[(rows.frac_within >= 1.0) & rows.cost_to_within_mean.notna()]
        if len(full):
            r = full.loc[full.cost_to_within_mean.idxmin()]
            fastest[t] = {
                "strategy": str(r.strategy),
                "cost_seconds": float(r.cost_to_within_mean),
                "trials": finite(r.get("trials_to_within_mean")),
                "frac_within": 1.0,
            }
        elif rows.frac_within.max() > 0:
            r = rows.loc[rows.frac_within.idxmax()]
            fastest[t] = {
                "strategy": str(r.strategy),
                "cost_seconds": finite(r.cost_to_within_mean),
                "trials": finite(r.get("trials_to_within_mean")),
                "frac_within": float(r.frac_within),
            }
        else:
            fastest[t] = {"strategy": None, "frac_within": 0.0}
    best_rows = {}
    for t in targets:
        rows = ss[ss.target == t]
        i = rows.regret_mean.idxmin()
        best_rows[t] = {
            "strategy": str(rows.loc[i, "strategy"]),
            "regret_mean": finite(rows.loc[i, "regret_mean"]),
            "best_mean": finite(rows.loc[i, "best_mean"]),
        }
    replay = {t: bool(ss[ss.target == t]["replay"].all()) if "replay" in ss else t == "baselines" for t in targets}
    from .searchreport import search_details

    return {
        "objective": data.objective,
        "maximize": maximize,
        "grid_optimum": grid_opt,
        "targets": targets,
        "fastest": fastest,
        "best": best_rows,
        "replay": replay,
        "n_seeds": int(data.search["seed"].nunique()),
        "budget": int(data.search.groupby(["target", "strategy", "seed"]).size().max()),
        # anytime curves, rankings, multi-fidelity costs, parallel and multi-objective parts
        "details": search_details(data, grid_opt, maximize),
    }


# ---------------------------------------------------------------------------------------------------------------
# training histories


def training_analysis(data: RunData) -> dict[str, Any] | None:
    hist = {}
    for m in [*data.conditional, *data.baselines, "seg"]:
        job = data.job(m)
        h = (job or {}).get("history") or []
        steps = [r.get("step") for r in h if r.get("loss") is not None]
        loss = [r.get("loss") for r in h if r.get("loss") is not None]
        if len(loss) >= 2:
            hist[m] = {"step": np.asarray(steps, float), "loss": np.asarray(loss, float)}
    return {"histories": hist} if hist else None


# ---------------------------------------------------------------------------------------------------------------
# JSON


def jsonable(obj: Any) -> Any:
    """Plain JSON types: arrays -> lists, NaN/inf -> None, numpy scalars -> Python numbers, tuple keys -> str."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.bool_ | bool):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return finite(obj)
    return obj


# ---------------------------------------------------------------------------------------------------------------
# training budgets and convergence


def convergence_analysis(data: RunData) -> dict[str, dict[str, Any]] | None:
    """Per trained model: steps and the convergence check of its validation loss (``convergence.csv``;
    hyperrecon/convergence.py), or None for runs without one."""
    path = data.folder.table("convergence.csv")
    if not path.exists():
        return None
    table = pd.read_csv(path)
    out = {}
    for row in table.to_dict("records"):
        conv = row.get("converged")
        conv = None if conv is None or (isinstance(conv, float) and math.isnan(conv)) else str(conv).lower() == "true"
        out[str(row["model"])] = {**{k: v for k, v in row.items() if k != "model"}, "converged": conv}
    return out
