"""Report blocks of the training-side checks: AO regularisation vs data consistency, convergence, Dice references."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hyperrecon.reporting.checks import (
    ao_regularisation_check,
    ao_regularisation_lines,
    convergence_lines,
    dice_reference_lines,
)


def fake_ao_run(values: dict[tuple[float, float], list[float]]) -> SimpleNamespace:
    rows = []
    for (l1, l2), per_slice in values.items():
        name = f"baseline-{l1:g}-{l2:g}"
        rows += [
            {"model": name, "lam1": l1, "lam2": l2, "slice": i, "metric": "rpsnr", "value": v}
            for i, v in enumerate(per_slice)
        ]
    results = pd.DataFrame(rows)
    names = list(dict.fromkeys(results.model))
    lams = {f"baseline-{a:g}-{b:g}": (a, b) for a, b in values}
    return SimpleNamespace(n_lams=2, baselines=names, results=results, baseline_lam=lambda m: lams[m])


def test_regularisation_check_pairs_slices_against_pure_dc() -> None:
    run = fake_ao_run(
        {
            (1.0, 0.3): [1.0, 2.0, 3.0, 4.0],
            (1.0, 0.9): [0.9, 2.1, 2.9, 4.1],
            (0.3, 0.3): [1.5, 2.9, 3.2, 4.6],
            (0.9, 0.9): [0.0, 0.0, 0.0, 0.0],
        }
    )
    c = ao_regularisation_check(run)
    # best pure-DC baseline by mean: (1, 0.3) 2.5 vs (1, 0.9) 2.5 -> tie, first wins; best regularised: (0.3, 0.3)
    assert c["pure_dc_lam"] == [1.0, 0.3] and c["regularised_lam"] == [0.3, 0.3]
    diff = np.array([0.5, 0.9, 0.2, 0.6])
    assert c["diff"] == pytest.approx(diff.mean())
    half = stats.t.ppf(0.975, 3) * diff.std(ddof=1) / 2
    assert c["ci"] == pytest.approx([diff.mean() - half, diff.mean() + half])
    assert c["p"] == pytest.approx(stats.ttest_1samp(diff, 0).pvalue) and c["helps"]
    text = " ".join(ao_regularisation_lines(c, "AO: median rule"))
    assert "improve** on data consistency" in text and "Loss scales: AO: median rule" in text


def test_regularisation_that_does_not_help_and_grids_without_pure_dc() -> None:
    run = fake_ao_run({(1.0, 0.5): [1.0, 2.0, 3.0], (0.5, 0.5): [0.5, 2.2, 2.6]})
    c = ao_regularisation_check(run)
    assert not c["helps"] and "do not improve" in ao_regularisation_lines(c, None)[0]
    assert ao_regularisation_check(fake_ao_run({(0.5, 0.5): [1.0], (0.9, 0.5): [2.0]})) is None


def test_convergence_lines_flag_unequal_budgets_and_unconverged_models() -> None:
    conv = {
        "baseline-0": {
            "kind": "baseline",
            "steps": 200,
            "val_loss_final": 0.1,
            "rel_change_last_quarter": 0.001,
            "rel_tol": 0.02,
            "converged": True,
        },
        "hyper-S-uniform": {
            "kind": "hyper",
            "steps": 300,
            "val_loss_final": 0.2,
            "rel_change_last_quarter": 0.05,
            "rel_tol": 0.02,
            "converged": False,
        },
    }
    text = "\n".join(convergence_lines(conv))
    assert "Unequal training budgets" in text and "**Not converged**: HyperRecon-S" in text
    conv["baseline-0"]["steps"] = 300
    conv["hyper-S-uniform"]["converged"] = True
    text = "\n".join(convergence_lines(conv))
    assert "Unequal" not in text and "Not converged" not in text
    assert convergence_lines(None) == []


def test_dice_reference_lines() -> None:
    good = {
        "reference": {
            "ceiling": 0.85,
            "floor": 0.4,
            "steps": 300,
            "step_budget": 500,
            "plateaued": True,
            "usable": True,
        }
    }
    text = " ".join(dice_reference_lines(good))
    assert "0.850" in text and "0.400" in text and "plateaued" in text and "No Dice finding" not in text
    low = {"reference": {**good["reference"], "ceiling": 0.3, "usable": False}}
    assert "No Dice finding" in " ".join(dice_reference_lines(low))
