"""Report blocks for the training-side checks of issue 15: training budgets and convergence, the Dice references,
and (AO) whether the regularisers improve on data consistency alone.

Each function takes the analysis dict (or :class:`RunData`) and returns markdown blocks; no figures.
"""

from __future__ import annotations

import math
from typing import Any

from ..segref import MIN_CEILING
from .rundata import RunData
from .style import metric_label, model_label
from .tables import fmt_lam, fmt_num, fmt_p, fmt_seconds, md_table


def convergence_lines(conv: dict[str, dict[str, Any]] | None) -> list[str]:
    """Steps per model and the convergence check (hyperrecon/convergence.py); a line when budgets differ."""
    if not conv:
        return []
    rows = []
    for m, r in conv.items():
        verdict = {True: "yes", False: "**no**", None: "unknown"}[r.get("converged")]
        rows.append(
            [
                model_label(m) if m != "seg" else "segmentation U-Net",
                str(int(r["steps"])),
                fmt_num(r.get("val_loss_final"), 4),
                fmt_num(100 * r.get("rel_change_last_quarter", math.nan), 1),
                verdict,
            ]
        )
    tol = next(iter(conv.values())).get("rel_tol", 0.02)
    out = [
        f"Training budget and convergence: the validation loss of each model (its training loss on the validation "
        f"slices; conditional models averaged over a fixed λ grid; segmentation: 1 − Dice) at the end and its "
        f"change over the last quarter of training. Converged: changed by less than {100 * tol:.0f} % either way.",
        md_table(
            ["model", "steps", "final validation loss", "change over last quarter (%)", "converged"],
            rows,
            name="convergence",
        ),
    ]
    recon = {m: int(r["steps"]) for m, r in conv.items() if r.get("kind") != "seg" and m != "seg"}
    if len(set(recon.values())) > 1:
        out.append(
            f"**Unequal training budgets**: {', '.join(f'{model_label(m)} {s}' for m, s in recon.items())} "
            "steps; comparisons between these models are confounded by the budget."
        )
    bad = [model_label(m) for m, r in conv.items() if r.get("converged") is False and m != "seg"]
    if bad:
        out.append(
            f"**Not converged**: {', '.join(bad)}. Findings that rest on these models describe a training "
            "snapshot, not the method."
        )
    return out


def dice_reference_lines(dice: dict[str, Any]) -> list[str]:
    """Ceiling / floor of the segmentation nets (one per replicate) and whether a Dice finding may be stated."""
    ref = dice.get("reference")
    if not ref:
        return ["No Dice reference (ground truth / zero-filled) was recorded for this run."]
    n = int(ref.get("n_replicates", 1))
    steps = ref.get("steps")
    steps = steps if isinstance(steps, list) else [steps]
    kept = ref.get("best_step")
    kept = kept if isinstance(kept, list) else [kept]
    if n > 1:
        ceiling = (
            f"**{fmt_num(ref['ceiling'], 3)}** [{fmt_num(ref['ceiling_lo'], 3)}, {fmt_num(ref['ceiling_hi'], 3)}] "
            f"on the ground-truth test images (ceiling; mean and 95% CI over {n} replicates, each with its own net; "
            f"lowest {fmt_num(ref['ceiling_min'], 3)})"
        )
        floor = f"**{fmt_num(ref['floor'], 3)}** on the zero-filled input (floor, mean)"
    else:
        ceiling = f"**{fmt_num(ref['ceiling'], 3)}** on the ground-truth test images (ceiling)"
        floor = f"**{fmt_num(ref['floor'], 3)}** on the zero-filled input (floor)"
    trained = " / ".join(str(s) for s in steps)
    best = " / ".join(str(s) for s in kept if s is not None)
    line = (
        f"References: the segmentation net scores Dice {ceiling} and {floor}; trained {trained} of at most "
        f"{ref.get('step_budget')} steps"
        + (f" (the net kept: the best validation Dice, at step {best})" if best else "")
        + ", "
        + (
            "by then its validation Dice had plateaued."
            if ref.get("plateaued")
            else "**without reaching a plateau** of its validation Dice."
        )
    )
    out = [line]
    if not ref.get("usable"):
        out.append(
            f"**No Dice finding**: a replicate's ceiling is below {MIN_CEILING} or its net did not plateau, so Dice "
            "differences between reconstructions reflect a weak segmenter more than the images."
        )
    return out


