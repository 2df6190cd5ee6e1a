"""The search section's analyses, figures, tables and findings beyond the per-strategy summary: anytime curves
with 95% bands, rankings with the Friedman test, what early stopping saved, time to the grid optimum with 1, 4
and 16 simulated workers, λ-conditioned models as points on the same axes, Pareto fronts, hypervolume against
cost and the λ to pick for Dice. Numbers come from :mod:`hyperrecon.search.stats` and
:mod:`hyperrecon.search.multi`; a run without the tables of a part (an older run, no segmentation) leaves that
part out.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from ..errors import RunError
from ..search.live import LIVE_TARGET
from ..search.multi import HV_REFERENCE, fronts, pick_for
from ..search.stats import anytime, mean_ci, rank_strategies, regret, time_to_target
from .figures import _grid_axes, new_figure, save, shared_legend
from .rundata import RunData, finite, read_table
from .style import BASELINE_COLOR, higher_is_better, metric_short, model_color, model_label, strategy_color
from .tables import MISSING, fmt_lam, fmt_num, fmt_p, fmt_seconds, md_table

_PRUNER_STYLES = {"none": "-", "median": ":", "successive-halving": "--", "hyperband": "-."}


def _style(strategy: str) -> tuple[str, Any]:
    sampler, _, pruner = strategy.partition("+")
    return strategy_color(sampler), _PRUNER_STYLES.get(pruner or "none", (0, (1, 1)))


def _lams(x: Any, suffix: str) -> list[float]:
    """λ of a row's ``lam1<suffix>``/``lam2<suffix>`` (lam2 only where it is a number)."""
    lam2 = finite(x.get(f"lam2{suffix}"))
    return [float(x[f"lam1{suffix}"])] + ([lam2] if lam2 is not None else [])


def _target_label(t: str) -> str:
    if t == LIVE_TARGET:
        return "U-Net baselines (trained live)"
    return "U-Net baselines (replayed)" if t == "baselines" else model_label(t)


# ---------------------------------------------------------------------------------------------------------------
# analysis


def search_details(data: RunData, grid_optimum: float | None, maximize: bool) -> dict[str, Any] | None:
    """Every number of the extra search parts (see the module doc); None without ``search.csv``."""
    search = data.search
    if search is None or grid_optimum is None:
        return None
    trials = search.copy()
    if "state" not in trials:
        trials["state"] = "COMPLETE"
    if "end_seconds" not in trials:
        trials["start_seconds"] = trials["cum_cost_seconds"] - trials.get("cost_seconds", 0.0)
        trials["end_seconds"] = trials["cum_cost_seconds"]
    trials["regret"] = regret(trials["best_so_far"], grid_optimum, maximize)
    out: dict[str, Any] = {
        "best_curves": anytime(trials, "best_so_far"),
        "regret_curves": anytime(trials, "regret"),
        "ranking": rank_strategies(trials, maximize=maximize),
        "ranking_final": rank_strategies(trials, maximize=maximize, budget=math.inf),
        "to_target": time_to_target(trials, grid_optimum, maximize=maximize),
    }
    dev = data.costs.set_index("model")["device_seconds"]
    points = []
    ranking = out["ranking"]
    for t in data.conditional:
        rows = ranking[(ranking.target == t)]
        sub = trials[trials.target == t]
        if rows.empty or sub.empty or finite(dev.get(t)) is None:
            continue
        strategy = str(rows.loc[rows.avg_rank.idxmin(), "strategy"])
        runs = sub[sub.strategy == strategy].groupby("seed")
        cost = runs["cost_seconds"].sum().to_numpy(float)
        best = runs["best_so_far"].last().to_numpy(float)
        y, lo, hi, n = mean_ci(best)
        rg = mean_ci(regret(best, grid_optimum, maximize))
        points.append(
            {
                "model": t,
                "strategy": strategy,
                "training": float(dev[t]),
                "search": float(cost.mean()),
                "x": float(dev[t] + cost.mean()),
                "best": y,
                "best_low": lo,
                "best_high": hi,
                "regret": rg[0],
                "regret_low": rg[1],
                "regret_high": rg[2],
                "n": n,
            }
        )
    out["model_points"] = points
    for key, target in (("multi_fidelity", "baselines"), ("live", LIVE_TARGET)):
        base = trials[(trials.target == target)]
        if len(base) and "full_cost_seconds" in base and "pruner" in base:
            out[key] = _cost_rows(base)
    par = read_table(
        data.folder.table("search_parallel.csv"),
        ["strategy", "seed", "workers", "best_so_far", "start_seconds", "end_seconds"],
        "replayed baseline searches per worker count",
        required=False,
    )
    if par is not None:
        out["parallel"] = time_to_target(par, grid_optimum, maximize=maximize, group=("target", "strategy", "workers"))
    mo = read_table(
        data.folder.table("search_mo.csv"),
        [
            "target",
            "objectives",
            "strategy",
            "seed",
            "lam1",
            "metric1",
            "value1",
            "metric2",
            "value2",
            "cum_cost_seconds",
        ],
        "multi-objective search trials",
        required=False,
    )
    if mo is not None:
        if "lam2" not in mo:  # an SL run's tables leave the lam2 column out (hyperrecon.runfiles.tidy)
            mo = mo.assign(lam2=np.nan)
        out.update(_mo_details(data, mo, dev))
    return out


