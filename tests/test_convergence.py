"""Validation-loss tracking, the convergence check, the segmentation plateau and the Dice references (issue 15)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from hyperrecon.convergence import (
    ValidationTracker,
    convergence,
    recon_val_objective,
    unconverged_models,
    val_lam_grid,
    write_convergence_csv,
)
from hyperrecon.io import write_json
from hyperrecon.segref import dice_references, dice_usable, per_slice_dice, train_until_plateau


def hist(values, steps=None):
    steps = steps or [10 * (i + 1) for i in range(len(values))]
    return [{"step": s, "val_loss": v} for s, v in zip(steps, values, strict=True)]


def test_convergence_hand_computed() -> None:
    # 100 steps, evaluations every 10: the last quarter starts at step 75 -> the evaluation at step 70
    values = [1.0, 0.8, 0.6, 0.5, 0.45, 0.42, 0.40, 0.39, 0.385, 0.38]
    c = convergence(hist(values), 100)
    assert c["val_loss_tail_start"] == 0.40 and c["val_loss_final"] == 0.38
    assert c["rel_change_last_quarter"] == pytest.approx((0.40 - 0.38) / 0.38)
    assert c["converged"] is False  # 5.3 % still falling
    flat = convergence(hist([1.0, 0.5, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.399, 0.398]), 100)
    assert flat["converged"] is True and flat["rel_change_last_quarter"] == pytest.approx(0.002 / 0.398)
    rising = convergence(hist([1.0, 0.5, 0.4, 0.4, 0.4, 0.4, 0.4, 0.45, 0.5, 0.6]), 100)
    assert rising["converged"] is False and rising["rel_change_last_quarter"] < 0
    unknown = convergence(hist([1.0]), 100)
    assert unknown["converged"] is None and math.isnan(unknown["rel_change_last_quarter"])


def test_tracker_evaluates_on_schedule_in_eval_mode_and_restores_mode(tmp_path) -> None:
    model = torch.nn.BatchNorm1d(2)
    seen = []

    def objective(m):
        seen.append(m.training)
        return float(len(seen))

    tr = ValidationTracker(model, objective, 20, every=5, path=tmp_path / "v.json")
    model.train()
    tr("start", {"step": 0, "resumed": False})
    assert tr.probe_steps() == [5, 10, 15]  # the training loop emits "probe" there, its timer paused
    for s in range(1, 21):
        tr("step", {"step": s, "total": 20})  # steps alone evaluate nothing (they are timed as training)
        if s in tr.probe_steps():
            tr("probe", {"step": s, "total": 20})
    tr("end", {"step": 20, "total": 20})
    assert [r["step"] for r in tr.history] == [5, 10, 15, 20] and seen == [False] * 4 and model.training
    # a resumed run keeps the evaluations up to its resume step
    again = ValidationTracker(model, objective, 20, every=5, path=tmp_path / "v.json")
    again("start", {"step": 12, "resumed": True})
    assert [r["step"] for r in again.history] == [5, 10]


def test_recon_val_objective_is_the_mean_composite_loss() -> None:
    from hyperrecon.losses import CompositeLoss
    from hyperrecon.models import UNet
    from hyperrecon.tasks import ReconTask

    g = torch.Generator().manual_seed(0)
    targets = torch.rand(5, 1, 16, 16, generator=g)
    inputs = torch.cat([targets + 0.1 * torch.randn(5, 1, 16, 16, generator=g), torch.zeros(5, 1, 16, 16)], 1)
    task = ReconTask(inputs, targets, None, None, CompositeLoss(["mae", "mse"], [1.0, 2.0]))
    model = UNet(width=4).eval()
    obj = recon_val_objective(task, [[0.0], [1.0]], batch_size=2)
    with torch.no_grad():
        out = model(inputs)
    mae = (out - targets).abs().flatten(1).mean(1)
    mse = (out - targets).square().flatten(1).mean(1)
    expected = float(torch.cat([mae, mse / 2]).mean())
    with torch.no_grad():
        assert obj(model) == pytest.approx(expected, rel=1e-5)
    assert val_lam_grid(1) == [[0.0], [0.25], [0.5], [0.75], [1.0]] and len(val_lam_grid(2)) == 9


def test_convergence_csv_and_unconverged(tmp_path) -> None:
    (tmp_path / "jobs").mkdir()
    write_json(
        tmp_path / "jobs" / "a.json",
        {"cost": {"steps": 100}, "val_history": hist([1, 0.5, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4])},
    )
    write_json(
        tmp_path / "jobs" / "b.json",
        {"cost": {"steps": 100}, "val_history": hist([1, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])},
    )
    write_json(tmp_path / "jobs" / "c.json", {"cost": {"steps": 100}})  # no history: no row
    # the segmentation job states its own verdict (plateau), which wins over the 2 % rule
    seg_hist = hist([0.5, 0.3, 0.2, 0.15, 0.12, 0.11, 0.1, 0.095, 0.09, 0.088])
    write_json(
        tmp_path / "jobs" / "seg.json",
        {
            "cost": {"steps": 100},
            "val_history": seg_hist,
            "convergence": {**convergence(seg_hist, 100), "converged": True},
        },
    )
    write_convergence_csv(tmp_path, [("a", "baseline"), ("b", "hyper"), ("c", "film"), ("d", "seg"), ("seg", "seg")])
    table = pd.read_csv(tmp_path / "convergence.csv")
    assert list(table.model) == ["a", "b", "seg"] and list(table.steps) == [100, 100, 100]
    assert convergence(seg_hist, 100)["converged"] is False
    assert unconverged_models(tmp_path) == {"b"}


def test_plateau_stops_early_and_budget_caps() -> None:
    calls = []

    class FakeTracker:
        def __init__(self, curve):
            self.curve, self.history = curve, []

        def evaluate(self, step):
            self.history.append({"step": step, "val_loss": 1 - self.curve(step)})

    plateau = FakeTracker(lambda s: min(0.8, s / 100))  # Dice rises to 0.8 at step 80, then flat
    out = train_until_plateau(lambda t: calls.append(t) or t, plateau, 1000, chunk=10, patience=3)
    assert out["plateaued"] and out["steps"] == 110 and out["best_val_dice"] == pytest.approx(0.8)
    assert calls == list(range(10, 120, 10))
    rising = FakeTracker(lambda s: s / 1000)
    out = train_until_plateau(lambda t: t, rising, 100, chunk=10, patience=3)
    assert not out["plateaued"] and out["steps"] == 100


def test_the_net_of_the_best_dice_is_kept_not_the_last() -> None:
    """Dice peaks at 0.72 (step 60) and falls: training stops after `patience` chunks without a new best, and
    `keep_best` was last called at the peak, so the caller keeps that net (early stopping with restore)."""

    class Tracker:
        def __init__(self, dice):
            self.dice, self.history = dice, []

        def evaluate(self, step):
            self.history.append({"step": step, "val_loss": 1 - self.dice[step]})

    dice = {10: 0.2, 20: 0.5, 30: 0.5, 40: 0.6, 50: 0.6, 60: 0.72, 70: 0.71, 80: 0.70, 90: 0.65, 100: 0.8}
    kept: list[int] = []
    out = train_until_plateau(lambda t: t, Tracker(dice), 100, chunk=10, patience=3, keep_best=kept.append)
    assert kept == [10, 20, 40, 60]  # a tie (step 30, 50) keeps the earlier net
    assert out["steps"] == 90 and out["plateaued"]
    assert out["best_step"] == 60 and out["best_val_dice"] == pytest.approx(0.72)


def test_dice_references_ceiling_and_floor() -> None:
    """A 'segmenter' that thresholds the image at 0.5: Dice 1 on the ground truth, lower on a blurred input."""

    class Threshold(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            fg = (x[:, :1] > 0.5).float()
            return torch.cat([1 - fg, fg], 1) + 0 * self.p

    from hyperrecon.evaluation import EvalData
    from hyperrecon.metrics import mean_dice

    targets = torch.zeros(2, 1, 8, 8)
    targets[:, :, 2:6, 2:6] = 1.0
    labels = targets[:, 0].long()
    degraded = targets.clone()
    degraded[0, :, 2:4, 2:6] = 0.3  # half the square lost in slice 0
    data = EvalData(torch.cat([degraded, torch.zeros_like(degraded)], 1), targets, degraded, labels, ["s/0", "s/1"])
    refs = dice_references(Threshold(), data, 2)
    assert refs["ceiling"] == pytest.approx(1.0)
    expected_floor = float(mean_dice((degraded[:, 0] > 0.5).long(), labels, 2).mean())
    assert refs["floor"] == pytest.approx(expected_floor) and refs["floor"] == pytest.approx((2 * 8 / (8 + 16) + 1) / 2)
    assert per_slice_dice(Threshold(), degraded, labels, 2).tolist() == pytest.approx([2 * 8 / 24, 1.0])
    assert dice_usable(0.9, True) and not dice_usable(0.5, True) and not dice_usable(0.9, False)
    assert not dice_usable(float("nan"))
    assert np.isfinite(refs["ceiling"])


def test_a_smoke_run_records_convergence_dice_references_and_dhs_steps(tmp_path) -> None:
    """End to end (ao-knee, smoke): every trained model has a convergence row and a validation history, the
    segmentation net its ceiling/floor, the DHS model its kept λ with steps; the report shows all three."""
    from typer.testing import CliRunner

    from hyperrecon.cli import app
    from hyperrecon.config import load_study
    from hyperrecon.io import read_json
    from hyperrecon.jobs import recon_models

    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", "--study", "ao-knee", "--profile", "smoke", "--out", str(out)])
    assert result.exit_code == 0, result.output
    study = load_study("ao-knee", "smoke")
    table = pd.read_csv(out / "convergence.csv")
    assert set(table.model) == {m for m, _, _ in recon_models(study)} | {"seg"}
    steps = set(table[table.model != "seg"].steps)
    assert steps == {study.train.steps}  # equal budgets in the smoke profile too
    for name, _, _ in recon_models(study):
        hist_ = read_json(out / "jobs" / f"{name}.json")["val_history"]
        assert hist_[-1]["step"] == study.train.steps and all(np.isfinite(r["val_loss"]) for r in hist_)
    ref = read_json(out / "jobs" / "seg.json")["dice_reference"]
    per = pd.read_csv(out / "dice_reference.csv")
    assert ref["ceiling"] == pytest.approx(per[per.reference == "ceiling"].value.mean())
    assert ref["floor"] == pytest.approx(per[per.reference == "floor"].value.mean())
    kept = np.load(out / "eval" / "hyper-S-dhs-dhs-kept.npz")
    assert len(kept["steps"]) == len(kept["lams"])
    assert int(kept["warmup_steps"]) == study.hyper.sampler_params["dhs"].get("warmup_steps", 0)
    # B = 4, 2 λ groups, top_k 2: one kept λ (one row) per step
    assert list(kept["steps"]) == list(range(study.train.steps))
    report = (out / "report.md").read_text()
    assert "Training budget and convergence" in report and "References: the segmentation net" in report
    assert "p (vs uniform)" in report


def test_the_segmentation_net_trains_at_a_constant_rate_under_a_cosine_study(tmp_path) -> None:
    """The segmentation net stops when its Dice plateaus, chunk by chunk: a cosine schedule over each chunk would
    anneal the rate to ~0 at every chunk's end and fake a plateau. Every logged step keeps the study's rate."""
    from typer.testing import CliRunner

    from hyperrecon.cli import app

    out = tmp_path / "run"
    overrides = ["train.lr_schedule=cosine", "segmentation.steps=40", "train.lr=0.002"]
    args = ["run", "--study", "sl-knee-cs", "--profile", "smoke", "--out", str(out), "--no-report", "--device", "cpu"]
    result = CliRunner().invoke(app, [*args, *[a for o in overrides for a in ("--set", o)]])
    assert result.exit_code == 0, result.output
    seg = json.loads((out / "jobs" / "seg.json").read_text())
    steps = [int(r["step"]) for r in seg["history"]]
    assert max(steps) > 10  # more than one 10-step chunk trained
    assert all(r["lr"] == pytest.approx(0.002) for r in seg["history"])
    # the net kept is the one of the best validation Dice: recompute it from the saved weights
    from hyperrecon.runs.context import RunContext
    from hyperrecon.runs.folder import RunFolder
    from hyperrecon.runs.orchestrate import study_from_dict_resolved
    from hyperrecon.segref import per_slice_dice

    ref = seg["dice_reference"]
    dice = [1 - r["val_loss"] for r in seg["val_history"]]
    assert ref["best_val_dice"] == pytest.approx(max(dice))
    assert ref["best_step"] == seg["val_history"][dice.index(max(dice))]["step"]
    info = RunFolder(out).read_info()
    study = study_from_dict_resolved(info.study)
    ctx = RunContext(info.folder.root, study, "cpu", "fp32")
    val = ctx.eval_data("val", study.search.n_val)
    kept = per_slice_dice(ctx.load_model("seg"), val.targets, val.labels, int(ctx.bundle.n_classes)).mean()
    assert float(kept) == pytest.approx(ref["best_val_dice"], abs=1e-3)  # bf16 training vs this fp32 context
    # the reconstruction models keep the study's cosine: their rate falls over training
    base = json.loads((out / "jobs" / "baseline-0.json").read_text())["history"]
    assert base[-1]["lr"] < base[0]["lr"]


def test_the_dice_reference_spans_every_replicate_and_the_weakest_net_decides(tmp_path) -> None:
    """Each replicate trains its own segmentation net: the report's ceiling is their mean with a t interval
    (scipy), and a Dice finding needs every net at the bar (sl-brain-cs standard: 0.720 / 0.691 / 0.700, where
    replicate 0 alone read as usable)."""
    from scipy import stats as sstats

    from hyperrecon.io import write_json
    from hyperrecon.reporting.checks import dice_reference_lines
    from hyperrecon.segref import read_reference

    ceilings, floors = [0.720, 0.691, 0.700], [0.24, 0.30, 0.38]
    for r, (c, f) in enumerate(zip(ceilings, floors, strict=True)):
        jobs = tmp_path / ("jobs" if r == 0 else f"replicates/r{r}/jobs")
        jobs.mkdir(parents=True)
        ref = {"ceiling": c, "floor": f, "plateaued": True, "steps": 270 + r, "best_step": 180 + r, "step_budget": 600}
        write_json(jobs / "seg.json", {"dice_reference": ref})
    ref = read_reference(tmp_path)
    assert ref is not None and ref["n_replicates"] == 3
    assert ref["ceiling"] == pytest.approx(np.mean(ceilings)) and ref["ceiling_min"] == pytest.approx(0.691)
    lo, hi = sstats.t.interval(0.95, 2, loc=np.mean(ceilings), scale=sstats.sem(ceilings))
    assert (ref["ceiling_lo"], ref["ceiling_hi"]) == pytest.approx((lo, hi))
    assert ref["floor"] == pytest.approx(np.mean(floors)) and ref["steps"] == [270, 271, 272]
    assert ref["usable"] is False  # mean 0.704 passes the bar, replicate 1 does not
    text = " ".join(dice_reference_lines({"reference": ref}))
    assert "lowest 0.691" in text and "No Dice finding" in text and "180 / 181 / 182" in text
