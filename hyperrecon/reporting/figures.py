"""PNG figures of the report, drawn with matplotlib's object API on the Agg canvas (no pyplot, no global backend).

Every function takes numbers from :mod:`hyperrecon.reporting.analysis` and a target path and returns the path it
wrote (atomically). Conventions: grey images with ``vmin=0, vmax=1``; models keep their colour from
:mod:`hyperrecon.reporting.style`; landscapes put λ1 on x and λ2 on y (``grid[i, j]`` is at ``(axis[i], axis[j])``,
so the array is transposed for drawing), a white star marks the optimum and a dashed box the span of the trained
baseline grid when it does not cover [0, 1]².
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..io import atomic_write_bytes
from .style import BASELINE_COLOR, metric_label, metric_short, model_color, model_label, strategy_color

DPI = 110
PANEL = 2.9  # inches per landscape / image panel
MAX_COLS = 4


def new_figure(width: float, height: float):
    """A Figure bound to the Agg canvas (the report never touches pyplot or the user's backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def shared_legend(fig, axes, *, max_cols: int, fontsize: int) -> None:
    """One legend below the panels: each label once, in the order the panels first show it."""
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(
        handles, labels, loc="outside lower center", ncols=min(max_cols, len(labels)), fontsize=fontsize, frameon=False
    )


def save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return atomic_write_bytes(path, buf.getvalue())


def _grid_axes(fig, n: int, ncols: int = MAX_COLS, **kw):
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False, **kw)).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return axes[:n], nrows, ncols


# ---------------------------------------------------------------------------------------------------------------
# curves over λ (one hyperparameter)


def _band(cv: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) of a curve: its CI where every point has one, else mean ± std (NaN std -> 0)."""
    mean = np.asarray(cv["mean"], float)
    lo = np.asarray([np.nan if v is None else v for v in np.atleast_1d(cv.get("lo", np.nan))], float)
    hi = np.asarray([np.nan if v is None else v for v in np.atleast_1d(cv.get("hi", np.nan))], float)
    if lo.shape == mean.shape and np.isfinite(lo).all() and np.isfinite(hi).all():
        return lo, hi
    std = np.nan_to_num(np.asarray([np.nan if v is None else v for v in np.atleast_1d(cv["std"])], float))
    return mean - std, mean + std


def lambda_curves(
    curves: dict[str, dict[str, dict[str, np.ndarray]]],
    points: dict[str, list[dict[str, float]]],
    metrics: Sequence[str],
    path: Path,
    *,
    xlabel: str,
    title: str,
    best: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """One panel per metric: conditional models as lines with a band, baselines as black markers with error bars;
    the band and bars are the 95% interval over replicates (``lo``/``hi``) where the curves have one, else ±1 std
    (``std``); ``best`` marks each model's best λ with a star."""
    n = len(metrics)
    ncols = 2 if n > 1 else 1
    fig = new_figure(5.2 * ncols if n > 1 else 6.2, 3.6 * math.ceil(n / ncols) + 0.6)
    axes, _, _ = _grid_axes(fig, n, ncols)
    for ax, metric in zip(axes, metrics, strict=True):
        for m, cv in curves.get(metric, {}).items():
            color = model_color(m)
            ax.plot(cv["lam"], cv["mean"], "-", color=color, lw=1.8, label=model_label(m))
            lo, hi = _band(cv)
            ax.fill_between(cv["lam"], lo, hi, color=color, alpha=0.18, lw=0)
            if best and m in best.get(metric, {}):
                b = best[metric][m]
                ax.plot(
                    [b["lam"][0] if isinstance(b["lam"], list) else b["lam"]],
                    [b["value"]],
                    "*",
                    color=color,
                    ms=13,
                    mec="black",
                    mew=0.6,
                    zorder=5,
                )
        pts = points.get(metric, [])
        if pts:
            lam = [p["lam"] for p in pts]
            mean = np.array([p["mean"] for p in pts], float)
            lo, hi = _band(
                {
                    "mean": mean,
                    "std": [p.get("std") for p in pts],
                    "lo": [p.get("lo") for p in pts],
                    "hi": [p.get("hi") for p in pts],
                }
            )
            ax.errorbar(
                lam,
                mean,
                yerr=np.stack([mean - lo, hi - mean]),
                fmt="o",
                color=BASELINE_COLOR,
                ms=6,
                capsize=3,
                lw=1.2,
                label="U-Net baselines (one per λ)",
                zorder=4,
            )
        ax.set_xlabel(xlabel)
        ax.set_ylabel(metric_label(metric))
        if n > 1:
            ax.set_title(metric_short(metric))
        ax.set_xlim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if best:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], marker="*", ls="", color="grey", mec="black", ms=11))
        labels.append("best λ of each model")
    fig.legend(
        handles,
        labels,
        loc="outside lower center",
        ncols=min(4 if n > 1 else 2, len(labels)),
        fontsize=8,
        frameon=False,
    )
    fig.suptitle(title)
    return save(fig, path)


