"""Sentences generated from a run's numbers (never fixed claims): each function reads the analysis dicts of
:mod:`hyperrecon.reporting.analysis` and says what they show, or nothing when the data are missing."""

from __future__ import annotations

from typing import Any

from .style import higher_is_better, metric_short, model_label
from .tables import fmt_lam, fmt_seconds, is_number


def _fmt(v: float, digits: int = 2) -> str:
    return f"{v:.{digits}f}"


def _cells(n: int) -> str:
    return f"{n} cell" if n == 1 else f"{n} cells"


def cost_findings(costs: dict[str, Any]) -> list[str]:
    ratios = {m: r for m, r in costs["ratio_all_baselines_over"].items() if is_number(r)}
    if not ratios or not costs["n_baselines"]:
        return []
    cheapest = max(ratios, key=ratios.__getitem__)
    dearest = min(ratios, key=ratios.__getitem__)
    n = costs["n_baselines"]
    text = (f"Training all {n} U-Net baselines took {fmt_seconds(costs['all_baselines_device_seconds'])} of device "
            f"time, {ratios[cheapest]:.1f}x the training of {model_label(cheapest)}")
    if dearest != cheapest:
        text += f" and {ratios[dearest]:.1f}x that of {model_label(dearest)}"
    papers = {m: r for m, r in costs["paper_ratio_all_baselines_over"].items() if is_number(r)}
    if papers:
        m = max(papers, key=papers.__getitem__)
        text += (f" (the paper: all 361 U-Nets ~648 h, {papers[m]:.0f}x its "
                 f"{model_label(m).split(' (')[0]} at ~{648 / papers[m]:.0f} h).")
    else:
        text += "."
    out = [text]
    if any(r < 1 for r in ratios.values()):
        slow = [model_label(m) for m, r in ratios.items() if r < 1]
        out.append(f"With only {n} baselines, {', '.join(slow)} cost more to train than the whole grid; the saving "
                   "grows with the number of λ one would otherwise train.")
    return out


def closeness_findings(closest: dict[str, Any] | None, kind: str) -> list[str]:
    if not closest:
        return []
    scores = closest["mean_abs_gap_by_model"]
    metric = metric_short(closest["metric"])
    where = ("over the baselines' λ" if kind == "sl"
             else "over the landscape within the span of the trained baseline grid")
    text = (f"Closest to the per-λ U-Nets in {metric}: {model_label(closest['model'])} "
            f"(mean |Δ{metric}| = {_fmt(closest['mean_abs_gap'], 3)} {where})")
    others = sorted((v, m) for m, v in scores.items() if m != closest["model"])
    if others:
        text += "; then " + ", ".join(f"{model_label(m)} ({_fmt(v, 3)})" for v, m in others)
    return [text + "."]


def sl_findings(sl: dict[str, Any] | None) -> list[str]:
    if not sl:
        return []
    out = closeness_findings(sl.get("closest"), "sl")
    metric = "psnr" if "psnr" in sl["metrics"] else sl["metrics"][0]
    best = sl["best"].get(metric, {})
    if "baselines" in best:
        b = best["baselines"]
        text = (f"Best λ for {metric_short(metric)} among the baselines: {fmt_lam(b['lam'])} "
                f"({_fmt(b['value'])}); ")
        text += ", ".join(f"{model_label(m)}: {fmt_lam(v['lam'])}" for m, v in best.items() if m != "baselines")
        out.append(text + ".")
    sig = [g for g in sl["gaps"] if g["metric"] == metric and is_number(g["p"]) and g["p"] < 0.05]
    n = sl["n_slices"]
    if sig:
        up = higher_is_better(metric)
        better = sum((g["mean_diff"] > 0) == up for g in sig)
        out.append(f"{len(sig)} of {sum(g['metric'] == metric for g in sl['gaps'])} model/λ {metric_short(metric)} "
                   f"gaps are significant at p < 0.05 ({n} test slices, Wilcoxon): {better} with the conditional "
                   f"model better, {len(sig) - better} with the baseline better.")
    elif is_number(sl.get("min_p")) and sl["min_p"] >= 0.05:
        out.append(f"No paired test can reach p < 0.05 with {n} test slices (smallest attainable Wilcoxon p = "
                   f"{sl['min_p']:.3f}); evaluate more slices for a significance statement.")
    else:
        out.append(f"None of the {metric_short(metric)} gaps is significant at p < 0.05 ({n} test slices, Wilcoxon).")
    return out


