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


def fake_ao_run(values: dict[tuple[float, float], list[float]], replicates: int = 1) -> SimpleNamespace:
    """Baselines at each λ with one value per (replicate, subject) unit: ``values[λ][i]`` is unit i, replicate
    ``i % replicates``; two slices per unit at value ± 0.25 (the unit mean is the value)."""
    rows = []
    for (l1, l2), per_unit in values.items():
        name = f"baseline-{l1:g}-{l2:g}"
        for i, v in enumerate(per_unit):
            rows += [
                {
                    "model": name,
                    "lam1": l1,
                    "lam2": l2,
                    "slice": f"subj{i}/s{k}",
                    "subject": f"subj{i}",
                    "replicate": i % replicates,
                    "metric": "rpsnr",
                    "value": v + off,
                }
                for k, off in enumerate((-0.25, 0.25))
            ]
    results = pd.DataFrame(rows)
    names = list(dict.fromkeys(results.model))
    lams = {f"baseline-{a:g}-{b:g}": (a, b) for a, b in values}
    return SimpleNamespace(n_lams=2, baselines=names, results=results, baseline_lam=lambda m: lams[m])


def test_regularisation_check_pairs_units_against_pure_dc_with_a_ci_over_replicates() -> None:
    run = fake_ao_run(
        {
            (1.0, 0.3): [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            (1.0, 0.9): [0.9, 2.1, 2.9, 4.1, 5.0, 6.0],
            (0.3, 0.3): [1.5, 2.9, 3.2, 4.6, 5.5, 6.1],
            (0.9, 0.9): [0.0] * 6,
        },
        replicates=3,
    )
    c = ao_regularisation_check(run)
    # best pure-DC baseline by mean: (1, 0.3) 3.5 vs (1, 0.9) 3.5 -> tie, first wins; best regularised: (0.3, 0.3)
    assert c["pure_dc_lam"] == [1.0, 0.3] and c["regularised_lam"] == [0.3, 0.3]
    diff = np.array([0.5, 0.9, 0.2, 0.6, 0.5, 0.1])  # per unit; unit i belongs to replicate i % 3
    per_rep = np.array([diff[[0, 3]].mean(), diff[[1, 4]].mean(), diff[[2, 5]].mean()])
    assert c["diff"] == pytest.approx(per_rep.mean())
    lo, hi = stats.t.interval(0.95, 2, loc=per_rep.mean(), scale=per_rep.std(ddof=1) / np.sqrt(3))
    assert c["ci"] == pytest.approx([lo, hi])
    assert c["p"] == pytest.approx(stats.wilcoxon(diff).pvalue)
    assert c["n_units"] == 6 and c["n_replicates"] == 3 and c["helps"] is bool(lo > 0)
    text = " ".join(ao_regularisation_lines(c, "AO: median rule"))
    assert "over 6 units" in text and "Loss scales: AO: median rule" in text


def test_regularisation_that_does_not_help_one_replicate_and_grids_without_pure_dc() -> None:
    worse = fake_ao_run({(1.0, 0.5): [1.0, 2.0, 3.0, 4.0], (0.5, 0.5): [0.5, 2.2, 2.6, 4.5]}, replicates=2)
    c = ao_regularisation_check(worse)
    assert c["helps"] is False and "not shown to improve" in ao_regularisation_lines(c, None)[0]
    # one replicate: slices and subjects give no interval over training seeds, so no verdict
    one = ao_regularisation_check(fake_ao_run({(1.0, 0.5): [1.0, 2.0, 3.0], (0.5, 0.5): [2.0, 3.0, 4.0]}))
    assert one["helps"] is None and one["diff"] == pytest.approx(1.0)
    assert "not testable at this scale" in ao_regularisation_lines(one, None)[0]
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