# ---------------------------------------------------------------------------------------------------------------
# landscapes (two hyperparameters)


def _edges(axis: np.ndarray) -> np.ndarray:
    """Cell edges around (possibly non-uniform) axis values, clipped to [0, 1]."""
    a = np.asarray(axis, float)
    if a.size == 1:
        return np.array([0.0, 1.0])
    mid = (a[:-1] + a[1:]) / 2
    return np.clip(np.concatenate([[a[0] - (mid[0] - a[0])], mid, [a[-1] + (a[-1] - mid[-1])]]), 0.0, 1.0)


def _outlined(color: str = "white", outline: str = "black", width: float = 2.2) -> list:
    """Path effect drawing a line with a contrasting outline, readable on any colour map."""
    from matplotlib import patheffects

    return [patheffects.withStroke(linewidth=width, foreground=outline), patheffects.Normal()]


def _draw_landscape(
    ax,
    axis: np.ndarray,
    grid: np.ndarray,
    *,
    cmap: str,
    vmin: float,
    vmax: float,
    levels: Sequence[float] = (),
    star: tuple[float, float] | None = None,
    box: tuple[float, float, float, float] | None = None,
    points: np.ndarray | None = None,
    fmt: str | None = "%.2f",
):
    from matplotlib import colormaps

    e = _edges(axis)
    cm = colormaps[cmap].with_extremes(bad="#d9d9d9")  # cells without data (outside the baseline grid): grey
    masked = np.ma.masked_invalid(grid.T)
    mesh = ax.pcolormesh(e, e, masked, cmap=cm, vmin=vmin, vmax=vmax, shading="flat")
    finite = grid[np.isfinite(grid)]
    lv = sorted(v for v in levels if finite.size and finite.min() < v < finite.max())
    if lv and axis.size >= 2:
        cs = ax.contour(axis, axis, masked, levels=lv, colors="white", linewidths=0.8, linestyles="solid")
        cs.set(path_effects=_outlined(width=1.8))
        if fmt is not None:
            for t in ax.clabel(cs, fmt=fmt, fontsize=7, colors="black"):
                t.set(path_effects=_outlined("black", "white", 2.0))
    if box is not None and (box[0] > axis[0] or box[1] < axis[-1] or box[2] > axis[0] or box[3] < axis[-1]):
        from matplotlib.patches import Rectangle

        # around the cells whose centres lie in the baseline span (the cells that are compared)
        i = np.flatnonzero((axis >= box[0] - 1e-9) & (axis <= box[1] + 1e-9))
        j = np.flatnonzero((axis >= box[2] - 1e-9) & (axis <= box[3] + 1e-9))
        if i.size and j.size:
            x0, x1, y0, y1 = e[i[0]], e[i[-1] + 1], e[j[0]], e[j[-1] + 1]
            ax.add_patch(
                Rectangle(
                    (x0, y0),
                    x1 - x0,
                    y1 - y0,
                    fill=False,
                    ls="--",
                    ec="white",
                    lw=1.2,
                    path_effects=_outlined(),
                    clip_on=False,
                )
            )
    if points is not None and len(points):
        ms = 4 if len(points) <= 100 else 2
        ax.plot(points[:, 0], points[:, 1], "o", color="white", mec="black", mew=0.5, ms=ms, clip_on=False, zorder=4)
    if star is not None:
        ax.plot([star[0]], [star[1]], "*", color="white", mec="black", mew=0.9, ms=17, zorder=6, clip_on=False)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    return mesh