def ao_findings(ao: dict[str, Any] | None) -> list[str]:
    if not ao:
        return []
    out = closeness_findings(ao.get("closest"), "ao")
    metric = metric_short(ao["metric"])
    b = ao["baseline"]["best_trained"]
    opt = ao["baseline"]["optimum"]
    text = (f"The best trained baseline is λ={fmt_lam(b['lam'])} ({metric} {_fmt(b['value'])} dB); the interpolated "
            f"baseline landscape peaks at ({opt['lam1']:.2g}, {opt['lam2']:.2g})")
    models = ao["models"]
    if models:
        text += "; the conditional models peak at " + ", ".join(
            f"({v['optimum']['lam1']:.2g}, {v['optimum']['lam2']:.2g}) for {model_label(m)}" for m, v in models.items())
    out.append(text + ".")
    for row in ao["dhs_vs_uhs"]:
        verdict = "beat" if row["dhs_better"] else "did not beat"
        out.append(f"Size {row['size']}: DHS {verdict} UHS in the best region (top {ao['top_fraction']:.0%} of the "
                   f"baseline landscape, {_cells(ao['n_top_cells'])}): mean {metric} {_fmt(row['dhs_top'])} vs "
                   f"{_fmt(row['uhs_top'])} dB ({row['diff_top']:+.2f} dB); over the whole span "
                   f"{row['diff_mean']:+.2f} dB.")
    # The study's threshold when it separates the baseline landscape, else the baselines' median level.
    labels = dict(zip(ao["thresholds"], ao["threshold_labels"], strict=True))
    thr = ao["study_threshold"]
    base_fr = ao["baseline"]["fraction_above"].get(thr)
    if not (is_number(base_fr) and 0 < base_fr < 1):
        thr = next((t for t, lab in labels.items() if lab == "baseline p50"), thr)
        base_fr = ao["baseline"]["fraction_above"].get(thr)
    fr = {m: v["fraction_above"].get(thr) for m, v in models.items()}
    fr = {m: v for m, v in fr.items() if is_number(v)}
    if fr and is_number(base_fr):
        best = max(fr, key=fr.__getitem__)
        out.append(f"Fraction of the landscape with {metric} > {thr:g} dB ({labels.get(thr, 'threshold')}): "
                   f"baselines {base_fr:.0%}, best model {model_label(best)} {fr[best]:.0%}.")
    return out


def dice_findings(dice: dict[str, Any] | None) -> list[str]:
    if not dice or not dice.get("best"):
        return []
    best = dice["best"]
    parts = [f"{'baselines' if m == 'baselines' else model_label(m)} at λ={fmt_lam(v['lam'])} ({v['value']:.3f})"
             for m, v in best.items()]
    return ["Downstream segmentation: the best Dice is reached by " + "; ".join(parts) + "."]


def search_findings(search: dict[str, Any] | None) -> list[str]:
    if not search:
        return []
    out = []
    for t, f in search["fastest"].items():
        who = "the replayed baseline grid" if t == "baselines" else model_label(t)
        if f.get("strategy") is None:
            out.append(f"No strategy reached the grid optimum when searching {who} "
                       f"(best: {search['best'][t]['strategy']}, mean regret {search['best'][t]['regret_mean']:.3g}).")
        elif f["frac_within"] >= 1:
            out.append(f"Searching {who}, {f['strategy']} reached the grid optimum first: after "
                       f"{f['trials']:.1f} trials and {fmt_seconds(f['cost_seconds'])} of device time on average.")
        else:
            out.append(f"Searching {who}, {f['strategy']} reached the grid optimum in {f['frac_within']:.0%} of "
                       "the seeds (no strategy in all seeds).")
    return out


def findings(summary: dict[str, Any]) -> list[str]:
    """All sentences, most important first."""
    out: list[str] = []
    if summary.get("profile") == "smoke":
        out.append("This is a smoke run (tiny data, a few training steps): the numbers test the pipeline, "
                   "not the method.")
    out += cost_findings(summary["costs"])
    out += sl_findings(summary.get("sl"))
    out += ao_findings(summary.get("ao"))
    out += dice_findings(summary.get("dice"))
    out += search_findings(summary.get("search"))
    return out