def _cost_rows(trials: pd.DataFrame) -> list[dict[str, Any]]:
    """Per strategy: trials and pruned share, mean steps, device time per search and what the same trials cost
    trained to the end."""
    rows = []
    for strategy, g in trials.groupby("strategy", sort=False):
        per_seed = g.groupby("seed")[["cost_seconds", "full_cost_seconds"]].sum()
        rows.append(
            {
                "strategy": strategy,
                "pruner": str(g["pruner"].iloc[0]),
                "trials": len(g) / g.seed.nunique(),
                "pruned": float((g.state == "PRUNED").mean()),
                "steps": float(g["step"].mean()),
                "cost": float(per_seed.cost_seconds.mean()),
                "full": float(per_seed.full_cost_seconds.mean()),
                "ratio": float(per_seed.cost_seconds.sum() / per_seed.full_cost_seconds.sum()),
            }
        )
    return rows


def _baseline_points(data: RunData, pairs: list[tuple[str, str]]) -> pd.DataFrame:
    """Every trained baseline, fully trained, as a point of each objective pair (from ``search/fidelity.csv``)."""
    path = data.folder.search_file("fidelity.csv")
    fid = read_table(path, ["lam1", "step"], "the fidelity table of the baselines", required=False)
    if fid is None:
        return pd.DataFrame()
    final = fid[fid.step == fid.step.max()]
    rows = []
    for m1, m2 in pairs:
        if m1 in final and m2 in final:
            rows.append(
                pd.DataFrame(
                    {
                        "target": "baselines",
                        "objectives": f"{m1},{m2}",
                        "lam1": final.lam1,
                        "lam2": final.get("lam2", np.nan),
                        "metric1": m1,
                        "value1": final[m1],
                        "metric2": m2,
                        "value2": final[m2],
                    }
                )
            )
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def _mo_details(data: RunData, mo: pd.DataFrame, dev: pd.Series) -> dict[str, Any]:
    mo = mo[mo.get("state", "COMPLETE") == "COMPLETE"] if "state" in mo else mo
    pairs = list(dict.fromkeys(zip(mo.metric1, mo.metric2, strict=True)))
    mx = {m: higher_is_better(m) for p in pairs for m in p}
    base = _baseline_points(data, pairs)
    models = mo[mo.target != "baselines"]
    points = pd.concat([base, models], ignore_index=True) if len(base) else models
    out: dict[str, Any] = {"pairs": pairs, "fronts": fronts(points, mx), "mo_points": points, "maximize": mx}
    if "hypervolume" in mo:
        offset = {t: (0.0 if t == "baselines" else float(dev.get(t, 0.0))) for t in mo.target.unique()}
        hv = mo.assign(cost=mo.cum_cost_seconds + mo.target.map(offset))
        curves = []
        for pair, g in hv.groupby("objectives", sort=False):
            c = anytime(g, "hypervolume", "cost", group=("target", "strategy"))
            curves.append(c.assign(objectives=pair))
        out["hv_curves"] = pd.concat(curves, ignore_index=True) if curves else None
        final = []
        for (pair, t, s), g in hv.groupby(["objectives", "target", "strategy"], sort=False):
            last = g.groupby("seed").tail(1)
            m, lo, hi, n = mean_ci(last.hypervolume.to_numpy(float))
            final.append(
                {
                    "objectives": pair,
                    "target": t,
                    "strategy": s,
                    "hv": m,
                    "low": lo,
                    "high": hi,
                    "n": n,
                    "cost": float(last.cost.mean()),
                }
            )
        out["hv_final"] = final
    if any("dice" in p for p in pairs):
        q = next(p[0] for p in pairs if p[1] == "dice")
        out["dice_pick"] = pick_for(points, q, "dice", mx)
    return out


