"""Metric parameters reach a run (issue 14): ``[evaluation] ssim_convention`` is the ``ssim`` metric's parameter
in the evaluation and search jobs, and the report names it. Two smoke runs that differ only in the convention,
with the search objective ``ssim`` so that the search jobs compute it too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from skimage.metrics import structural_similarity
from typer.testing import CliRunner

from hyperrecon.cli import app
from hyperrecon.metrics import SSIM_CONVENTIONS

# smaller search than the smoke profile (the point is which SSIM the jobs compute, not the search comparison)
SETS = [
    'search.objective="ssim"',
    'search.strategies=["random","tpe+median"]',
    'search.objective_pairs=[["ssim","hfen"]]',
    "search.workers=[1]",
    "search.seeds=2",
]


def _run(out: Path, convention: str, report: bool) -> Path:
    sets = [a for s in [f'evaluation.ssim_convention="{convention}"', *SETS] for a in ("--set", s)]
    args = ["run", "--study", "sl-knee-denoise", "--profile", "smoke", *sets, "--out", str(out)]
    result = CliRunner().invoke(app, args + ([] if report else ["--no-report"]))
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ssim-convention")
    return {"wang": _run(root / "wang", "wang", False), "fastmri": _run(root / "fastmri", "fastmri", True)}


def _values(run: Path, metric: str) -> pd.Series:
    r = pd.read_csv(run / "results.csv")
    r = r[r.metric == metric].set_index(["model", "lam1", "slice", "replicate"])["value"]
    return r.sort_index()


@pytest.mark.slow
def test_results_and_search_use_the_convention(runs: dict[str, Path]) -> None:
    wang, fastmri = (_values(runs[c], "ssim") for c in ("wang", "fastmri"))
    assert list(wang.index) == list(fastmri.index) and len(wang) > 0
    assert (np.abs(wang.to_numpy() - fastmri.to_numpy()) > 1e-4).mean() > 0.9  # nearly every row differs
    # the same trained models: every other metric is the same in both runs
    for metric in ("psnr", "mae", "hfen", "dice"):
        np.testing.assert_allclose(_values(runs["wang"], metric), _values(runs["fastmri"], metric), rtol=1e-6)
    # the search jobs: the baselines' validation SSIM (fidelity table) and the model searches' trial values
    fid = {c: pd.read_csv(runs[c] / "search" / "fidelity.csv").sort_values(["model", "step"]) for c in runs}
    assert np.abs(fid["wang"]["ssim"].to_numpy() - fid["fastmri"]["ssim"].to_numpy()).min() > 1e-4
    np.testing.assert_allclose(fid["wang"]["hfen"], fid["fastmri"]["hfen"], rtol=1e-6)
    # random search proposes the same λ whatever the values: the same trials, other SSIM values
    live = {c: pd.read_csv(runs[c] / "search" / "hyper-S-uniform.csv") for c in runs}
    live = {c: f[f.strategy == "random"].sort_values(["seed", "trial"]) for c, f in live.items()}
    np.testing.assert_array_equal(live["wang"]["lam1"], live["fastmri"]["lam1"])
    assert np.abs(live["wang"]["objective"].to_numpy() - live["fastmri"]["objective"].to_numpy()).min() > 1e-4


@pytest.mark.slow
def test_results_equal_skimage_in_each_convention(runs: dict[str, Path]) -> None:
    """The saved example reconstructions (first range slice, a few λ) scored by scikit-image with each
    convention's settings equal the ``ssim`` rows of that run's ``results.csv``."""
    settings = {
        "wang": lambda a, b: structural_similarity(
            a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0
        ),
        "fastmri": lambda a, b: structural_similarity(a, b, win_size=7, data_range=b.max()),
    }
    for conv, run in runs.items():
        images = np.load(run / "eval" / "hyper-S-uniform-images.npz")
        meta = pd.read_json(run / "eval" / "hyper-S-uniform-meta.json", typ="series")
        target = images["example_target"].astype(np.float64)
        r = pd.read_csv(run / "results.csv")
        r = r[(r.model == "hyper-S-uniform") & (r.metric == "ssim") & (r.slice == meta["examples"]["slice"])]
        for lam, recon in zip(images["example_lams"][:, 0], images["example_recons"], strict=True):
            got = r[np.isclose(r.lam1, lam)]["value"].item()
            assert got == pytest.approx(settings[conv](recon.astype(np.float64), target), abs=1e-4)
            other = settings["fastmri" if conv == "wang" else "wang"](recon.astype(np.float64), target)
            assert abs(got - other) > 1e-4


@pytest.mark.slow
def test_the_report_names_the_convention(runs: dict[str, Path]) -> None:
    text = (runs["fastmri"] / "report.md").read_text()
    assert SSIM_CONVENTIONS["fastmri"] in text and SSIM_CONVENTIONS["wang"] not in text