def landscape_figure(
    ls: dict[str, Any],
    optima: dict[str, dict[str, float]],
    path: Path,
    *,
    levels: Sequence[float],
    title: str,
    lam_labels: tuple[str, str],
    baseline_points: np.ndarray | None = None,
    maximize: bool = True,
) -> Path:
    """Baseline landscape (interpolated from its grid) and each conditional model's, on one colour scale."""
    axis = ls["axis"]
    panels = [("U-Net baselines (interpolated)", ls["baseline_plot"], "baseline")]
    panels += [(model_label(m), g, m) for m, g in ls["grids"].items()]
    vals = np.concatenate([p[1][np.isfinite(p[1])].ravel() for p in panels])
    vmin, vmax = float(vals.min()), float(vals.max())
    if vmax <= vmin:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    n = len(panels)
    ncols = min(MAX_COLS, n)
    fig = new_figure(PANEL * ncols + 1.0, PANEL * math.ceil(n / ncols) + 0.7)
    axes, _, _ = _grid_axes(fig, n, ncols)
    mesh = None
    for ax, (name, grid, key) in zip(axes, panels, strict=True):
        o = optima.get(key)
        mesh = _draw_landscape(
            ax,
            axis,
            grid,
            cmap="viridis" if maximize else "viridis_r",
            vmin=vmin,
            vmax=vmax,
            levels=levels,
            star=(o["lam1"], o["lam2"]) if o else None,
            box=ls["box"],
            points=baseline_points if key == "baseline" else None,
        )
        digits = 2 if ls["metric"] in ("psnr", "rpsnr") else 3
        sub = f"\nbest {o['value']:.{digits}f} at ({o['lam1']:.2g}, {o['lam2']:.2g})" if o else ""
        ax.set_title(f"{name}{sub}", fontsize=9)
        ax.set_xlabel(lam_labels[0], fontsize=8)
        ax.set_ylabel(lam_labels[1], fontsize=8)
    fig.colorbar(mesh, ax=list(axes), label=metric_label(ls["metric"]), shrink=0.85)
    fig.suptitle(title)
    return save(fig, path)


def difference_figure(ls: dict[str, Any], path: Path, *, title: str, lam_labels: tuple[str, str]) -> Path:
    """Each conditional model's landscape minus the interpolated baseline landscape (diverging, centred at 0)."""
    axis, base = ls["axis"], ls["baseline_plot"]
    diffs = {m: g - base for m, g in ls["grids"].items()}
    vals = np.concatenate([d[np.isfinite(d)].ravel() for d in diffs.values()])
    lim = float(np.abs(vals).max()) if vals.size else 1.0
    lim = lim if lim > 0 else 1.0
    n = len(diffs)
    ncols = min(MAX_COLS, n)
    fig = new_figure(PANEL * ncols + 1.0, PANEL * math.ceil(n / ncols) + 0.7)
    axes, _, _ = _grid_axes(fig, n, ncols)
    mesh = None
    for ax, (m, d) in zip(axes, diffs.items(), strict=True):
        mesh = _draw_landscape(ax, axis, d, cmap="RdBu", vmin=-lim, vmax=lim, levels=[0.0], box=ls["box"], fmt=None)
        ax.set_title(f"{model_label(m)} − baselines\nmean {np.nanmean(d):+.2f}", fontsize=9)
        ax.set_xlabel(lam_labels[0], fontsize=8)
        ax.set_ylabel(lam_labels[1], fontsize=8)
    fig.colorbar(mesh, ax=list(axes), label=f"Δ {metric_label(ls['metric'])} (model − baselines; line: 0)", shrink=0.85)
    fig.suptitle(title)
    return save(fig, path)


# ---------------------------------------------------------------------------------------------------------------
# DHS histogram


def dhs_histogram(kept: dict[str, np.ndarray], path: Path, *, lam_labels: tuple[str, str], bins: int = 10) -> Path:
    """Where DHS put its gradient: a 2-D (or 1-D) histogram of the λ it kept, per DHS model (paper Fig. 6)."""
    n = len(kept)
    ncols = min(MAX_COLS, n)
    fig = new_figure(max(5.5, PANEL * ncols + 1.0), PANEL * math.ceil(n / ncols) + 0.6)
    axes, _, _ = _grid_axes(fig, n, ncols)
    edges = np.linspace(0, 1, bins + 1)
    for ax, (m, lams) in zip(axes, kept.items(), strict=True):
        if lams.shape[1] >= 2:
            h, _, _ = np.histogram2d(lams[:, 0], lams[:, 1], bins=[edges, edges])
            mesh = ax.pcolormesh(edges, edges, h.T, cmap="magma", vmin=0)
            fig.colorbar(mesh, ax=ax, label="kept λ per bin (count)", shrink=0.8)
            ax.set_aspect("equal")
            ax.set_ylabel(lam_labels[1], fontsize=8)
        else:
            ax.hist(lams[:, 0], bins=edges, color=model_color(m), edgecolor="black")
            ax.axhline(len(lams) / bins, color="grey", ls="--", lw=1, label="uniform expectation")
            ax.legend(fontsize=7)
            ax.set_ylabel("kept λ (count)", fontsize=8)
        ax.set_xlabel(lam_labels[0], fontsize=8)
        ax.set_title(
            f"{model_label(m)}\n{len(lams)} kept λ (uniform: {len(lams) / bins ** lams.shape[1]:.1f}/bin)", fontsize=9
        )
    fig.suptitle("λ kept by DHS for the gradient")
    return save(fig, path)