# ---------------------------------------------------------------------------------------------------------------
# figures


def _band(ax, c: pd.DataFrame, color, ls, label: str, offset: float = 0.0) -> None:
    x = c["time"].to_numpy(float) + offset
    ax.plot(x, c["mean"], color=color, ls=ls, lw=1.5, drawstyle="steps-post", label=label)
    ok = c["low"].notna().to_numpy()
    if ok.any():
        ax.fill_between(x[ok], c["low"][ok], c["high"][ok], color=color, alpha=0.13, lw=0, step="post")


def anytime_figure(
    details: dict[str, Any],
    targets: list[str],
    path: Path,
    *,
    objective_label: str,
    grid_optimum: float | None,
    n_seeds: dict[str, int],
) -> Path:
    """Best-so-far validation objective against cumulative device time per target: mean over seeds with its 95%
    confidence band; the baselines panel also shows each λ-conditioned model as one point (training + search)."""
    n = len(targets)
    ncols = min(3, n)
    fig = new_figure(4.8 * ncols, 3.6 * math.ceil(n / ncols) + 0.8)
    axes, _, _ = _grid_axes(fig, n, ncols)
    curves = details["best_curves"]
    for ax, t in zip(axes, targets, strict=True):
        for strategy, c in curves[curves.target == t].groupby("strategy", sort=False):
            color, ls = _style(str(strategy))
            _band(ax, c, color, ls, str(strategy))
        if t == "baselines":
            for p in details["model_points"]:
                err = None
                if p["best_low"] is not None and np.isfinite(p["best_low"]):
                    err = [[p["best"] - p["best_low"]], [p["best_high"] - p["best"]]]
                ax.errorbar(
                    [p["x"]],
                    [p["best"]],
                    yerr=err,
                    fmt="D",
                    ms=6,
                    color=model_color(p["model"]),
                    mec="black",
                    capsize=3,
                    label=f"{model_label(p['model'])}: training + search",
                )
        if grid_optimum is not None:
            ax.axhline(grid_optimum, color=BASELINE_COLOR, ls="--", lw=0.8, label="grid optimum")
        _logx(ax)
        k = n_seeds.get(t, 0)
        ax.set_title(f"{_target_label(t)} ({k} seed{'' if k == 1 else 's'})", fontsize=9)
        ax.set_xlabel("cumulative device time (s, log)")
        ax.set_ylabel(f"best-so-far {objective_label}")
        ax.grid(alpha=0.3)
    _legend(fig, axes)
    fig.suptitle("λ search: best validation objective so far (mean, 95% confidence band over seeds)")
    return save(fig, path)


