"""The long-run reference of the best baseline (hyperrecon/long_reference.py): choice, arithmetic, files, report."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

from hyperrecon.cli import app
from hyperrecon.errors import ConfigError, RunError
from hyperrecon.long_reference import best_baseline, compare, run_long_reference

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def _table(model: str, values: dict[tuple[int, str, str], float]) -> pd.DataFrame:
    """Rows of a results table: {(replicate, subject, metric): value}, two slices per unit at that value ± 0.5."""
    rows = []
    for (rep, subject, metric), v in values.items():
        for k, off in enumerate((-0.5, 0.5)):
            rows.append(
                {
                    "model": model,
                    "lam1": 0.5,
                    "lam2": np.nan,
                    "slice": f"{subject}/s{k}",
                    "subject": subject,
                    "metric": metric,
                    "replicate": rep,
                    "value": v + off,
                }
            )
    return pd.DataFrame(rows)


def test_best_baseline_follows_each_metrics_direction() -> None:
    a = _table("baseline-0", {(0, "s1", "psnr"): 30.0, (0, "s1", "mae"): 0.02})
    b = _table("baseline-1", {(0, "s1", "psnr"): 31.0, (0, "s1", "mae"): 0.03})
    hyper = _table("hyper-M-uniform", {(0, "s1", "psnr"): 40.0, (0, "s1", "mae"): 0.001})
    results = pd.concat([a, b, hyper])
    baselines = ["baseline-0", "baseline-1"]
    assert best_baseline(results, baselines, "psnr") == "baseline-1"  # higher is better; the hyper is not a baseline
    assert best_baseline(results, baselines, "mae") == "baseline-0"  # lower is better
    with pytest.raises(RunError, match="no 'ssim' rows"):
        best_baseline(results, baselines, "ssim")


def test_compare_is_the_paired_difference_over_replicate_means() -> None:
    budget = {(r, s, "psnr"): 30.0 + r for r in range(3) for s in ("a", "b")}
    budget.update({(r, s, "mae"): 0.05 for r in range(3) for s in ("a", "b")})
    gains = {0: 1.0, 1: 2.0, 2: 1.5}  # per replicate, equal over its two subjects
    long = {(r, s, "psnr"): 30.0 + r + gains[r] for r in range(3) for s in ("a", "b")}
    long.update({(r, s, "mae"): 0.05 + 0.01 * (r - 1) for r in range(3) for s in ("a", "b")})
    out = {m["metric"]: m for m in compare(_table("b", budget), _table("b", long), "b", ["psnr", "mae"])}

    d = np.array(list(gains.values()))
    lo, hi = stats.t.interval(0.95, 2, loc=d.mean(), scale=d.std(ddof=1) / math.sqrt(3))
    psnr = out["psnr"]
    assert psnr["diff"]["mean_diff"] == pytest.approx(1.5)
    assert (psnr["diff"]["lo"], psnr["diff"]["hi"]) == pytest.approx((lo, hi))
    assert psnr["diff"]["n"] == 6 and psnr["diff"]["n_replicates"] == 3
    assert psnr["budget"]["mean"] == pytest.approx(31.0) and psnr["long"]["mean"] == pytest.approx(32.5)
    assert psnr["improved"] is True  # the interval lies above 0 and PSNR is higher-is-better
    # MAE: −0.01, 0, +0.01 over replicates: the interval straddles 0
    assert out["mae"]["diff"]["mean_diff"] == pytest.approx(0.0, abs=1e-12)
    assert out["mae"]["improved"] is False


def test_compare_without_replicates_gives_no_interval_and_no_verdict() -> None:
    budget = _table("b", {(0, "a", "psnr"): 30.0, (0, "b", "psnr"): 31.0})
    long = _table("b", {(0, "a", "psnr"): 32.0, (0, "b", "psnr"): 34.0})
    (row,) = compare(budget, long, "b", ["psnr"])
    assert row["diff"]["mean_diff"] == pytest.approx(2.5)
    assert math.isnan(row["diff"]["lo"]) and row["improved"] is None


@pytest.fixture(scope="module")
def sl_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("long-ref") / "run"
    args = ["run", "--study", "sl-knee-cs", "--profile", "smoke", "--out", str(out), "--device", "cpu"]
    result = runner.invoke(app, [*args, "--no-report", "--set", "replicates=2"])
    assert result.exit_code == 0, result.output
    return out


def test_a_run_gets_its_long_reference_and_the_report_shows_it(sl_run: Path) -> None:
    path = run_long_reference(sl_run, factor=2, device="cpu")
    ref = json.loads(path.read_text())
    results = pd.read_csv(sl_run / "results.csv")
    assert ref["model"] == best_baseline(results, sorted({m for m in results["model"] if "baseline" in m}))
    assert ref["steps"] == 2 * ref["budget_steps"] and ref["replicates"] == [0, 1]
    long = pd.read_csv(sl_run / "reference" / "long-baseline.csv")
    assert sorted(long["replicate"].unique()) == [0, 1]
    assert set(long["model"]) == {ref["model"]}
    # the same test slices as the run's own evaluation of that baseline
    own = results[(results["model"] == ref["model"]) & (results["metric"] == "psnr")]
    assert set(long.loc[long["metric"] == "psnr", "slice"]) == set(own["slice"])
    psnr = next(m for m in ref["metrics"] if m["metric"] == "psnr")
    assert psnr["diff"]["mean_diff"] == pytest.approx(psnr["long"]["mean"] - psnr["budget"]["mean"])
    assert all(r["convergence"]["n_evals"] >= 2 for r in ref["runs"])

    again = run_long_reference(sl_run, factor=2, device="cpu")  # resumes from its finished checkpoints
    assert pd.read_csv(sl_run / "reference" / "long-baseline.csv").equals(long)
    assert json.loads(again.read_text())["metrics"] == ref["metrics"]

    result = runner.invoke(app, ["report", str(sl_run)])
    assert result.exit_code == 0, result.output
    text = (sl_run / "report.md").read_text()
    assert "Long-run reference" in text and f"{ref['steps']} steps" in text
    summary = json.loads((sl_run / "summary.json").read_text())
    assert summary["long_reference"]["model"] == ref["model"]


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"factor": 1}, ConfigError, "--factor: expected an integer >= 2"),
        ({"replicates": [5]}, ConfigError, "--replicates: the run has replicates 0..1"),
    ],
)
def test_bad_options_name_the_option(sl_run: Path, kwargs: dict, error: type, words: str) -> None:
    before = sorted(p.name for p in sl_run.iterdir())
    with pytest.raises(error, match=words.replace(".", r"\.").replace("+", r"\+")):
        run_long_reference(sl_run, device="cpu", **kwargs)
    assert sorted(p.name for p in sl_run.iterdir()) == before


def test_the_script_gives_one_error_line_on_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmark" / "long_reference.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "run.json" in lines[0]


def test_the_script_writes_the_reference_and_its_copy(sl_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.json"
    script = str(ROOT / "benchmark" / "long_reference.py")
    args = [str(sl_run), "--factor", "3", "--replicates", "0", "--device", "cpu", "--out", str(copy)]
    proc = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ref = json.loads((sl_run / "reference" / "long-baseline.json").read_text())
    assert json.loads(copy.read_text()) == ref
    assert ref["factor"] == 3 and ref["replicates"] == [0]
    # one replicate: no interval over training seeds, hence no verdict
    assert all(m["diff"]["n_replicates"] == 1 and m["improved"] is None for m in ref["metrics"])
