"""The segmentation net trained until its Dice plateaus, and the Dice references of a run (issue 15, item 5).

A Dice score of a reconstruction means little without its range: the same segmentation net on the ground-truth
images gives the **ceiling** (what a perfect reconstruction could reach), on the zero-filled input (the
degraded image, magnitude) the **floor**. Both are measured on the test slices and stored with the results
(``dice_reference.csv``: ``reference, slice, value``; means in ``jobs/seg.json``).

Training (:func:`train_until_plateau`): chunks of ``chunk`` steps (about 1/20 of the budget, at least 10) with the
ordinary training loop, resumed from its checkpoint, at the study's learning rate held constant (the stopping step
is not known in advance, so a schedule such as the study's cosine cannot be laid over it); after each chunk the
mean hard Dice (background excluded) on the validation slices. Training stops when the best validation Dice has
not risen by more than ``min_delta`` (0.005) for ``patience`` (3) chunks, or at the step budget.
``plateaued`` says which. The net kept is the one of the best validation Dice (``keep_best`` is called whenever a
chunk sets a new best; early stopping with the best weights restored), not the last: at a constant rate the
validation Dice can fall after its peak (the standard sl-brain-cs run of commit b93eee7: 0.717 at step 180, 0.650
at 270 when it stopped, and the ceiling was measured with the latter).

A Dice finding needs a useful net: :func:`dice_usable` is false when the ceiling is below ``MIN_CEILING`` (0.7) or
the net did not plateau; the report then states no Dice finding.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .runs.folder import RunFolder

MIN_CEILING = 0.7
MIN_DELTA = 0.005
PATIENCE = 3
REFERENCE_FILE = "dice_reference.csv"


def chunk_steps(max_steps: int) -> int:
    return min(max_steps, max(10, max_steps // 20))


@torch.no_grad()
def per_slice_dice(
    seg_model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, n_classes: int, *, batch_size: int = 32
) -> torch.Tensor:
    """Hard mean Dice (background excluded) of ``seg_model``'s argmax on ``images`` (N, 1, H, W): ``(N,)``.
    The ``dice`` metric of the evaluation (:class:`hyperrecon.metrics.Dice`: images clipped to [0, 1])."""
    from .metrics import Dice

    dice = Dice()
    was = seg_model.training
    seg_model.eval()
    device = next(seg_model.parameters()).device
    out = []
    try:
        for s in range(0, images.shape[0], batch_size):
            x = images[s : s + batch_size].to(device)
            batch_labels = labels[s : s + batch_size].to(device)
            out.append(dice(x, x, labels=batch_labels, seg_model=seg_model, n_classes=n_classes).float().cpu())
    finally:
        seg_model.train(was)
    return torch.cat(out)


def dice_objective(images: torch.Tensor, labels: torch.Tensor, n_classes: int) -> Callable[[torch.nn.Module], float]:
    """``1 - mean Dice`` on fixed slices (a validation loss for :class:`~hyperrecon.convergence.ValidationTracker`)."""
    return lambda model: 1.0 - float(per_slice_dice(model, images, labels, n_classes).mean())


def train_until_plateau(
    train_chunk: Callable[[int], Any],
    tracker,
    max_steps: int,
    *,
    chunk: int | None = None,
    patience: int = PATIENCE,
    min_delta: float = MIN_DELTA,
    keep_best: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Call ``train_chunk(target_steps)`` (train, resuming, up to that many steps in all) chunk by chunk, evaluating
    ``tracker`` (a :class:`~hyperrecon.convergence.ValidationTracker` whose objective is 1 - Dice) after each,
    until the validation Dice plateaus or ``max_steps``. Evaluations already in ``tracker.history`` (a retried job)
    are kept and training continues after them. ``keep_best(step)`` is called right after an evaluation that sets
    a new best Dice (the caller saves that net). Returns ``{"steps", "plateaued", "best_val_dice", "best_step",
    "result"}``."""
    chunk = chunk or chunk_steps(max_steps)
    done = max((int(r["step"]) for r in tracker.history), default=0)
    result = None

    def stalled() -> bool:
        dice = [1.0 - r["val_loss"] for r in sorted(tracker.history, key=lambda r: r["step"])]
        if len(dice) <= patience:
            return False
        return max(dice[-patience:]) <= max(dice[:-patience]) + min_delta

    def best() -> tuple[float, int]:
        return max(((1.0 - r["val_loss"], -int(r["step"])) for r in tracker.history), default=(float("nan"), 0))

    while done < max_steps and not stalled():
        before = best()[0] if tracker.history else -float("inf")
        done = min(max_steps, done + chunk)
        result = train_chunk(done)
        tracker.evaluate(done)
        if keep_best is not None and best()[0] > before:  # the earliest step of the best Dice wins ties
            keep_best(done)
    if result is None:  # a retried job whose evaluations already show the end: load the final checkpoint
        result = train_chunk(done)
    dice, neg_step = best()
    return {"steps": done, "plateaued": stalled(), "best_val_dice": dice, "best_step": -neg_step, "result": result}