def regret_figure(details: dict[str, Any], path: Path, *, objective_label: str) -> Path:
    """Regret (grid optimum − best so far) of the replayed baseline searches against device time, with the
    λ-conditioned models as points at their training + search cost."""
    fig = new_figure(6.4, 4.4)
    ax = fig.subplots()
    curves = details["regret_curves"]
    for strategy, c in curves[curves.target == "baselines"].groupby("strategy", sort=False):
        color, ls = _style(str(strategy))
        _band(ax, c, color, ls, str(strategy))
    for p in details["model_points"]:
        err = None
        if p["regret_low"] is not None and np.isfinite(p["regret_low"]):
            err = [[p["regret"] - p["regret_low"]], [p["regret_high"] - p["regret"]]]
        ax.errorbar(
            [p["x"]],
            [p["regret"]],
            yerr=err,
            fmt="D",
            ms=6,
            color=model_color(p["model"]),
            mec="black",
            capsize=3,
            label=f"{model_label(p['model'])} ({p['strategy']})",
        )
    ax.axhline(0.0, color="black", lw=0.8)
    _logx(ax)
    ax.set_xlabel("cumulative device time (s, log); models: training + search")
    ax.set_ylabel(f"regret in {objective_label} (0: grid optimum; < 0 better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncols=2)
    ax.set_title("Regret against device time (mean, 95% band over seeds)", fontsize=10)
    return save(fig, path)


def pareto_figure(details: dict[str, Any], path: Path) -> Path:
    """Per objective pair: every trained baseline (grey), the baselines' Pareto front, and each λ-conditioned
    model's front over the λ its multi-objective searches evaluated."""
    pairs = details["pairs"]
    fig = new_figure(5.0 * len(pairs), 4.2)
    axes, _, _ = _grid_axes(fig, len(pairs), len(pairs))
    pts, fr = details["mo_points"], details["fronts"]
    for ax, (m1, m2) in zip(axes, pairs, strict=True):
        key = f"{m1},{m2}"
        base = pts[(pts.objectives == key) & (pts.target == "baselines")]
        ax.scatter(base.value1, base.value2, s=14, color="0.6", label="trained baselines")
        for t, f in fr[fr.objectives == key].groupby("target", sort=False):
            color = BASELINE_COLOR if t == "baselines" else model_color(str(t))
            ax.plot(
                f.value1,
                f.value2,
                "-o",
                ms=3.5,
                color=color,
                drawstyle="steps-post" if len(f) > 1 else None,
                label=f"{_target_label(str(t))} front",
            )
        ax.set_xlabel(f"validation {metric_short(m1)} ({'↑' if details['maximize'][m1] else '↓'})")
        ax.set_ylabel(f"validation {metric_short(m2)} ({'↑' if details['maximize'][m2] else '↓'})")
        ax.grid(alpha=0.3)
        ax.set_title(f"{metric_short(m1)} vs {metric_short(m2)}", fontsize=9)
    _legend(fig, axes)
    fig.suptitle("Pareto fronts over λ: baselines (all trained cells) and each λ-conditioned model (searched λ)")
    return save(fig, path)


def hypervolume_figure(details: dict[str, Any], path: Path) -> Path:
    """Hypervolume of the front found so far against device time (models: training + search), per pair."""
    curves = details["hv_curves"]
    pairs = list(dict.fromkeys(curves.objectives))
    fig = new_figure(5.0 * len(pairs), 4.0)
    axes, _, _ = _grid_axes(fig, len(pairs), len(pairs))
    for ax, pair in zip(axes, pairs, strict=True):
        for (t, s), c in curves[curves.objectives == pair].groupby(["target", "strategy"], sort=False):
            color = BASELINE_COLOR if t == "baselines" else model_color(str(t))
            c = c.assign(low=c["low"].clip(lower=0.0), high=c["high"].clip(upper=HV_REFERENCE**2))  # its range
            _band(ax, c, color, "-" if s == "nsga2" else "--", f"{_target_label(str(t))}, {s}")
        _logx(ax)
        ax.set_xlabel("cumulative device time (s, log); models: training + search")
        ax.set_ylabel("hypervolume (normalised objectives)")
        ax.set_title(" vs ".join(metric_short(m) for m in pair.split(",")), fontsize=9)
        ax.grid(alpha=0.3)
    _legend(fig, axes)
    fig.suptitle("Multi-objective search: hypervolume against cost (mean, 95% band over seeds)")
    return save(fig, path)


def parallel_figure(par: pd.DataFrame, path: Path) -> Path:
    """Wall-clock time to the grid optimum against the number of simulated asynchronous workers."""
    fig = new_figure(6.0, 4.2)
    ax = fig.subplots()
    for strategy, g in par.groupby("strategy", sort=False):
        g = g[g.wall_mean.notna()].sort_values("workers")
        if g.empty:
            continue
        color, ls = _style(str(strategy))
        lo = (g.wall_mean - g.wall_low).fillna(0).clip(lower=0)
        hi = (g.wall_high - g.wall_mean).fillna(0).clip(lower=0)
        ax.errorbar(
            g.workers, g.wall_mean, yerr=[lo, hi], color=color, ls=ls, marker="o", ms=4, capsize=3, label=str(strategy)
        )
    from matplotlib.ticker import ScalarFormatter

    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sorted(par.workers.unique()))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("simulated asynchronous workers")
    ax.set_ylabel("wall-clock time to the grid optimum (s, log)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncols=2)
    ax.set_title("Baseline searches in parallel\n(mean, 95% CI over the seeds that reach the optimum)", fontsize=9)
    return save(fig, path)


def _logx(ax) -> None:
    """Log time axis with labels at the decades only (minor labels overlap on short spans)."""
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())


def _legend(fig, axes) -> None:
    shared_legend(fig, axes, max_cols=5, fontsize=7)


# ---------------------------------------------------------------------------------------------------------------
# markdown


def _ci(m: Any, lo: Any, hi: Any, fmt=fmt_seconds) -> str:
    if finite(m) is None:
        return MISSING
    if finite(lo) is None:
        return fmt(m)
    return f"{fmt(m)} [{fmt(lo)}, {fmt(hi)}]"