def ao_regularisation_check(data: RunData, metric: str = "rpsnr") -> dict[str, Any] | None:
    """Do the regularisers help? The best trained baseline with λ1 < 1 against the best pure-DC baseline
    (λ1 = 1), paired over (replicate, subject) units (:func:`.stats.paired_units`: mean difference, 95% t interval
    over replicates, Wilcoxon p over units; slices of one subject are not independent). ``helps``: the interval
    lies above 0; None without an interval (one replicate). Returns None when the grid lacks λ1 = 1 or λ1 < 1."""
    from .stats import paired_units, unit_values

    if data.n_lams != 2 or not data.baselines:
        return None
    r = data.results
    rows = r[(r.metric == metric) & r.model.isin(data.baselines)]
    if rows.empty:
        return None
    means = rows.groupby("model")["value"].mean()
    pure = [b for b in data.baselines if data.baseline_lam(b)[0] == 1.0 and b in means]
    reg = [b for b in data.baselines if data.baseline_lam(b)[0] < 1.0 and b in means]
    if not pure or not reg:
        return None
    best_pure = max(pure, key=means.__getitem__)
    best_reg = max(reg, key=means.__getitem__)
    d = paired_units(unit_values(r, best_reg, metric), unit_values(r, best_pure, metric))
    has_ci = math.isfinite(d["lo"])
    return {
        "metric": metric,
        "pure_dc": best_pure,
        "pure_dc_lam": list(data.baseline_lam(best_pure)),
        "pure_dc_value": float(means[best_pure]),
        "regularised": best_reg,
        "regularised_lam": list(data.baseline_lam(best_reg)),
        "regularised_value": float(means[best_reg]),
        "diff": d["mean_diff"],
        "ci": [d["lo"], d["hi"]],
        "p": d["p"],
        "n_units": d["n"],
        "n_replicates": d["n_replicates"],
        "helps": bool(d["lo"] > 0) if has_ci else None,
    }


def ao_regularisation_lines(check: dict[str, Any] | None, scale_rule: str | None) -> list[str]:
    out = []
    if check is not None:
        lam = ", ".join(f"{v:g}" for v in check["regularised_lam"])
        ci = check["ci"]
        verdict = {
            True: "the regularisers **improve** on data consistency alone",
            False: "the regularisers are **not shown to improve** on data consistency alone (the interval includes 0)",
            None: "**not testable at this scale** (one replicate: no interval over training seeds)",
        }[check["helps"]]
        interval = (
            f"95% CI [{fmt_num(ci[0], 2)}, {fmt_num(ci[1], 2)}] over {check['n_replicates']} replicates"
            if check["helps"] is not None
            else "no interval"
        )
        out.append(
            f"Does regularisation help? Best baseline with λ1 < 1, λ = ({lam}): {check['metric']} "
            f"{fmt_num(check['regularised_value'], 2)}; pure data consistency (λ1 = 1): "
            f"{fmt_num(check['pure_dc_value'], 2)}. Paired difference {fmt_num(check['diff'], 2, signed=True)} "
            f"dB (mean over (replicate, subject) units), {interval}, Wilcoxon p = {fmt_p(check['p'])} over "
            f"{check['n_units']} units: {verdict}."
        )
    if scale_rule:
        out.append(
            f"Loss scales: {scale_rule}. Each term is divided by its scale before the λ weighting, so λ "
            "trades terms of comparable magnitude."
        )
    return out


def long_reference_lines(ref: dict[str, Any] | None) -> list[str]:
    """The best baseline against its own longer training (:mod:`hyperrecon.long_reference`): how far the run's
    budget is from the ceiling of the architecture and data, per metric; a note when it was not made."""
    if not ref:
        return [
            "No long-run reference: whether a longer training would raise every metric is not measured for this "
            "run (`python benchmark/long_reference.py RUN_DIR`, then `hrbench report RUN_DIR`)."
        ]
    reps = ref.get("replicates") or []
    rows = []
    for m in ref.get("metrics", []):
        d = m["diff"]
        ci = "—" if not math.isfinite(d.get("lo", math.nan)) else f"[{fmt_num(d['lo'], 3)}, {fmt_num(d['hi'], 3)}]"
        verdict = {True: "better", False: "not better", None: "no interval"}[m.get("improved")]
        rows.append(
            [
                metric_label(m["metric"]),
                fmt_num(m["budget"]["mean"], 3),
                fmt_num(m["long"]["mean"], 3),
                fmt_num(d["mean_diff"], 3, signed=True),
                ci,
                fmt_p(d.get("p")),
                verdict,
            ]
        )
    conv = [r.get("convergence", {}).get("converged") for r in ref.get("runs", [])]
    settled = (
        "its validation loss changed by less than 2 % over the last quarter in every replicate"
        if conv and all(c is True for c in conv)
        else "**its own validation loss was still changing** (a lower bound on the gap)"
    )
    seconds = sum(float(r.get("device_seconds") or 0.0) for r in ref.get("runs", []))
    out = [
        f"Long-run reference (ceiling of the reconstruction metrics at this architecture and data): the best "
        f"baseline by {metric_label(ref.get('chosen_by', 'psnr'))}, {model_label(ref['model'])} "
        f"(λ = {fmt_lam(ref.get('lam'))}), trained again from scratch for {ref['steps']} steps "
        f"({ref['factor']}x the run's {ref['budget_steps']}) in replicate(s) {', '.join(map(str, reps))}; "
        f"{settled}; {fmt_seconds(seconds)} of device time. Long run minus the run's baseline, mean over "
        f"(replicate, subject) units, 95% t interval over replicates, Wilcoxon p over units; "
        f"'better': the interval lies on the metric's better side.",
        md_table(
            ["metric", f"{ref['budget_steps']} steps", f"{ref['steps']} steps", "long − run", "95% CI", "p", "verdict"],
            rows,
            name="long-reference",
        ),
    ]
    better = [r[0] for r, m in zip(rows, ref.get("metrics", []), strict=True) if m.get("improved")]
    if better:
        out.append(
            f"**The run's budget is below the ceiling** on {', '.join(better)}: every model of this run is a "
            "training snapshot on those metrics, and gaps between models may change with more training."
        )
    return out
