"""The run report: ``report.md`` with PNG figures in ``<run>/figures/``, and its headline numbers as JSON.

``write_report(run_dir, out=None) -> Path`` reads the run (:func:`hyperrecon.reporting.rundata.load_run`, which
fails with one-line ``RunError`` on missing or empty results), computes each section's numbers
(:mod:`~hyperrecon.reporting.analysis`), draws the figures (:mod:`~hyperrecon.reporting.figures`), generates the
findings (:mod:`~hyperrecon.reporting.findings`) and writes the markdown atomically. Sections appear only where
the study has the data (SL curves or AO landscapes, DHS, Dice, search ...). ``report_summary(run_dir)`` returns the
same numbers without drawing (JSON-able: NaN -> null).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, RunError
from ..io import atomic_write_text
from . import analysis as A
from . import checks as C
from . import figures as F
from .claims import MATCH_MARGIN_DB, claims_meta, claims_table
from .findings import cannot_test, findings
from .rundata import RunData, load_run
from .sensitivity import sensitivity_analysis
from .style import metric_short, model_label
from .tables import (
    MISSING,
    drop_empty_columns,
    fmt_lam,
    fmt_mib,
    fmt_num,
    fmt_p,
    fmt_params,
    fmt_seconds,
    fmt_sig,
    md_table,
)

SECTIONS = {
    "claims": "Paper claims",
    "findings": "Findings",
    "provenance": "Provenance",
    "data": "Data and settings",
    "costs": "Cost (paper Table 1)",
    "sensitivity": "λ-sensitivity",
    "sl": "Metrics over λ",
    "ao": "rPSNR landscapes",
    "dhs": "DHS: where the gradient went",
    "ranges": "Range of reconstructions",
    "examples": "Example reconstructions",
    "dice": "Downstream segmentation (Dice)",
    "search": "λ search",
    "training": "Training curves",
}

# The figures a report may write; a re-run removes those of them that this report did not draw (stale sections).
FIGURE_NAMES = (
    "sl-curves.png",
    "ao-landscapes.png",
    "ao-differences.png",
    "dhs-kept.png",
    "diverse-pairs.png",
    "examples.png",
    "dice.png",
    "dice-landscapes.png",
    "search.png",
    "training.png",
    "search-regret.png",
    "search-parallel.png",
    "search-pareto.png",
    "search-hypervolume.png",
)

DATA_NOTICES = {
    "knee-phantom": "**Synthetic procedural knee phantom, not patient data.** Numbers on it test the method's "
    "behaviour, not clinical image quality.",
    "mni-brain": "**One averaged brain (MNI152): every split shares its anatomy.** Train, validation and test "
    "slices come from the same template, so test scores measure fitting, not generalisation to new "
    "subjects.",
}


# ---------------------------------------------------------------------------------------------------------------
# analysis of a whole run


def analyse(data: RunData) -> dict[str, Any]:
    """Every section's numbers (arrays included) plus the generated findings.

    The evaluation helpers reject malformed tables with ``ConfigError``; here the table is a run's file, so the
    error is re-raised as a ``RunError`` naming ``results.csv``.
    """
    try:
        return _analyse(data)
    except ConfigError as exc:
        raise RunError(f"{data.folder.table('results.csv')}: {exc}") from exc


def _analyse(data: RunData) -> dict[str, Any]:
    s: dict[str, Any] = {
        "study": data.config.get("name", data.run.get("study")),
        "profile": data.config.get("profile"),
        "kind": data.kind,
        "n_lams": data.n_lams,
        "objective": data.objective,
        "models": data.models,
        "baselines": data.baselines,
        "conditional": data.conditional,
        "costs": A.cost_analysis(data),
        "sl": A.sl_analysis(data),
        "ao": A.ao_analysis(data),
        "dhs": A.dhs_analysis(data),
        "ranges": A.ranges_analysis(data),
        "examples": A.examples_analysis(data),
        "dice": A.dice_analysis(data),
        "search": A.search_analysis(data),
        "training": A.training_analysis(data),
        "sensitivity": sensitivity_analysis(data),
        "convergence": A.convergence_analysis(data),
        "ao_regularisation": C.ao_regularisation_check(data),
    }
    # The claims read the sections above (and the convergence, DHS-selection and Dice-ceiling inputs when present).
    s["claims"] = claims_table(data, s)
    s["claims_meta"] = claims_meta(data)
    s["findings"] = findings(s)
    return s


def _headline(data: RunData, s: dict[str, Any]) -> dict[str, Any]:
    """The JSON summary: headline numbers of each section (no images, curves or landscapes)."""
    prov = data.run.get("provenance", {})
    out: dict[str, Any] = {
        "study": s["study"],
        "profile": s["profile"],
        "kind": s["kind"],
        "run_dir": str(data.run_dir),
        "run_id": data.run.get("run_id"),
        "config_hash": data.config_hash,
        "objective": s["objective"],
        "provenance": {k: prov.get(k) for k in ("date", "git_sha", "device", "device_name", "precision")},
        "data_source": data.config.get("data", {}).get("source"),
        "models": s["models"],
        "costs": {
            k: s["costs"][k]
            for k in (
                "rows",
                "ratio_all_baselines_over",
                "paper_ratio_all_baselines_over",
                "n_baselines",
                "all_baselines_device_seconds",
                "overhead",
            )
        },
        "findings": s["findings"],
        "claims": s["claims"],
        "long_reference": data.long_reference,
        "replicates": {
            "n": s["claims_meta"]["n_replicates"],
            "n_units": s["claims_meta"]["n_units"],
            "ci_method": s["claims_meta"]["ci_method"],
        },
    }
    if s["sensitivity"]:
        sens = s["sensitivity"]
        out["sensitivity"] = {
            "models": sens["models"],
            "spread": sens["spread"],
            "image": sens["image"],
            "ratio_min": sens["ratio_min"],
            "box": sens["box"],
        }
    if s["sl"]:
        out["sl"] = {
            "gaps": s["sl"]["gaps"],
            "best": s["sl"]["best"],
            "closest": s["sl"]["closest"],
            "test": s["sl"]["test"],
            "n_slices": s["sl"]["n_slices"],
        }
    if s["ao"]:
        ao = s["ao"]
        out["ao"] = {
            "metric": ao["metric"],
            "thresholds": ao["thresholds"],
            "models": ao["models"],
            "baseline": ao["baseline"],
            "dhs_vs_uhs": ao["dhs_vs_uhs"],
            "matched": ao["matched"],
            "closest": ao["closest"],
            "top_fraction": ao["top_fraction"],
            "n_top_cells": ao["n_top_cells"],
        }
    if s["dhs"]:
        out["dhs"] = s["dhs"]["stats"]
    if s["ranges"]:
        out["ranges"] = {
            "rows": s["ranges"]["rows"],
            "diverse": {
                m: {k: v for k, v in d.items() if k not in ("image_a", "image_b", "target")}
                for m, d in s["ranges"]["diverse"].items()
            },
        }
    if s["dice"]:
        out["dice"] = {"best": s["dice"]["best"], "reference": s["dice"].get("reference")}
    for key in ("convergence", "ao_regularisation"):
        if s.get(key):
            out[key] = s[key]
    if s["search"]:
        out["search"] = {
            k: s["search"][k] for k in ("objective", "grid_optimum", "fastest", "best", "n_seeds", "budget")
        }
    return A.jsonable(out)


def report_summary(run_dir: Path) -> dict[str, Any]:
    """Headline numbers of every section (JSON-able) for ``hrbench report --json``."""
    data = load_run(Path(run_dir))
    return _headline(data, analyse(data))


# ---------------------------------------------------------------------------------------------------------------
# markdown sections


def _lam_axis_labels(data: RunData) -> tuple[str, str]:
    terms = list(data.config.get("loss", {}).get("terms", []))
    if data.n_lams == 2 and len(terms) == 3:
        return (f"λ1 (weight of {terms[0]})", f"λ2 ({terms[1]} share of the rest)")
    return ("λ1", "λ2")


def _sl_xlabel(data: RunData) -> str:
    terms = list(data.config.get("loss", {}).get("terms", []))
    if len(terms) == 2:
        return f"λ  (loss = (1−λ)·{terms[0]} + λ·{terms[1]})"
    return "λ"


def _provenance(data: RunData) -> list[str]:
    prov = data.run.get("provenance", {})
    cfg = data.config
    search = cfg.get("search", {})
    seed = cfg.get("seed")
    search_seeds = [seed + i for i in range(int(search.get("seeds", 0)))] if isinstance(seed, int) else []
    versions = prov.get("versions", {}) or {}
    device = prov.get("device_name") or MISSING
    if prov.get("device"):
        device = f"{device} (`{prov['device']}`, {prov.get('threads', '?')} threads)"
    rows = [
        ["study", f"`{cfg.get('name', data.run.get('study'))}`: {cfg.get('description', '')}"],
        ["profile", str(cfg.get("profile", data.run.get("profile")))],
        ["run id", f"`{data.run.get('run_id', MISSING)}`"],
        ["resolved config hash", f"`{data.config_hash or MISSING}`"],
        ["study seed; search seeds", f"{seed}; {', '.join(map(str, search_seeds)) or MISSING}"],
        ["git SHA", f"`{prov.get('git_sha') or 'unknown'}`"],
        ["device", device],
        ["precision", str(prov.get("precision", MISSING))],
        ["date (UTC)", str(prov.get("date", MISSING))],
        ["python; platform", f"{prov.get('python', MISSING)}; {prov.get('platform', MISSING)}"],
        ["versions", ", ".join(f"{k} {v}" for k, v in versions.items() if v) or MISSING],
    ]
    from ..runs.provenance import ran_with_summary

    jobs_ran_with = ran_with_summary(data.run_dir)  # per job: another machine or CPU kind on resume shows here
    if jobs_ran_with is not None:
        rows.append(["jobs ran with", jobs_ran_with])
    return [md_table(["item", "value"], rows, name="provenance", align=["l", "l"])]


def _data_section(data: RunData) -> list[str]:
    cfg = data.config
    d = cfg.get("data", {})
    source = str(d.get("source", "?"))
    out = []
    desc = ""
    try:
        from ..data import DATASETS

        desc = DATASETS.describe(source)
    except Exception:  # the description is a courtesy; an unknown or plugin source still gets its name
        desc = ""
    fwd = cfg.get("forward", {})
    loss = cfg.get("loss", {})
    ev = cfg.get("evaluation", {})
    conv = str(ev.get("ssim_convention", "wang"))
    from ..metrics import SSIM_CONVENTIONS

    scales = data.scales or {}
    scale_text = ", ".join(
        f"{t} {fmt_sig(v, 4)}" for t, v in zip(scales.get("terms", []), scales.get("scales", []), strict=False)
    )
    rows = [
        ["data source", f"`{source}`" + (f": {desc}" if desc else "")],
        ["data path", str(d.get("path") or "(built in)")],
        [
            "image size; data params",
            f"{d.get('image_size', '?')} px; "
            f"{', '.join(f'{k}={v}' for k, v in (d.get('params') or {}).items()) or 'defaults'}",
        ],
        [
            "forward model",
            f"`{fwd.get('name', '?')}` {', '.join(f'{k}={v}' for k, v in (fwd.get('params') or {}).items())}",
        ],
        ["loss terms", f"{', '.join(loss.get('terms', []))} ({data.kind.upper()}, {data.n_lams} λ)"],
        ["loss scales", (scale_text or MISSING) + (f" — {scales['rule']}" if scales.get("rule") else "")],
        ["test slices evaluated", str(int(data.results["slice"].nunique()))],
        ["evaluation grid", f"{ev.get('grid_points', '?')} points per λ axis"],
        [
            "baseline grid",
            ", ".join(f"{v:g}" for v in cfg.get("baselines", {}).get("grid", []))
            + (" (product grid)" if data.n_lams == 2 else ""),
        ],
        ["SSIM convention", f"`{conv}`: {SSIM_CONVENTIONS.get(conv, 'unknown convention')}"],
    ]
    out.append(md_table(["item", "value"], rows, name="data and settings", align=["l", "l"]))
    return out


def _cost_section(costs: dict[str, Any]) -> list[str]:
    rows = [
        [
            r["label"],
            fmt_params(r["n_params"]),
            fmt_num(r["steps"], 0),
            fmt_seconds(r["device_seconds"]),
            fmt_seconds(r["wall_seconds"]),
            fmt_seconds(r["inference_seconds_per_slice"]),
            f"~{r['paper_hours']:g} h" if r["paper_hours"] else MISSING,
            fmt_params(r["paper_params"]),
            fmt_mib(r.get("peak_memory_mib")),
            fmt_mib(r.get("eval_peak_memory_mib")),
        ]
        for r in costs["rows"]
    ]
    header = [
        "model",
        "parameters",
        "steps",
        "training device time",
        "training wall time",
        "inference / slice (device)",
        "paper: train time",
        "paper: parameters",
        "peak memory: training",
        "peak memory: evaluation",
    ]
    out = [md_table(header, rows, name="cost table")]
    ratio_rows = [
        [
            model_label(m),
            f"{r:.1f}x" if r is not None else MISSING,
            f"{costs['paper_ratio_all_baselines_over'][m]:.0f}x"
            if costs["paper_ratio_all_baselines_over"].get(m)
            else MISSING,
        ]
        for m, r in costs["ratio_all_baselines_over"].items()
    ]
    if ratio_rows and costs["n_baselines"]:
        out.append(f"All {costs['n_baselines']} baselines / each variant (training device time):")
        out.append(md_table(["variant", "ours", "paper (648 h / variant)"], ratio_rows, name="cost ratios"))
    notes = [
        f"Device time is measured on `{costs.get('device')}` in `{costs.get('dtype')}` (CUDA events on a GPU, "
        "process CPU time on the CPU); wall time includes data movement and checkpoints. The paper's column is "
        f"its Table 1 (brain, {A.PAPER_DEVICE}); its inference note is ~{A.PAPER_INFERENCE_S} s per slice "
        "for every model. Peak memory: on a GPU the largest memory held by tensors during the job (CUDA "
        "allocator, max over the baselines in their rows); on the CPU the process's peak resident set, an "
        "upper bound that cannot be reset between jobs. The paper's 'All Unets' are 361 models; "
        "the ratio here grows with the number of "
        "baselines in this study's grid and with the steps per model."
    ]
    over = {k: v for k, v in costs["overhead"].items() if v is not None}
    if over:
        notes.append(
            "Not in the table: "
            + ", ".join(
                f"{'segmentation U-Net' if k == 'seg' else 'loss-scale calibration'} {fmt_seconds(v)}"
                for k, v in over.items()
            )
            + " of device time."
        )
    return out + notes


def _claims_section(s: dict[str, Any]) -> list[str]:
    from .claims import DICE_CEILING_MIN, RANGE_MIN

    meta = s["claims_meta"]
    rows = []
    for r in s["claims"]:
        ci = f"{fmt_sig(r['ci'][0], 3)} to {fmt_sig(r['ci'][1], 3)}" if r.get("ci") else MISSING
        rows.append(
            [
                f"({r['id']}) {r['claim']}",
                r["verdict"],
                r["statistic"],
                fmt_sig(r.get("value"), 3),
                ci,
                str(r["n"]),
                r["reason"] or MISSING,
            ]
        )
    return [
        md_table(
            ["claim", "verdict", "statistic", "value", "95% CI", "replicates", "why"],
            rows,
            name="paper claims",
            align=["l", "l", "l", "r", "r", "r", "l"],
        ),
        f"Intervals: {meta['ci_method']}; {meta['n_replicates']} replicate(s), {meta['n_units']} (replicate, "
        f"subject) test units. Thresholds: (a) {MATCH_MARGIN_DB} dB, (d) {RANGE_MIN} per pixel, (e) a held-out "
        "Dice gain above 0 (each replicate judged with the λ chosen on the others, so that the argmax of a flat, "
        f"noisy Dice curve does not count as a difference) and a Dice ceiling >= {DICE_CEILING_MIN}. A claim that "
        "rests on a model without a "
        "passed convergence check, or on DHS that selects nothing, is not testable.",
    ]


def _sensitivity_section(sens: dict[str, Any]) -> list[str]:
    box = sens["box"]
    ends = f"{fmt_lam(list(box[0]))} and {fmt_lam(list(box[1]))}"
    img = sens["image"]
    rows = []
    for m in ["baselines", *sens["models"]]:
        label = "U-Net baselines" if m == "baselines" else model_label(m)
        i = img.get(m, {})
        ci = f"{fmt_sig(i['lo'], 3)} to {fmt_sig(i['hi'], 3)}" if A.finite(i.get("lo")) is not None else MISSING
        cells = [label, fmt_sig(i.get("mean"), 3), ci]
        for metric in sens["metrics"]:
            sp = sens["spread"][metric].get(m, {})
            cells.append(f"{fmt_sig(sp.get('spread'), 3)} ({fmt_sig(sp.get('direction'), 2)})" if sp else MISSING)
        flag = sens["models"].get(m)
        if flag is None:
            cells.append(MISSING)
        elif flag["ignores_lam"] is None:
            cells.append("unknown")
        else:
            cells.append(
                ("**ignores λ**" if flag["ignores_lam"] else "responds")
                + f" ({fmt_sig(flag['ratio'], 2)}x, {flag['basis']})"
            )
        rows.append(cells)
    header = (
        ["model", "image change mean |x(hi) − x(lo)|", "95% CI"]
        + [f"{metric_short(m)} spread (direction)" for m in sens["metrics"]]
        + ["λ response"]
    )
    header, rows = drop_empty_columns(header, rows, keep_first=1)
    follow = [
        f"{model_label(m)}: {', '.join(metric_short(k) for k, v in f['follows'].items() if not v)}"
        for m, f in sens["models"].items()
        if any(not v for v in f["follows"].values())
    ]
    out = [
        f"How much each model's output changes with λ between the extreme λ of the baseline grid ({ends}). Image "
        "change: mean over pixels of |x(λ_hi) − x(λ_lo)| per test slice (images in [0, 1]), averaged per subject, "
        "then over replicates; the baselines' row compares the two U-Nets trained at those λ. Spread: max − min "
        "of the mean metric over λ within the baseline span; direction: value at λ_hi minus value at λ_lo. A "
        f"conditional model whose image change (or, without images, the median over metrics of its spread "
        f"relative to the baselines') is below {sens['ratio_min']:.0%} of the baselines' is flagged as ignoring λ.",
        md_table(header, rows, name="λ-sensitivity"),
    ]
    if follow:
        out.append("Moves against the baselines' direction: " + "; ".join(follow) + ".")
    unclear = sorted({k for f in sens["models"].values() for k in f.get("direction_unclear", [])})
    if unclear:  # one replicate, or an interval that contains 0: no follows/against verdict
        out.append(
            "No direction verdict for "
            + ", ".join(metric_short(k) for k in unclear)
            + ": the baselines' own direction is not established (its 95% CI over replicates contains 0, or one "
            "replicate)."
        )
    return out


def _gap_table(sl: dict[str, Any]) -> str:
    metrics = sl["metrics"]
    by_key: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for g in sl["gaps"]:
        by_key.setdefault((g["model"], g["baseline"]), {})[g["metric"]] = g
    header = ["model", "λ"]
    for m in metrics:
        unit = " (dB)" if m in ("psnr", "rpsnr") else ""
        arrow = "↑" if A.higher_is_better(m) else "↓"
        header += [f"Δ{metric_short(m)}{unit} {arrow}", "p"]
    rows = []
    for (model, _b), per in by_key.items():
        lam = next(iter(per.values()))["lam"]
        row = [model_label(model), fmt_lam(lam)]
        for m in metrics:
            g = per.get(m)
            row += [
                fmt_num(g["mean_diff"], 3 if m not in ("psnr", "rpsnr") else 2, signed=True) if g else MISSING,
                fmt_p(g["p"]) if g else MISSING,
            ]
        rows.append(row)
    header, rows = drop_empty_columns(header, rows, keep_first=2)
    return md_table(header, rows, name="gap table (model minus baseline)")


def _sl_section(data: RunData, sl: dict[str, Any], fig_dir: Path, link) -> list[str]:
    band = (
        f"95% CI over {sl['n_replicates']} replicates"
        if sl["n_replicates"] > 1
        else f"±1 std over {sl['n_units']} test subjects; 1 replicate, no CI"
    )
    path = F.lambda_curves(
        sl["curves"],
        sl["points"],
        sl["metrics"],
        fig_dir / "sl-curves.png",
        xlabel=_sl_xlabel(data),
        title=f"Test metrics over λ (mean; band: {band})",
    )
    n_eval = max((len(cv["lam"]) for cv in sl["curves"][sl["metrics"][0]].values()), default=0)
    out = [
        f"![metrics over λ]({link(path)})",
        f"Lines: λ-conditioned models evaluated on {n_eval} λ values (band: {band}); markers: one U-Net per λ "
        "(error bars likewise). Means over (replicate, subject) units.",
    ]
    if not sl["gaps"]:
        return out + ["No conditional model was evaluated at a baseline's λ, so there is no paired comparison."]
    return out + [
        "### Gap to the baselines at their λ",
        f"Mean over (replicate, subject) units of (model − baseline) at each baseline's λ (slices averaged per "
        f"subject first); arrows give the better direction. p: {sl['test']} over the {sl['n_units']} paired units "
        f"(smallest attainable p with this many: {fmt_p(sl['min_p'])}); 95% CIs over replicates are in the "
        "claims table and `summary.json`.",
        _gap_table(sl),
    ]


def _ao_section(data: RunData, ao: dict[str, Any], fig_dir: Path, link) -> list[str]:
    ls = ao["landscapes"]
    lam_labels = _lam_axis_labels(data)
    optima = {m: v["optimum"] for m, v in ao["models"].items()} | {"baseline": ao["baseline"]["optimum"]}
    maximize = A.higher_is_better(ao["metric"])
    points = np.array([data.baseline_lam(b) for b in data.baselines])
    p1 = F.landscape_figure(
        ls,
        optima,
        fig_dir / "ao-landscapes.png",
        levels=ao["thresholds"],
        lam_labels=lam_labels,
        title=f"{metric_short(ao['metric'])} landscapes (test mean; star: optimum; contours: thresholds below)",
        baseline_points=points,
        maximize=maximize,
    )
    p2 = F.difference_figure(
        ls,
        fig_dir / "ao-differences.png",
        lam_labels=lam_labels,
        title=f"{metric_short(ao['metric'])}: model − baselines (blue: model better)",
    )
    n = len(ls["axis"])
    out = [
        f"Each model evaluated on a {n}×{n} λ grid; the {len(data.baselines)} trained baselines (white dots) are "
        "linearly interpolated onto it (`hyperrecon.evaluation.interpolate_baselines`)."
        + (
            ""
            if ao["full_span"]
            else " The baseline grid does not cover the evaluation grid: outside its span "
            "the interpolation would only repeat edge values, so those cells are grey in the baseline panel and "
            "the statistics below use only the cells inside the span (dashed box)."
        ),
        f"![landscapes]({link(p1)})",
        f"![differences]({link(p2)})",
    ]
    thr = ao["thresholds"]
    header = [
        "model",
        "optimum λ",
        f"optimum {metric_short(ao['metric'])}",
        "mean over span",
        "mean Δ vs baselines",
        "mean |Δ|",
        f"top-{ao['top_fraction']:.0%} region mean",
    ] + [f"frac > {t:g} dB ({lab})" for t, lab in zip(thr, ao["threshold_labels"], strict=True)]
    rows = []
    b = ao["baseline"]
    rows.append(
        [
            "U-Net baselines (interpolated)",
            fmt_lam([b["optimum"]["lam1"], b["optimum"]["lam2"]]),
            fmt_num(b["optimum"]["value"], 2),
            fmt_num(b["mean"], 2),
            MISSING,
            MISSING,
            fmt_num(b["top_region_mean"], 2),
        ]
        + [fmt_num(b["fraction_above"].get(t), 2) for t in thr]
    )
    for m, v in ao["models"].items():
        o = v["optimum"]
        rows.append(
            [
                model_label(m),
                fmt_lam([o["lam1"], o["lam2"]]),
                fmt_num(o["value"], 2),
                fmt_num(v["mean"], 2),
                fmt_num(v["mean_diff"], 2, signed=True),
                fmt_num(v["mean_abs_diff"], 2),
                fmt_num(v["top_region_mean"], 2),
            ]
            + [fmt_num(v["fraction_above"].get(t), 2) for t in thr]
        )
    out.append(
        f"Thresholds: the study's rPSNR threshold ({ao['study_threshold']:g} dB) and the 50th/75th/90th "
        f"percentiles (p50/p75/p90) of the baseline landscape. The top-{ao['top_fraction']:.0%} region: the best "
        f"{ao['n_top_cells']} of those cells in the baseline landscape. "
        f"Values in dB; fractions of the {ao['n_inside']} cells."
    )
    out.append(md_table(header, rows, name="landscape summary"))
    if ao["dhs_vs_uhs"]:
        out.append("### UHS vs DHS in the best region")
        rows = [
            [
                f"HyperRecon-{r['size']}",
                fmt_num(r["uhs_top"], 2),
                fmt_num(r["dhs_top"], 2),
                fmt_num(r["diff_top"], 2, signed=True),
                fmt_num(r["uhs_mean"], 2),
                fmt_num(r["dhs_mean"], 2),
                "yes" if r["dhs_better"] else "no",
            ]
            for r in ao["dhs_vs_uhs"]
        ]
        out.append(
            md_table(
                [
                    "size",
                    "UHS top-region mean",
                    "DHS top-region mean",
                    "DHS − UHS",
                    "UHS mean (all)",
                    "DHS mean (all)",
                    "DHS better",
                ],
                rows,
                name="UHS vs DHS",
            )
        )
    if ao["matched"]:
        out.append("### At the baselines' own λ (no interpolation)")
        out.append(
            f"Per model, the per-λ mean test gap (model − baseline) over the baseline λ that lie on its "
            f"evaluation grid; p: {ao['test']} over those λ."
        )
        rows = [
            [
                model_label(r["model"]),
                str(r["n_lams"]),
                fmt_num(r["mean_diff"], 2, signed=True),
                fmt_num(r["median_diff"], 2, signed=True),
                f"{r['n_better']} / {r['n_lams']}",
                fmt_p(r["p"]),
            ]
            for r in ao["matched"]
        ]
        out.append(
            md_table(
                ["model", "matched λ", f"mean Δ{metric_short(ao['metric'])} (dB)", "median Δ", "model better at", "p"],
                rows,
                name="matched-λ gaps",
            )
        )
    return out


def _dhs_section(data: RunData, dhs: dict[str, Any], fig_dir: Path, link) -> list[str]:
    p = F.dhs_histogram(
        dhs["kept"],
        fig_dir / "dhs-kept.png",
        lam_labels=_lam_axis_labels(data) if data.n_lams == 2 else (_sl_xlabel(data), ""),
    )
    rows = [
        [model_label(m), str(s["n"])]
        + [fmt_num(v, 3) for v in s["mean"]]
        + [fmt_num(v, 3) for v in s["std"]]
        + [fmt_num(s["ks_statistic"], 3), fmt_p(s["p_uniform"]), s["verdict"]]
        for m, s in dhs["stats"].items()
    ]
    k = len(next(iter(dhs["stats"].values()))["mean"])
    warmups = sorted({int(s.get("warmup_steps", 0)) for s in dhs["stats"].values()})
    warm = "none" if warmups == [0] else " / ".join(f"{w} steps" for w in warmups)
    header = (
        ["model", "kept λ"]
        + [f"mean λ{i + 1}" for i in range(k)]
        + [f"std λ{i + 1}" for i in range(k)]
        + ["KS D (max over axes)", "p (vs uniform)", "verdict"]
    )
    out = [
        f"![DHS kept λ]({link(p)})",
        "The λ whose samples DHS back-propagated (lowest data-consistency loss in each mini-batch; with λ "
        "groups, the λ of lowest mean DC loss), from the latest recorded training steps after the UHS warm-up "
        f"({warm}); a uniform draw would give the flat level quoted in each title (paper Fig. 6). The figure, the "
        "table and the test use the same rows. The test compares them with U[0,1]^k (Kolmogorov-Smirnov per "
        "axis, and a χ² test of the joint histogram for two λ; "
        'Bonferroni-combined p). "selects nothing" (p ≥ 0.01): the kept λ are indistinguishable from uniform, '
        "so DHS acted as UHS on a smaller batch and a DHS-vs-UHS difference says nothing about DHS.",
        md_table(header, rows, name="DHS kept λ"),
    ]
    idle = [model_label(m) for m, s in dhs["stats"].items() if s["verdict"] == "selects nothing"]
    if idle:
        out.append(f"**DHS selected nothing in {', '.join(idle)}**: its kept λ are indistinguishable from uniform.")
    return out


def _ranges_section(rng: dict[str, Any], fig_dir: Path, link) -> list[str]:
    out = []
    if rng["rows"]:
        rows = [
            [
                model_label(r["model"]),
                str(r["n_lams"]),
                fmt_num(r["threshold"], 2),
                fmt_num(r["frac_above"], 2),
                f"{r['n_slices_with_range']} / {r['n_slices']}",
                fmt_sig(r["range_sum_mean"], 4),
                fmt_sig(r["range_per_pixel_mean"], 3),
            ]
            for r in rng["rows"]
        ]
        out.append(
            "Per range slice: the λ whose reconstruction beats the rPSNR threshold, and the per-pixel "
            "range (max − min over those reconstructions) summed over pixels and per pixel (mean over "
            "slices that have one)."
        )
        out.append(
            md_table(
                [
                    "model",
                    "λ evaluated",
                    "rPSNR threshold (dB)",
                    "fraction of λ above",
                    "slices with a range",
                    "range (sum over pixels)",
                    "range per pixel",
                ],
                rows,
                name="reconstruction ranges",
            )
        )
        if all(r["range_sum_mean"] is None for r in rng["rows"]):
            out.append("No λ beat the threshold on any range slice, so no range is defined (—).")
    if rng["diverse"]:
        p = F.diverse_figure(rng["diverse"], fig_dir / "diverse-pairs.png")
        out.append(f"![diverse pairs]({link(p)})")
        rows = []
        for m, d in rng["diverse"].items():
            ma, mb = d.get("metrics_a") or {}, d.get("metrics_b") or {}
            rows.append(
                [
                    model_label(m),
                    fmt_lam(d.get("lam_a")),
                    fmt_lam(d.get("lam_b")),
                    fmt_sig(d.get("distance"), 3),
                    fmt_num(ma.get("psnr"), 2),
                    fmt_num(mb.get("psnr"), 2),
                    fmt_num(ma.get("ssim"), 3),
                    fmt_num(mb.get("ssim"), 3),
                    str(d.get("n_kept", MISSING)),
                ]
            )
        q = next(iter(rng["diverse"].values())).get("quantile")
        out.append(
            f"Among the λ whose PSNR is at or above the {fmt_num(q, 2)} quantile, the two reconstructions "
            "farthest apart (L2):"
        )
        header, rows = drop_empty_columns(
            ["model", "λ A", "λ B", "L2 distance", "PSNR A (dB)", "PSNR B (dB)", "SSIM A", "SSIM B", "λ kept"], rows
        )
        out.append(md_table(header, rows, name="diverse pairs"))
    return out


def _input_label(data: RunData) -> str:
    name = data.config.get("forward", {}).get("name", "")
    return {
        "cs-mri": "input (zero-filled)",
        "denoise": "input (noisy)",
        "super-resolution": "input (upsampled low-res)",
    }.get(name, "input")


def _dice_section(data: RunData, dice: dict[str, Any], fig_dir: Path, link) -> list[str]:
    out = []
    if data.n_lams == 1 and dice.get("curves"):
        best = {
            "dice": {m: {"lam": v["lam"], "value": v["value"]} for m, v in dice["best"].items() if m != "baselines"}
        }
        p = F.lambda_curves(
            {"dice": dice["curves"]},
            {"dice": dice["points"]},
            ["dice"],
            fig_dir / "dice.png",
            xlabel=_sl_xlabel(data),
            title="Downstream segmentation Dice over λ",
            best=best,
        )
        out.append(f"![Dice over λ]({link(p)})")
    elif dice.get("landscapes"):
        ls = dice["landscapes"]
        optima = {
            m: {"lam1": v["lam"][0], "lam2": v["lam"][1], "value": v["value"]}
            for m, v in dice["best"].items()
            if m != "baselines"
        }
        o = A._optimum(ls["axis"], ls["baseline_plot"], True)
        optima["baseline"] = o
        p = F.landscape_figure(
            ls,
            optima,
            fig_dir / "dice-landscapes.png",
            levels=[],
            lam_labels=_lam_axis_labels(data),
            title="Downstream segmentation Dice (star: best λ)",
            baseline_points=np.array([data.baseline_lam(b) for b in data.baselines]),
        )
        out.append(f"![Dice landscapes]({link(p)})")
    rows = [
        [
            "U-Net baselines (best trained)" if m == "baselines" else model_label(m),
            fmt_lam(v["lam"]),
            fmt_num(v["value"], 3),
        ]
        for m, v in dice["best"].items()
    ]
    out.append(
        "Hard Dice (mean over classes) of the segmentation U-Net on each reconstruction, mean over test "
        "slices; best λ per model:"
    )
    out.append(md_table(["model", "best λ", "Dice"], rows, name="Dice best λ"))
    return out


def _test_metric(data: RunData, row) -> float | None:
    """search_summary's test metric, or (when the merge left it empty) the search job's own test table."""
    v = A.finite(row.get("test_metric"))
    if v is not None or row["target"] == "baselines":
        return v
    t = data.search_test(str(row["target"]))
    if t is None or A.finite(row.get("chosen_seed")) is None:
        return None
    hit = t[(t.strategy == row["strategy"]) & (t.seed == int(row["chosen_seed"]))]
    return A.finite(hit.test_objective.iloc[0]) if len(hit) else None


def _search_section(data: RunData, se: dict[str, Any], fig_dir: Path, link) -> list[str]:
    obj = se["objective"]
    unit = " (dB)" if obj in ("psnr", "rpsnr") else ""
    obj_label = f"validation {metric_short(obj)}{unit}"
    intro = [
        f"Objective: {obj_label} ({'higher' if se['maximize'] else 'lower'} is better), {se['budget']} trials per "
        f"search, up to {se['n_seeds']} seeds. The baseline searches are **replayed**: each suggested λ is snapped "
        "to the nearest trained baseline and costs that U-Net's training device time (plus its validation "
        "passes where the fidelity table has them). Searches on a λ-conditioned model cost only inference; "
        "its training is added in 'total cost'. Regret = grid optimum − best (> 0 worse than the best trained "
        "baseline, < 0 better). Test objective: at the chosen λ (median seed).",
        "Every search is an Optuna study in the run's storage (`hrbench-search:<run id>:<target>:<strategy>:"
        "seed=<seed>`, trial costs as user attributes): `optuna-dashboard <run>/ledger.journal` opens them.",
    ]
    if se.get("details"):
        from .searchreport import markdown as search_markdown

        out = intro + search_markdown(data, se, se["details"], fig_dir, link) + ["### Per strategy"]
    else:
        dev = data.costs.set_index("model")["device_seconds"]
        training = {m: A.finite(dev.get(m)) for m in data.conditional}
        p = F.search_figure(
            data.search,
            se["targets"],
            fig_dir / "search.png",
            objective_label=obj_label,
            grid_optimum=se["grid_optimum"],
            training_seconds=training,
        )
        out = [f"![search]({link(p)})", *intro]
    ss = data.search_summary
    if ss is None:
        raise RunError(f"{data.run_dir}: the report has a search section but the run has no search summary")
    rows = []
    for _, r in ss.iterrows():
        live = {"baselines": "baselines (replayed)", "baselines-live": "baselines (trained live)"}
        target = live.get(str(r["target"])) or model_label(str(r["target"]))
        lam = [r.get("chosen_lam1"), r.get("chosen_lam2")] if data.n_lams == 2 else [r.get("chosen_lam1")]
        frac, n_seeds = A.finite(r.get("frac_within")), A.finite(r.get("n_seeds"))
        reached = f"{round(frac * n_seeds)} / {int(n_seeds)}" if frac is not None and n_seeds else MISSING
        rows.append(
            [
                target,
                str(r["strategy"]),
                f"{fmt_num(r['best_mean'], 3)} ± {fmt_num(r.get('best_std'), 3)}"
                if A.finite(r.get("best_std")) is not None
                else fmt_num(r["best_mean"], 3),
                fmt_num(r["regret_mean"], 3, signed=True),
                fmt_lam(lam),
                fmt_num(_test_metric(data, r), 3),
                fmt_seconds(r["search_cost_mean"]),
                fmt_seconds(r["total_cost_mean"]),
                fmt_num(r.get("trials_to_within_mean"), 1),
                reached,
            ]
        )
    header = [
        "target",
        "strategy",
        "best (mean ± std)",
        "regret",
        "chosen λ",
        "test objective at chosen λ",
        "search cost",
        "total cost",
        "trials to grid optimum",
        "seeds reaching it",
    ]
    header, rows = drop_empty_columns(header, rows, keep_first=2)
    out.append(md_table(header, rows, name="search summary"))
    return out


def _training_section(tr: dict[str, Any], fig_dir: Path, link) -> list[str]:
    p = F.training_figure(tr["histories"], fig_dir / "training.png")
    return [
        f"![training]({link(p)})",
        "Mini-batch training loss as logged (λ-conditioned models: the loss at the λ sampled in each batch, "
        "so it is noisy by design).",
    ]


# ---------------------------------------------------------------------------------------------------------------
# the report


RUN_FOLDER_NOTE = (
    "What every file of this run folder holds, with each column's meaning, unit and better direction: "
    "`docs/run-folder.md` in the hrbench source; the metrics' units and directions are also in "
    "`metrics.csv` here, and `summary.json` is the machine-readable headline."
)


def _explore_note(data: RunData, link) -> str:
    """Where to see every λ: the exported explorer page when the run folder has ``explore.html``."""
    from ..runs.folder import RunFolder

    page = RunFolder(data.run_dir).table("explore.html")
    live = "Any λ, live: `hrbench explore RUN_DIR` (RUN_DIR: this run folder)."
    if page.is_file():
        return f"{live} Every λ of a grid, in one self-contained page: [explore.html]({link(page)})."
    return f"{live} A self-contained page for sharing: `hrbench explore RUN_DIR --export RUN_DIR/explore.html`."


def build_markdown(data: RunData, s: dict[str, Any], fig_dir: Path, md_dir: Path) -> str:
    def link(path: Path) -> str:
        return Path(os.path.relpath(Path(path).resolve(), Path(md_dir).resolve())).as_posix()

    lines: list[str] = [f"# hrbench report: {s['study']} ({s['profile']})", ""]
    source = data.config.get("data", {}).get("source")
    if source in DATA_NOTICES:
        lines += [f"> {DATA_NOTICES[source]}", ""]

    def section(key: str, body: list[str]) -> None:
        lines.extend([f"## {SECTIONS[key]}", ""])
        for block in body:
            lines.extend([block, ""])

    blocked = cannot_test(s)
    if blocked:
        lines += [f"> {blocked}", ""]
    section("claims", _claims_section(s))
    section("findings", ["\n".join(f"- {f}" for f in s["findings"]) or "No finding could be computed."])
    section("provenance", [*_provenance(data), RUN_FOLDER_NOTE])
    section("data", _data_section(data))
    section("costs", _cost_section(s["costs"]))
    if s["sensitivity"]:
        section("sensitivity", _sensitivity_section(s["sensitivity"]))
    if s["sl"]:
        section("sl", _sl_section(data, s["sl"], fig_dir, link))
    if s["ao"]:
        section(
            "ao",
            _ao_section(data, s["ao"], fig_dir, link)
            + C.ao_regularisation_lines(s.get("ao_regularisation"), (data.scales or {}).get("rule")),
        )
    if s["dhs"]:
        section("dhs", _dhs_section(data, s["dhs"], fig_dir, link))
    if s["ranges"]:
        section("ranges", _ranges_section(s["ranges"], fig_dir, link))
    if s["examples"]:
        p = F.examples_figure(s["examples"], fig_dir / "examples.png", input_label=_input_label(data))
        section(
            "examples",
            [
                f"![examples]({link(p)})",
                "Top: ground truth and the network input. Then the baselines, each at its own λ "
                "(those nearest to the λ shown for the conditional models), and each λ-conditioned "
                "model over λ. Titles: λ, PSNR (dB) and SSIM of that slice.",
                _explore_note(data, link),
            ],
        )
    if s["dice"]:
        section("dice", _dice_section(data, s["dice"], fig_dir, link) + C.dice_reference_lines(s["dice"]))
    if s["search"]:
        section("search", _search_section(data, s["search"], fig_dir, link))
    if s["training"]:
        section(
            "training",
            _training_section(s["training"], fig_dir, link)
            + C.convergence_lines(s["convergence"])
            + C.long_reference_lines(data.long_reference),
        )
    return "\n".join(lines).rstrip() + "\n"


def _read_everything(data: RunData, s: dict[str, Any]) -> None:
    """Read the files that the sections read while drawing (beyond :func:`analyse`), so that a bad one fails
    before any figure is written."""
    if s["search"] and data.search_summary is not None:
        for _, row in data.search_summary.iterrows():
            _test_metric(data, row)  # reads search/<target>-test.csv where the summary lacks the number


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write ``report.md`` (or ``out``) and its figures in ``figures/`` next to it; returns the markdown path.

    Everything is read and checked first (run folder format, tables, evaluation outputs, the report's folder), so
    a ``RunError`` leaves the run folder as it was; figures and markdown are each written atomically.
    """
    run_dir = Path(run_dir)
    data = load_run(run_dir)
    s = analyse(data)
    _read_everything(data, s)
    md_path = Path(out) if out is not None else data.folder.table("report.md")
    try:
        md_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"{md_path.parent}: cannot write the report here ({exc.strerror}); expected a folder") from exc
    fig_dir = md_path.parent / "figures"  # next to the report: `-o ELSEWHERE` writes nothing into the run folder
    if fig_dir.exists() and not fig_dir.is_dir():
        raise RunError(f"{fig_dir}: not a folder; expected the report's figure folder")
    text = build_markdown(data, s, fig_dir, md_path.parent)
    path = atomic_write_text(md_path, text)
    if md_path.parent.resolve() == run_dir.resolve():  # `-o ELSEWHERE` leaves the run folder untouched
        from ..runs.summary import record_claims

        record_claims(run_dir, A.jsonable(s["claims"]), long_reference=data.long_reference)
    linked = {Path(p).name for p in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)}
    for name in FIGURE_NAMES:
        if name not in linked:
            (fig_dir / name).unlink(missing_ok=True)
    return path