def markdown(data: RunData, se: dict[str, Any], d: dict[str, Any], fig_dir: Path, link) -> list[str]:
    """The extra blocks of the search section (figures, tables, notes)."""
    obj = se["objective"]
    unit = " (dB)" if obj in ("psnr", "rpsnr") else ""
    label = f"validation {metric_short(obj)}{unit}"
    if data.search is None:
        raise RunError(f"{data.run_dir}: the report has a search section but the run has no search trials")
    seeds = data.search.groupby("target")["seed"].nunique().to_dict()
    out = []
    found = findings(se)
    if found:  # the search's own findings (the report's Findings list is the claims table's)
        out.append("\n".join(f"- {f}" for f in found))
    p = anytime_figure(
        d, se["targets"], fig_dir / "search.png", objective_label=label, grid_optimum=se["grid_optimum"], n_seeds=seeds
    )
    out += [
        f"![search: anytime curves]({link(p)})",
        "Each search is repeated over seeds (replicates); lines are the mean best-so-far over the seeds that "
        "have a finished trial by then, bands the 95% t-interval of that mean. Line style: the pruner (solid: "
        "none, dashed: successive halving, dash-dot: Hyperband, dotted: median). Diamonds: each λ-conditioned "
        "model at its training plus mean search cost (its best-ranked strategy), with the 95% interval of its "
        "best validation objective.",
    ]
    if d["model_points"] or len(d["regret_curves"]):
        p = regret_figure(d, fig_dir / "search-regret.png", objective_label=label)
        out.append(f"![search: regret]({link(p)})")
    out += ["### Ranking at equal device time", _ranking(d["ranking"], d.get("ranking_final"))]
    if d.get("multi_fidelity"):
        out += ["### Multi-fidelity: what early stopping saved", _mf_table(d["multi_fidelity"])]
    if d.get("live"):
        out += ["### Live searches", _mf_table(d["live"], to_target=d["to_target"])]
    out += ["### Time to the grid optimum", _to_target(d)]
    if d.get("parallel") is not None and d["parallel"].wall_mean.notna().any():
        p = parallel_figure(d["parallel"], fig_dir / "search-parallel.png")
        out.append(f"![search: parallel]({link(p)})")
    if d.get("pairs"):
        out += ["### Several objectives"]
        p = pareto_figure(d, fig_dir / "search-pareto.png")
        out.append(f"![search: Pareto fronts]({link(p)})")
        if d.get("hv_curves") is not None and len(d["hv_curves"]):
            p = hypervolume_figure(d, fig_dir / "search-hypervolume.png")
            out.append(f"![search: hypervolume]({link(p)})")
            out.append(_hv_table(d["hv_final"]))
        if d.get("dice_pick") is not None and len(d["dice_pick"]):
            out += ["#### Which λ to pick for Dice", _dice_table(d["dice_pick"])]
    return out


def _ranking(r: pd.DataFrame, final: pd.DataFrame | None) -> str:
    rows = []
    end = final.set_index(["target", "strategy"]) if final is not None else None
    for t, g in r.groupby("target", sort=False):
        for _, x in g.sort_values("avg_rank").iterrows():
            f = end.loc[(t, x.strategy)] if end is not None else None
            rows.append(
                [
                    _target_label(str(t)),
                    str(x.strategy),
                    fmt_num(x.avg_rank, 2),
                    fmt_num(x.score_mean, 3),
                    fmt_seconds(x.budget_seconds),
                    "best" if x.best else fmt_p(x.vs_best_p),
                    fmt_p(x.friedman_p),
                    fmt_num(f.avg_rank, 2) if f is not None else MISSING,
                    fmt_p(f.friedman_p) if f is not None else MISSING,
                    str(int(x.n_seeds)),
                ]
            )
    table = md_table(
        [
            "target",
            "strategy",
            "average rank at T",
            "best-so-far at T (mean)",
            "T (device)",
            "p vs best (Wilcoxon, BH)",
            "Friedman p",
            "average rank at the end",
            "Friedman p at the end",
            "seeds",
        ],
        rows,
        name="search ranking",
    )
    return (
        "Per target and seed, the strategies are ranked (1 = best) by their best-so-far at the common budget T "
        "(the smallest total device time of any of the target's searches; a search with nothing finished by "
        "then ranks last); 'at the end': by each search's final best, whatever it cost. Friedman test over "
        "the seeds (`scipy.stats.friedmanchisquare`, three or more "
        "strategies); post hoc, each strategy against the best-ranked one with the Wilcoxon signed-rank test, "
        "p adjusted by Benjamini-Hochberg.\n\n" + table
    )