# ---------------------------------------------------------------------------------------------------------------
# images


def _image(ax, img: np.ndarray, title: str, fontsize: int = 8):
    im = ax.imshow(np.asarray(img, float), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=fontsize)
    return im


def _metric_text(metrics: dict[str, float] | None, keys: Sequence[str] = ("psnr", "ssim")) -> str:
    if not metrics:
        return ""
    parts = []
    for k in keys:
        v = metrics.get(k)
        if v is not None and np.isfinite(v):
            parts.append(f"{metric_short(k)} {v:.2f}" if k in ("psnr", "rpsnr") else f"{metric_short(k)} {v:.3f}")
    return ", ".join(parts)


def _lam_text(lam: Sequence[float] | np.ndarray) -> str:
    vals = [f"{float(v):.2g}" for v in np.atleast_1d(lam)]
    return f"λ={vals[0]}" if len(vals) == 1 else f"λ=({', '.join(vals)})"


def diverse_figure(diverse: dict[str, dict[str, Any]], path: Path) -> Path:
    """Per model: ground truth, the two most different good reconstructions, and their absolute difference."""
    n = len(diverse)
    fig = new_figure(4 * 2.3 + 0.8, 2.5 * n + 0.5)
    axes = fig.subplots(n, 4, squeeze=False)
    diffs = {m: np.abs(np.asarray(d["image_a"], float) - np.asarray(d["image_b"], float)) for m, d in diverse.items()}
    dmax = max(float(v.max()) for v in diffs.values()) or 1.0
    im = None
    for row, (m, d) in zip(axes, diverse.items(), strict=True):
        _image(row[0], d["target"], "ground truth")
        row[0].set_ylabel(model_label(m), fontsize=9)
        _image(row[1], np.clip(d["image_a"], 0, 1), f"A: {_lam_text(d['lam_a'])}\n{_metric_text(d.get('metrics_a'))}")
        _image(row[2], np.clip(d["image_b"], 0, 1), f"B: {_lam_text(d['lam_b'])}\n{_metric_text(d.get('metrics_b'))}")
        im = row[3].imshow(diffs[m], cmap="magma", vmin=0, vmax=dmax, interpolation="nearest")
        row[3].set_xticks([])
        row[3].set_yticks([])
        dist = d.get("distance")
        row[3].set_title(f"|A − B|  (L2 {dist:.3g})" if dist is not None else "|A − B|", fontsize=8)
    fig.colorbar(im, ax=axes[:, 3].tolist(), label="|A − B| (intensity)", shrink=0.8)
    fig.suptitle("Diverse pair: the two most different reconstructions among the best-PSNR λ")
    return save(fig, path)


def examples_figure(ex: dict[str, Any], path: Path, *, input_label: str) -> Path:
    """Ground truth and input, then a row of reconstructions over λ per model (baselines: each at its own λ)."""
    rows: list[tuple[str, list[tuple[np.ndarray, str]]]] = []
    if ex["baselines"]:
        items = []
        for b in ex["baselines"]:
            e = ex["models"][b]
            items.append((e["recons"][0], f"{_lam_text(e['lams'][0])}\n{_metric_text((e['metrics'] or [None])[0])}"))
        rows.append(("U-Net baselines", items))
    for m in ex["conditional"]:
        e = ex["models"][m]
        mets = e["metrics"] or [None] * len(e["recons"])
        items = [
            (r, f"{_lam_text(lam)}\n{_metric_text(mt)}")
            for r, lam, mt in zip(e["recons"], e["lams"], mets, strict=False)
        ]
        rows.append((model_label(m), items))
    ncols = max(2, max(len(items) for _, items in rows))
    fig = new_figure(2.0 * ncols + 0.9, 2.15 * (len(rows) + 1) + 0.4)
    axes = fig.subplots(len(rows) + 1, ncols, squeeze=False)
    im = _image(axes[0, 0], ex["target"], "ground truth")
    axes[0, 0].set_ylabel("reference", fontsize=9)
    if ex.get("input") is not None:
        _image(axes[0, 1], np.clip(ex["input"], 0, 1), input_label)
    for ax in axes[0, 2:]:
        ax.set_visible(False)
    for r, (label, items) in enumerate(rows, start=1):
        for c in range(ncols):
            ax = axes[r, c]
            if c < len(items):
                _image(ax, np.clip(items[c][0], 0, 1), items[c][1], fontsize=7)
            else:
                ax.set_visible(False)
        axes[r, 0].set_ylabel(label, fontsize=9)
    fig.colorbar(im, ax=axes.ravel().tolist(), label="intensity (clipped to [0, 1])", shrink=0.5)
    sl = ex.get("slice")
    fig.suptitle(f"Example reconstructions (test slice {sl})" if sl is not None else "Example reconstructions")
    return save(fig, path)


