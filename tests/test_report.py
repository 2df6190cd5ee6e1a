"""Reports: sections, figures and numbers of report.md for real smoke runs and small hand-built run folders;
missing or empty results fail with one clear RunError line (also through ``hrbench report``)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon
from typer.testing import CliRunner

from hyperrecon.cli import app
from hyperrecon.errors import RunError
from hyperrecon.metrics import SSIM_CONVENTIONS
from hyperrecon.reporting import report_summary, write_report
from hyperrecon.reporting.report import SECTIONS
from hyperrecon.reporting.tables import fmt_lam, fmt_params, fmt_seconds, md_table

runner = CliRunner()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NUMBER = re.compile(r"[-+]?\d+(\.\d+)?")


# ---------------------------------------------------------------------------------------------------------------
# helpers


def _headings(text: str) -> list[str]:
    return [line[3:].strip() for line in text.splitlines() if line.startswith("## ")]


def _tables(text: str) -> list[list[list[str]]]:
    """Markdown tables as lists of body rows (cells stripped); header and rule rows dropped."""
    tables, cur = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cur.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
        elif cur:
            tables.append(cur[2:])
            cur = []
    return tables


def _check_markdown(md: Path) -> str:
    """Every linked PNG exists and is a small PNG; every figure is linked; no NaN/inf; tables hold numbers."""
    text = md.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links, "no figures"
    for link in links:
        png = (md.parent / link).resolve()
        assert png.exists(), link
        data = png.read_bytes()
        assert data[:8] == PNG_MAGIC and 5_000 < len(data) < 1_500_000, (link, len(data))
    fig_dir = (md.parent / links[0]).resolve().parent
    assert {p.name for p in fig_dir.glob("*.png")} == {Path(link).name for link in links}
    assert not re.search(r"\b(nan|inf)\b", text, re.IGNORECASE)
    tables = _tables(text)
    assert tables
    for rows in tables:
        assert rows, "table without rows"
        assert any(NUMBER.search(c) for r in rows for c in r[1:]), rows[0]
    assert not list(md.parent.glob(f".{md.name}.*.tmp"))  # atomic write left no temp file
    return text


def _error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error:") and "Traceback" not in result.output
    return lines[0]


# ---------------------------------------------------------------------------------------------------------------
# a hand-built SL run folder (no training): numbers known by construction

SL_STUDY = {
    "name": "syn-sl",
    "profile": "smoke",
    "kind": "sl",
    "seed": 3,
    "description": "synthetic SL run",
    "data": {"source": "mni-brain", "image_size": 32, "params": {}, "path": None},
    "forward": {"name": "denoise", "params": {"sigma": 0.1}},
    "loss": {"terms": ["mae", "ssim"], "scales": [1.0, 1.0]},
    "baselines": {"grid": [0.0, 0.5, 1.0]},
    "evaluation": {"grid_points": 5, "ssim_convention": "fastmri", "rpsnr_threshold": 0.0},
    "search": {"objective": "psnr", "seeds": 2},
}


def _write_sl_run(d: Path, n_slices: int = 7) -> Path:
    rng = np.random.default_rng(0)
    d.mkdir(parents=True, exist_ok=True)
    (d / "run.json").write_text(
        json.dumps(
            {
                "format": 1,
                "run_id": "syn-1",
                "study": "syn-sl",
                "profile": "smoke",
                "provenance": {
                    "device": "cpu",
                    "device_name": "Test CPU",
                    "precision": "fp32",
                    "git_sha": "abc1234",
                    "date": "2026-01-01T00:00:00+00:00",
                    "versions": {"numpy": "2"},
                },
            }
        )
    )
    (d / "config.json").write_text(json.dumps({"config_hash": "feedbeef", "study": SL_STUDY}))
    base = {"psnr": 20.0, "ssim": 0.7, "mae": 0.05, "hfen": 0.4}
    rows = []
    for lam in (0.0, 0.5, 1.0):
        for s in range(n_slices):
            for metric, v in base.items():
                rows.append(("baseline-" + f"{lam:g}", lam, np.nan, s, metric, v + lam + 0.1 * s))
    for model, shift in (("hyper-S-uniform", 0.5), ("film-uniform", -0.25)):
        for lam in np.linspace(0, 1, 5):
            for s in range(n_slices):
                for metric, v in base.items():
                    rows.append((model, lam, np.nan, s, metric, v + lam + 0.1 * s + shift + rng.normal(0, 0.2)))
    pd.DataFrame(rows, columns=["model", "lam1", "lam2", "slice", "metric", "value"]).to_csv(
        d / "results.csv", index=False
    )
    costs = [
        {
            "model": f"baseline-{lam:g}",
            "kind": "baseline",
            "n_params": 149409,
            "steps": 10,
            "device_seconds": 10.0,
            "wall_seconds": 12.0,
            "device": "cpu",
            "dtype": "fp32",
            "inference_seconds_per_slice": 0.01,
        }
        for lam in (0.0, 0.5, 1.0)
    ]
    costs += [
        {
            "model": "hyper-S-uniform",
            "kind": "hyper",
            "n_params": 743537,
            "steps": 10,
            "device_seconds": 12.0,
            "wall_seconds": 15.0,
            "device": "cpu",
            "dtype": "fp32",
            "inference_seconds_per_slice": 0.02,
        },
        {
            "model": "film-uniform",
            "kind": "film",
            "n_params": 212065,
            "steps": 10,
            "device_seconds": 6.0,
            "wall_seconds": 7.0,
            "device": "cpu",
            "dtype": "fp32",
            "inference_seconds_per_slice": 0.02,
        },
    ]
    pd.DataFrame(costs).to_csv(d / "costs.csv", index=False)
    return d


@pytest.fixture
def sl_run(tmp_path: Path) -> Path:
    return _write_sl_run(tmp_path / "syn")


def test_synthetic_sl_report_sections_numbers_and_figures(sl_run: Path) -> None:
    md = write_report(sl_run)
    assert md == sl_run / "report.md"
    text = _check_markdown(md)
    heads = _headings(text)
    for key in ("findings", "provenance", "data", "costs", "sl"):
        assert SECTIONS[key] in heads
    for key in ("ao", "dhs", "dice", "search", "examples"):  # no data for these: no section
        assert SECTIONS[key] not in heads
    assert "every split shares its anatomy" in text
    assert SSIM_CONVENTIONS["fastmri"] in text
    assert "`feedbeef`" in text and "abc1234" in text and "Test CPU" in text
    assert "Wilcoxon" in text


def test_synthetic_sl_gaps_match_scipy(sl_run: Path) -> None:
    s = report_summary(sl_run)
    r = pd.read_csv(sl_run / "results.csv")
    for model in ("hyper-S-uniform", "film-uniform"):
        g = next(g for g in s["sl"]["gaps"] if g["model"] == model and g["metric"] == "psnr" and g["lam"] == [0.5])
        m = r[(r.model == model) & (r.metric == "psnr") & np.isclose(r.lam1, 0.5)].sort_values("slice").value.to_numpy()
        b = r[(r.model == "baseline-0.5") & (r.metric == "psnr")].sort_values("slice").value.to_numpy()
        assert g["n"] == 7
        assert g["mean_diff"] == pytest.approx(np.mean(m - b), abs=1e-9)
        assert g["p"] == pytest.approx(wilcoxon(m - b).pvalue, rel=1e-9)
    # hyper is +0.5 above the baselines by construction, FiLM -0.25: HyperRecon is not the closer one
    assert s["sl"]["closest"]["model"] == "film-uniform"
    assert s["costs"]["ratio_all_baselines_over"] == {
        "hyper-S-uniform": pytest.approx(2.5),
        "film-uniform": pytest.approx(5.0),
    }
    assert s["costs"]["paper_ratio_all_baselines_over"]["hyper-S-uniform"] == pytest.approx(648 / 5)
    json.dumps(s, allow_nan=False)


def test_report_elsewhere_links_figures_relative_to_the_markdown(sl_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "elsewhere" / "deep" / "r.md"
    assert write_report(sl_run, out=out) == out
    text = _check_markdown(out)
    assert "](figures/sl-curves.png)" in text and (out.parent / "figures" / "sl-curves.png").is_file()
    assert not (sl_run / "report.md").exists()


def test_rewrite_removes_figures_of_sections_that_are_gone(sl_run: Path) -> None:
    stale = sl_run / "figures" / "search.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(PNG_MAGIC)
    mine = sl_run / "figures" / "notes.png"  # not a report figure: left alone
    mine.write_bytes(PNG_MAGIC)
    write_report(sl_run)
    assert not stale.exists() and mine.exists() and (sl_run / "figures" / "sl-curves.png").exists()


def test_sl_baselines_off_the_evaluation_grid_give_no_gap_table(tmp_path: Path) -> None:
    d = _write_sl_run(tmp_path / "off")
    r = pd.read_csv(d / "results.csv")
    r.loc[r.model.str.startswith("baseline-0.5"), "lam1"] = 0.4  # not on linspace(0, 1, 5)
    r["model"] = r["model"].replace("baseline-0.5", "baseline-0.4")
    r.to_csv(d / "results.csv", index=False)
    c = pd.read_csv(d / "costs.csv")
    c["model"] = c["model"].replace("baseline-0.5", "baseline-0.4")
    c.to_csv(d / "costs.csv", index=False)
    s = report_summary(d)
    assert {tuple(g["lam"]) for g in s["sl"]["gaps"]} == {(0.0,), (1.0,)}
    _check_markdown(write_report(d))


def _write_ao_run(d: Path) -> Path:
    """AO: baselines on {0, .5, 1}², two HyperRecon variants on the same grid, offset by -1 (UHS) and -0.5 dB
    (DHS) everywhere, so every landscape statistic is known by hand."""
    _write_sl_run(d)
    study = {
        **SL_STUDY,
        "name": "syn-ao",
        "kind": "ao",
        "loss": {"terms": ["dc", "l1_weights", "tv"], "scales": [1, 1, 1]},
        "data": {"source": "knee-phantom", "image_size": 32, "params": {}, "path": None},
        "evaluation": {"grid_points": 3, "ssim_convention": "wang", "rpsnr_threshold": 0.0},
        "search": {"objective": "rpsnr", "seeds": 1},
    }
    (d / "config.json").write_text(json.dumps({"config_hash": "cafe", "study": study}))
    axis = (0.0, 0.5, 1.0)
    rows = []
    for model, shift in (("baseline", 0.0), ("hyper-S-uniform", -1.0), ("hyper-S-dhs", -0.5)):
        for a in axis:
            for b in axis:
                name = f"baseline-{a:g}-{b:g}" if model == "baseline" else model
                for s in range(3):
                    value = 3 * a - 2 * (b - 0.5) ** 2 + shift + 0.1 * (s - 1)
                    rows.append((name, a, b, s, "rpsnr", value))
    pd.DataFrame(rows, columns=["model", "lam1", "lam2", "slice", "metric", "value"]).to_csv(
        d / "results.csv", index=False
    )
    costs = [
        {
            "model": f"baseline-{a:g}-{b:g}",
            "kind": "baseline",
            "n_params": 149409,
            "device_seconds": 2.0,
            "wall_seconds": 3.0,
        }
        for a in axis
        for b in axis
    ]
    costs += [
        {"model": m, "kind": "hyper", "n_params": 743537, "device_seconds": 3.0, "wall_seconds": 4.0}
        for m in ("hyper-S-uniform", "hyper-S-dhs")
    ]
    pd.DataFrame(costs).to_csv(d / "costs.csv", index=False)
    return d


def test_synthetic_ao_landscape_numbers_by_hand(tmp_path: Path) -> None:
    d = _write_ao_run(tmp_path / "ao")
    s = report_summary(d)["ao"]
    a, b = np.meshgrid([0.0, 0.5, 1.0], [0.0, 0.5, 1.0], indexing="ij")
    base = 3 * a - 2 * (b - 0.5) ** 2
    assert s["baseline"]["optimum"] == pytest.approx({"lam1": 1.0, "lam2": 0.5, "value": 3.0})
    assert s["models"]["hyper-S-uniform"]["mean_diff"] == pytest.approx(-1.0)
    assert s["models"]["hyper-S-dhs"]["mean_abs_diff"] == pytest.approx(0.5)
    assert s["n_top_cells"] == 1  # ceil(10% of 9 cells)
    assert s["models"]["hyper-S-dhs"]["top_region_mean"] == pytest.approx(2.5)
    (row,) = s["dhs_vs_uhs"]
    assert row["size"] == "S" and row["dhs_better"] and row["diff_top"] == pytest.approx(0.5)
    assert s["thresholds"][0] == 0.0 or 0.0 in s["thresholds"]
    for t in s["thresholds"]:
        assert s["baseline"]["fraction_above"][str(t)] == pytest.approx(np.mean(base > t))
        assert s["models"]["hyper-S-uniform"]["fraction_above"][str(t)] == pytest.approx(np.mean(base - 1 > t))
    assert s["closest"]["model"] == "hyper-S-dhs"
    text = _check_markdown(write_report(d))
    assert SECTIONS["ao"] in _headings(text) and "synthetic procedural knee phantom" in text.lower()


# ---------------------------------------------------------------------------------------------------------------
# failures: one line, naming the file and what was expected


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("results-missing", "results.csv: missing"),
        ("results-empty-file", "results.csv: empty file"),
        ("results-header-only", "results.csv: no rows"),
        ("results-all-nan", "results.csv: every value is NaN"),
        ("results-one-model-nan", "all values NaN for film-uniform/ssim"),
        ("results-bad-columns", "results.csv: missing columns"),
        ("costs-empty", "costs.csv: empty file"),
        ("run-json-missing", "run.json: missing"),
        ("run-json-other-format", "run.json: run folder format 2; expected format 1"),
        ("eval-images-truncated", "hyper-S-uniform-images.npz: corrupt or truncated npz"),
        ("eval-images-garbled", "film-uniform-images.npz: corrupt or truncated npz"),
        ("config-corrupt", "config.json: unreadable JSON"),
        ("not-a-folder", "not a folder"),
    ],
)
def test_bad_runs_fail_with_one_line_run_error(sl_run: Path, case: str, needle: str) -> None:
    r = sl_run / "results.csv"
    if case == "results-missing":
        r.unlink()
    elif case == "results-empty-file":
        r.write_text("")
    elif case == "results-header-only":
        r.write_text("model,lam1,lam2,slice,metric,value\n")
    elif case == "results-all-nan":
        t = pd.read_csv(r)
        t["value"] = np.nan
        t.to_csv(r, index=False)
    elif case == "results-one-model-nan":
        t = pd.read_csv(r)
        t.loc[(t.model == "film-uniform") & (t.metric == "ssim"), "value"] = np.nan
        t.to_csv(r, index=False)
    elif case == "results-bad-columns":
        pd.read_csv(r).rename(columns={"value": "score"}).to_csv(r, index=False)
    elif case == "costs-empty":
        (sl_run / "costs.csv").write_text("")
    elif case == "run-json-missing":
        (sl_run / "run.json").unlink()
    elif case == "run-json-other-format":
        run_json = json.loads((sl_run / "run.json").read_text())
        (sl_run / "run.json").write_text(json.dumps({**run_json, "format": 2}))
    elif case.startswith("eval-images"):
        (sl_run / "eval").mkdir()
        images = (
            sl_run
            / "eval"
            / ("hyper-S-uniform-images.npz" if case.endswith("truncated") else "film-uniform-images.npz")
        )
        np.savez_compressed(images, example_recons=np.linspace(0, 1, 5 * 32 * 32).reshape(5, 32, 32))
        data = bytearray(images.read_bytes())
        if case.endswith("truncated"):
            del data[len(data) // 2 :]
        else:  # a few bytes inside the deflate stream: only the member's CRC-32 tells
            data[len(data) // 3 : len(data) // 3 + 8] = bytes(8)
        images.write_bytes(bytes(data))
    elif case == "config-corrupt":
        (sl_run / "config.json").write_text("{not json")
    target = sl_run / "nope" if case == "not-a-folder" else sl_run
    with pytest.raises(RunError) as info:
        write_report(target)
    msg = str(info.value)
    assert needle in msg and "\n" not in msg and ("expected" in msg or "missing" in msg)
    assert not (sl_run / "report.md").exists()
    assert not (sl_run / "figures").exists()  # checked before any figure is drawn


def test_cli_report_on_empty_results_prints_one_error_line(sl_run: Path) -> None:
    (sl_run / "results.csv").write_text("model,lam1,lam2,slice,metric,value\n")
    result = runner.invoke(app, ["report", str(sl_run)])
    assert result.exit_code == 1
    line = _error_line(result)
    assert "results.csv" in line and "expected" in line


def test_cli_report_json(sl_run: Path) -> None:
    result = runner.invoke(app, ["report", str(sl_run), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["study"] == "syn-sl" and summary["findings"]
    assert (sl_run / "report.md").exists()


# ---------------------------------------------------------------------------------------------------------------
# formatting


def test_formatting_and_tables_never_print_nan() -> None:
    assert fmt_params(149409) == "149K" and fmt_params(4905089) == "4.9M" and fmt_params(53.9e6) == "54M"
    assert fmt_seconds(0.5) == "0.500 s" and fmt_seconds(7200) == "120.0 min" and fmt_seconds(4 * 3600) == "4.0 h"
    assert fmt_lam([0.5, float("nan")]) == "—" and fmt_lam([0.25]) == "0.25" and fmt_lam((0.5, 1.0)) == "(0.5, 1)"
    with pytest.raises(RunError, match="no rows"):
        md_table(["a", "b"], [], name="t")
    with pytest.raises(RunError, match="every value is missing"):
        md_table(["a", "b"], [["x", "—"]], name="t")
    assert md_table(["a", "b"], [["x|y", "1"]], name="t").splitlines()[2] == "| x\\|y | 1 |"


# ---------------------------------------------------------------------------------------------------------------
# real smoke runs


def _smoke(tmp_path_factory: pytest.TempPathFactory, study: str) -> Path:
    out = tmp_path_factory.mktemp(f"report-{study}") / "run"
    result = runner.invoke(
        app, ["run", "--study", study, "--profile", "smoke", "--out", str(out), "--no-report", "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def ao_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = _smoke(tmp_path_factory, "ao-knee")
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    return run


def test_ao_smoke_report_has_every_section_and_figure(ao_run: Path) -> None:
    text = _check_markdown(ao_run / "report.md")
    heads = _headings(text)
    for key in (
        "findings",
        "provenance",
        "data",
        "costs",
        "ao",
        "dhs",
        "ranges",
        "examples",
        "dice",
        "search",
        "training",
    ):
        assert SECTIONS[key] in heads, key
    assert SECTIONS["sl"] not in heads
    assert "synthetic procedural knee phantom, not patient data" in text.lower()
    assert SSIM_CONVENTIONS["wang"] in text
    assert "replayed" in text and "Wilcoxon" in text
    for name in (
        "ao-landscapes.png",
        "ao-differences.png",
        "dhs-kept.png",
        "examples.png",
        "search.png",
        "dice-landscapes.png",
    ):
        assert f"figures/{name}" in text


def test_ao_smoke_summary_numbers_match_the_run_files(ao_run: Path) -> None:
    s = report_summary(ao_run)
    json.dumps(s, allow_nan=False)
    costs = pd.read_csv(ao_run / "costs.csv").set_index("model")
    all_base = costs[costs.kind == "baseline"].device_seconds.sum()
    for m, ratio in s["costs"]["ratio_all_baselines_over"].items():
        assert ratio == pytest.approx(all_base / costs.loc[m, "device_seconds"])
    r = pd.read_csv(ao_run / "results.csv")
    rp = r[r.metric == "rpsnr"]
    base_means = rp[rp.model.str.startswith("baseline-")].groupby("model").value.mean()
    best = s["ao"]["baseline"]["best_trained"]
    assert best["model"] == base_means.idxmax() and best["value"] == pytest.approx(base_means.max())
    for m, v in s["ao"]["models"].items():
        means = rp[rp.model == m].groupby(["lam1", "lam2"]).value.mean()
        assert v["optimum"]["value"] == pytest.approx(means.max())
        assert (v["optimum"]["lam1"], v["optimum"]["lam2"]) == pytest.approx(means.idxmax())
    kept = np.load(ao_run / "eval" / "hyper-S-dhs-dhs-kept.npz")["lams"]
    assert s["dhs"]["hyper-S-dhs"]["n"] == len(kept)
    assert s["dhs"]["hyper-S-dhs"]["mean"] == pytest.approx(kept.mean(0).tolist(), rel=1e-5)
    ss = pd.read_csv(ao_run / "search_summary.csv")
    assert s["search"]["grid_optimum"] == pytest.approx(ss.grid_optimum.iloc[0])
    assert s["findings"] and all(isinstance(f, str) for f in s["findings"])


def test_ao_report_fails_on_emptied_results_through_the_cli(ao_run: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(ao_run, broken, ignore=shutil.ignore_patterns("models", "checkpoints", "figures", "report.md"))
    (broken / "results.csv").write_text("")
    result = runner.invoke(app, ["report", str(broken)])
    assert result.exit_code == 1
    assert "results.csv: empty file" in _error_line(result)
    assert not (broken / "report.md").exists()


@pytest.mark.slow
def test_sl_smoke_report(tmp_path_factory: pytest.TempPathFactory) -> None:
    run = _smoke(tmp_path_factory, "sl-brain-cs")
    md = write_report(run)
    text = _check_markdown(md)
    heads = _headings(text)
    for key in ("findings", "provenance", "costs", "sl", "examples", "dice", "search"):
        assert SECTIONS[key] in heads, key
    assert SECTIONS["ao"] not in heads
    assert "every split shares its anatomy" in text
    s = report_summary(run)
    assert {g["metric"] for g in s["sl"]["gaps"]} == {"psnr", "ssim", "mae", "hfen"}
    assert "figures/sl-curves.png" in text and "figures/dice.png" in text