def _mf_table(mf: list[dict[str, Any]], *, to_target: pd.DataFrame | None = None) -> str:
    """What the searches of one target cost against the same trials trained to the end; with ``to_target`` (the
    live searches) also the seeds reaching the grid optimum and the device time to it."""
    live = to_target is not None
    rows = []
    for m in mf:
        row = [
            m["strategy"],
            m["pruner"],
            fmt_num(m["trials"], 1),
            f"{m['pruned']:.0%}",
            fmt_num(m["steps"], 0),
            fmt_seconds(m["cost"]),
            fmt_seconds(m["full"]),
            f"{m['ratio']:.0%}",
        ]
        if to_target is not None:
            hit = to_target[(to_target.target == LIVE_TARGET) & (to_target.strategy == m["strategy"])]
            x = hit.iloc[0] if len(hit) else None
            row += [
                f"{round(x.frac_reached * x.n_seeds)} / {int(x.n_seeds)}" if x is not None else MISSING,
                _ci(x.device_mean, x.device_low, x.device_high) if x is not None else MISSING,
            ]
        rows.append(row)
    header = [
        "strategy",
        "pruner",
        "trials / search",
        "pruned",
        "mean training steps / trial",
        "device time / search",
        "same trials trained to the end",
        "ratio",
    ]
    if live:
        header += ["seeds reaching the grid optimum", "device time to it [95% CI]"]
    table = md_table(header, rows, name="live search cost" if live else "multi-fidelity cost")
    if live:
        note = (
            "Each trial trained a U-Net at the suggested λ with the run's training loop (`search.live.steps` "
            "steps, seeded as the baseline at that λ) and, with a pruner, reported its validation objective at "
            "the fidelity steps to it (`trial.report`, `trial.should_prune`); costs are the device time it "
            "trained and validated "
            "(Optuna user attributes of the live studies). 'Trained to the end' for a pruned trial extrapolates "
            "its training time per step. Live searches are resumed from the run's storage after a crash. Grid "
            "optimum: the best trained baseline, as for the replayed searches."
        )
    else:
        note = (
            "Replayed from the fidelity table (`search/fidelity.csv`: every baseline's validation metrics at "
            "fixed training steps). A trial stopped by its pruner pays the training steps it consumed plus one "
            "validation pass per fidelity it reached; 'trained to the end' is what the same trials cost without "
            "early stopping (full training and one validation pass)."
        )
    return note + "\n\n" + table


def _to_target(d: dict[str, Any]) -> str:
    tt = d["to_target"]
    par = d.get("parallel")
    workers = sorted(int(w) for w in par.workers.unique()) if par is not None else []
    rows = []
    for _, x in tt[tt.target == "baselines"].iterrows():
        row = [
            str(x.strategy),
            f"{round(x.frac_reached * x.n_seeds)} / {int(x.n_seeds)}",
            _ci(x.device_mean, x.device_low, x.device_high),
        ]
        for w in workers:
            p = cast(pd.DataFrame, par)  # workers is empty without it
            hit = p[(p.strategy == x.strategy) & (p.workers == w)]
            row.append(_ci(*hit[["wall_mean", "wall_low", "wall_high"]].iloc[0]) if len(hit) else MISSING)
        rows.append(row)
    header = ["strategy", "seeds reaching it", "device time [95% CI]"] + [
        f"wall-clock, {w} worker{'s' if w > 1 else ''}" for w in workers
    ]
    note = (
        "Replayed baseline searches: the first time the best-so-far equals the grid optimum (the best trained "
        "baseline), over the seeds that reach it; wall-clock times from simulated asynchronous workers (each "
        "starts a new trial as soon as it is free; pruners see only the reports made by then)."
    )
    return note + "\n\n" + md_table(header, rows, name="time to target")


def _hv_table(final: list[dict[str, Any]]) -> str:
    rows = [
        [
            " vs ".join(metric_short(m) for m in str(x["objectives"]).split(",")),
            _target_label(str(x["target"])),
            str(x["strategy"]),
            _ci(x["hv"], x["low"], x["high"], lambda v: fmt_num(v, 3)),
            fmt_seconds(x["cost"]),
        ]
        for x in final
    ]
    return (
        "Hypervolume of each search's final front, objectives normalised to [0, 1] over all points of the pair "
        "(reference point 1.1); cost: device time (models: with their training).\n\n"
        + md_table(["objectives", "target", "strategy", "hypervolume [95% CI]", "cost"], rows, name="hypervolume")
    )