# ---------------------------------------------------------------------------------------------------------------
# search


def search_figure(
    search: pd.DataFrame,
    targets: Sequence[str],
    path: Path,
    *,
    objective_label: str,
    grid_optimum: float | None,
    training_seconds: dict[str, float | None],
) -> Path:
    """Best-so-far validation objective against cumulative device seconds: per target and strategy the mean
    over seeds (line) with a ±1 std band; replayed baseline searches pay each U-Net's training time per trial."""
    n = len(targets)
    ncols = min(3, n)
    fig = new_figure(4.6 * ncols, 3.5 * math.ceil(n / ncols) + 0.7)
    axes, _, _ = _grid_axes(fig, n, ncols)
    for ax, t in zip(axes, targets, strict=True):
        sub = search[search.target == t]
        for strategy, s in sub.groupby("strategy", sort=False):
            g = s.groupby("trial").agg(
                cost=("cum_cost_seconds", "mean"), best=("best_so_far", "mean"), std=("best_so_far", "std")
            )
            std = g["std"].fillna(0.0).to_numpy()
            color = strategy_color(str(strategy))
            ax.plot(g["cost"], g["best"], "-o", ms=3, color=color, lw=1.5, drawstyle="steps-post", label=str(strategy))
            ax.fill_between(g["cost"], g["best"] - std, g["best"] + std, color=color, alpha=0.15, lw=0, step="post")
        if grid_optimum is not None:
            ax.axhline(grid_optimum, color="black", ls="--", lw=1, label="grid optimum (best trained baseline)")
        costs = sub["cum_cost_seconds"].to_numpy(float)
        costs = costs[costs > 0]
        if costs.size and costs.max() / costs.min() > 50:
            ax.set_xscale("log")
        if t == "baselines":
            ax.set_title("U-Net baselines\n(replayed from the trained grid)", fontsize=9)
        else:
            tr = training_seconds.get(t)
            extra = f"\n(+ {tr:.3g} s training, not on the axis)" if tr is not None else ""
            ax.set_title(f"{model_label(t)}{extra}", fontsize=9)
        ax.set_xlabel("cumulative device time (s)")
        ax.set_ylabel(f"best-so-far {objective_label}")
        ax.grid(alpha=0.3)
    shared_legend(fig, axes, max_cols=6, fontsize=8)
    fig.suptitle("λ search: best validation objective so far against device time (mean ± 1 std over seeds)")
    return save(fig, path)


# ---------------------------------------------------------------------------------------------------------------
# training


def training_figure(histories: dict[str, dict[str, np.ndarray]], path: Path) -> Path:
    """Training loss per step: conditional models (their λ-sampled loss) and the per-λ baselines."""
    groups = {
        "λ-conditioned models": {m: h for m, h in histories.items() if not m.startswith(("baseline-", "seg"))},
        "U-Net baselines": {m: h for m, h in histories.items() if m.startswith("baseline-")},
        "segmentation U-Net": {m: h for m, h in histories.items() if m == "seg"},
    }
    groups = {k: v for k, v in groups.items() if v}
    from matplotlib import colormaps
    from matplotlib.ticker import MaxNLocator

    n = len(groups)
    fig = new_figure(4.4 * n, 3.6)
    axes, _, _ = _grid_axes(fig, n, n)
    for ax, (title, hs) in zip(axes, groups.items(), strict=True):
        greys = colormaps["Greys"](np.linspace(0.45, 0.95, max(1, len(hs))))
        for k, (m, h) in enumerate(hs.items()):
            loss = np.asarray(h["loss"], float)
            color = greys[k] if m.startswith("baseline-") else model_color(m)
            ax.plot(h["step"], loss, lw=1.2, color=color, alpha=0.9, label=model_label(m))
        allv = np.concatenate([np.asarray(h["loss"], float) for h in hs.values()])
        if np.all(allv > 0) and allv.max() / allv.min() > 20:  # log only where losses span orders of magnitude
            ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("training step")
        ax.set_ylabel("training loss (weighted sum)" if title != "segmentation U-Net" else "soft-Dice loss")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        if len(hs) <= 8:
            ax.legend(fontsize=7)
    fig.suptitle("Training loss (mini-batch; as logged)")
    return save(fig, path)