def dice_references(seg_model: torch.nn.Module, test, n_classes: int, *, batch_size: int = 32) -> dict[str, Any]:
    """Ceiling (ground truth) and floor (zero-filled) Dice on the test slices ``test`` (an ``EvalData``).

    Returns ``{"ceiling": mean, "floor": mean, "per_slice": {"ceiling": [...], "floor": [...]}, "ids": [...]}``."""
    if test.labels is None:
        raise ValueError("dice_references: the test slices have no label maps")
    per = {
        "ceiling": per_slice_dice(seg_model, test.targets, test.labels, n_classes, batch_size=batch_size),
        "floor": per_slice_dice(seg_model, test.degraded, test.labels, n_classes, batch_size=batch_size),
    }
    return {
        "ceiling": float(per["ceiling"].mean()),
        "floor": float(per["floor"].mean()),
        "per_slice": {k: v.tolist() for k, v in per.items()},
        "ids": list(test.ids),
    }


def write_reference_csv(run_dir: Path, refs: dict[str, Any]) -> Path:
    import pandas as pd

    from .io import write_csv

    rows = [
        {"reference": k, "slice": sid, "value": v}
        for k in ("ceiling", "floor")
        for sid, v in zip(refs["ids"], refs["per_slice"][k], strict=True)
    ]
    path = RunFolder(run_dir).table(REFERENCE_FILE)
    write_csv(path, pd.DataFrame(rows, columns=["reference", "slice", "value"]))
    return path


def dice_usable(ceiling: float | None, plateaued: bool | None = True, *, min_ceiling: float = MIN_CEILING) -> bool:
    """Whether Dice findings may be stated: the ceiling reaches ``min_ceiling`` and the net plateaued."""
    return ceiling is not None and ceiling == ceiling and ceiling >= min_ceiling and plateaued is not False


def read_reference(run_dir: Path) -> dict[str, Any] | None:
    """The segmentation nets' references of a run, over its replicates (each replicate trains its own net).

    Returns None without any, else ``{"ceiling", "floor"}`` (means over replicates), ``"ceiling_min"`` (the
    weakest replicate's), ``"ceiling_lo"``, ``"ceiling_hi"`` (95% t interval over replicates; NaN with one),
    ``"plateaued"`` (every net), ``"steps"``, ``"best_step"`` (per replicate, lists), ``"step_budget"``,
    ``"per_replicate"`` (each replicate's ``jobs/seg.json`` record) and ``"usable"``: every replicate's ceiling
    reaches ``MIN_CEILING`` and every net plateaued (a replicate's Dice values come from its own net, so one
    weak net is enough to make its Dice uninformative)."""
    from .io import read_json
    from .reporting.stats import t_interval

    folder = RunFolder(run_dir)
    records = []
    paths = [folder.job_record("seg")] + sorted(
        (folder.root / "replicates").glob("r*/jobs/seg.json"), key=lambda p: int(p.parts[-3][1:])
    )
    for path in paths:
        info = read_json(path).get("dice_reference") if path.exists() else None
        if info:
            records.append(info)
    if not records:
        return None
    ceilings = [float(r["ceiling"]) for r in records]
    ci = t_interval(ceilings)
    plateaued = all(r.get("plateaued") is not False for r in records)
    return {
        "ceiling": ci["mean"],
        "ceiling_lo": ci["lo"],
        "ceiling_hi": ci["hi"],
        "ceiling_min": min(ceilings),
        "floor": float(sum(float(r["floor"]) for r in records) / len(records)),
        "plateaued": plateaued,
        "steps": [r.get("steps") for r in records],
        "best_step": [r.get("best_step") for r in records],
        "step_budget": records[0].get("step_budget"),
        "n_replicates": len(records),
        "per_replicate": records,
        "usable": dice_usable(min(ceilings), plateaued),  # NaN ceilings fail there
    }