def _dice_table(pick: pd.DataFrame) -> str:
    rows = []
    for _, x in pick.iterrows():
        lq, ld = _lams(x, "_for_quality"), _lams(x, "_for_downstream")
        rows.append(
            [
                _target_label(str(x.target)),
                fmt_lam(lq),
                fmt_num(x.quality_at_quality, 3),
                fmt_num(x.downstream_at_quality, 3),
                fmt_lam(ld),
                fmt_num(x.quality_at_downstream, 3),
                fmt_num(x.downstream_at_downstream, 3),
                fmt_num(x.downstream_gain, 3, signed=True),
            ]
        )
    q = metric_short(str(pick.quality.iloc[0]))
    return (
        f"Among the λ evaluated (baselines: every trained cell; models: every λ their ({q}, Dice) searches "
        "tried), validation values:\n\n"
        + md_table(
            ["target", f"λ best for {q}", q, "Dice", "λ best for Dice", q, "Dice", f"Dice gained over the {q}-best λ"],
            rows,
            name="Dice pick",
        )
    )


# ---------------------------------------------------------------------------------------------------------------
# findings


def _p_is(p: Any) -> str:
    """``p = 0.525`` / ``p < 0.001`` (the table's rounding)."""
    text = fmt_p(p)
    return f"p {text[0]} {text[1:]}" if text.startswith("<") else f"p = {text}"


def _first_to_target(tt: pd.DataFrame, r: pd.DataFrame, target: str) -> str | None:
    """Which strategy of ``target`` reached the grid optimum first, restating the time-to-target table (seeds
    reaching it, mean device time with its 95% interval, the runner-up's interval) and the ranking table (its
    average rank at equal device time and its Wilcoxon p against the best-ranked)."""
    rows = tt[tt.target == target]
    if not len(rows):
        return None
    what = f"Searching the {_target_label(target).replace('U-Net baselines', 'baselines')}"
    reached = rows[rows.device_mean.notna()]
    if not len(reached):
        return f"{what}, no strategy reached the grid optimum in any of its {int(rows.n_seeds.max())} seeds."
    top = reached.frac_reached.max()
    pool = reached[reached.frac_reached == top].sort_values("device_mean", kind="stable")
    x = pool.iloc[0]
    same = np.abs(pool.device_mean - x.device_mean) <= 1e-9 * max(1.0, x.device_mean)
    tied = [str(v) for v in pool[same].strategy.iloc[1:]]
    tie = ""
    if tied:
        tie = f" (tied with {', '.join(tied)})" if len(tied) <= 3 else f" (tied with {len(tied)} others)"
    seeds = f"{round(x.frac_reached * x.n_seeds)} of {int(x.n_seeds)} seed{'s' if x.n_seeds > 1 else ''}"
    ci = "(mean [95% CI])" if finite(x.device_low) is not None else "(mean)"
    spent = f"{_ci(x.device_mean, x.device_low, x.device_high)} of device time {ci}"
    others = reached[reached.frac_reached < top]
    if len(pool) == 1 and len(others):  # the only one reaching it that often: "first" would compare nothing
        fewer = others.frac_reached.max()
        out = (
            f"{what}, only {x.strategy} reached the grid optimum in {seeds} (the others in at most "
            f"{round(fewer * x.n_seeds)}), after {spent}"
        )
    else:
        most = "" if top >= 1.0 else " (no strategy reached it in every seed; among those reaching it most often)"
        out = f"{what}, {x.strategy}{tie} reached the grid optimum first{most}: {spent} in {seeds}"
    rest = pool[~same]
    if len(rest):
        y = rest.iloc[0]
        if finite(y.device_low) is None or finite(x.device_low) is None:
            note = " (too few seeds for intervals: this order is not settled)"
        elif y.device_low <= x.device_high:
            note = " (the intervals overlap: this order is not settled)"
        else:
            note = " (the intervals do not overlap)"
        out += (
            f"; the next of those reaching it as often, {y.strategy}, "
            f"{_ci(y.device_mean, y.device_low, y.device_high)}{note}"
        )
    rank = r[(r.target == target) & (r.strategy == x.strategy)]
    if len(rank):
        k = rank.iloc[0]
        n = int((r.target == target).sum())
        versus = "the best" if k.best else f"{_p_is(k.vs_best_p)} against the best-ranked"
        out += (
            f". In the ranking at equal device time ({fmt_seconds(k.budget_seconds)}) it has average rank "
            f"{k.avg_rank:.2f} of {n} ({versus})"
        )
    return out + "."


def _ranking_finding(r: pd.DataFrame, target: str) -> str | None:
    """The ranking table of ``target`` in one sentence: the best-ranked strategy, the Friedman test, how many
    others the post-hoc test finds worse."""
    rb = r[r.target == target]
    what = _target_label(target).replace("U-Net baselines", "baseline searches")
    if len(rb) < 2:  # nothing to rank
        return None
    if np.ptp(rb.avg_rank.to_numpy(float)) == 0:
        return (
            f"At equal device time ({fmt_seconds(rb.budget_seconds.iloc[0])}) the {len(rb)} strategies of the "
            f"{what} tie (every seed ranks them alike)."
        )
    b = rb[rb.best].iloc[0]
    sig = rb[(~rb.best) & (rb.vs_best_p < 0.05)]
    if finite(b.friedman_p) is None:
        test = "too few strategies or seeds for a Friedman test"
    elif b.friedman_p < 0.05:
        test = f"Friedman {_p_is(b.friedman_p)}: the ranks differ"
    else:
        test = f"Friedman {_p_is(b.friedman_p)}: no evidence that the ranks differ"
    if len(rb) == 2:
        worse = f"the other {'is' if len(sig) else 'is not'} significantly worse"
    else:
        worse = f"{len(sig) or 'none'} of the other {len(rb) - 1} significantly worse than {b.strategy}"
    return (
        f"At equal device time ({fmt_seconds(b.budget_seconds)}), {b.strategy} ranks best among the {what} "
        f"(average rank {b.avg_rank:.2f} of {len(rb)}; {test}; {worse} at p < 0.05, Wilcoxon signed-rank with "
        "Benjamini-Hochberg)."
    )


def findings(se: dict[str, Any] | None) -> list[str]:
    """The search's findings, each restating a table of the section (time to the grid optimum, ranking,
    multi-fidelity cost, the models' points, the Dice pick)."""
    d = (se or {}).get("details")
    if not d:
        return []
    out = []
    for target in ("baselines", LIVE_TARGET):
        for sentence in (
            _first_to_target(d["to_target"], d["ranking"], target),
            _ranking_finding(d["ranking"], target),
        ):
            if sentence:
                out.append(sentence)
    for key, what in (("multi_fidelity", "Early stopping"), ("live", "Early stopping in the live searches")):
        mf = [m for m in d.get(key, []) if m["pruner"] != "none"]
        if mf and not any(m["pruned"] > 0 for m in mf):
            spent = ", ".join(f"{m['strategy']} {m['ratio']:.0%}" for m in mf)
            out.append(
                f"{what}: no trial was pruned, so the validation passes at the fidelity steps only added cost "
                f"({spent} of the same trials without them)."
            )
        elif mf:
            m = min(mf, key=lambda v: v["ratio"])
            out.append(
                f"{what}: {m['strategy']} spent {m['ratio']:.0%} of what its trials would cost trained to "
                f"the end ({m['pruned']:.0%} of trials pruned)."
            )
    for p in d.get("model_points", []):
        out.append(
            f"{model_label(p['model'])}: training plus search ({p['strategy']}) {fmt_seconds(p['x'])}, "
            f"regret {fmt_num(p['regret'], 3, signed=True)} against the grid optimum."
        )
    pick = d.get("dice_pick")
    if pick is not None and len(pick):
        for _, x in pick.iterrows():
            if finite(x.downstream_gain) and x.downstream_gain >= 5e-4:
                # The gain is measured on the validation slices that chose both λ (selection bias): a hint, not a
                # finding. The claims table's (e) judges the choice on held-out replicates.
                out.append(
                    f"{_target_label(str(x.target))}: on the validation slices that chose them, the Dice-best "
                    f"λ={fmt_lam(_lams(x, '_for_downstream'))} scores +{x.downstream_gain:.3f} Dice over the "
                    f"{metric_short(str(x.quality))}-best λ={fmt_lam(_lams(x, '_for_quality'))} (chosen and scored "
                    "on the same slices; claim (e) tests the choice on held-out replicates)."
                )
    return out
