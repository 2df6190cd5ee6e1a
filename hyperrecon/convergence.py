"""Validation loss during training and the convergence check of every trained model (issue 15, item 3).

A trained model's result is only comparable with another's when both have stopped improving. While a model trains,
:class:`ValidationTracker` (a training callback, :func:`hyperrecon.training.train`) evaluates a fixed validation
objective every ``every`` steps and at the end:

- reconstruction models: the mean composite loss of the study (the loss they were trained on) over the validation
  slices, at the model's own λ (baselines) or averaged over a fixed λ grid (conditional models: 5 points for
  k = 1, 3 x 3 for k = 2), in eval mode (BatchNorm running statistics), no gradients;
- the segmentation net: 1 - mean hard Dice on the validation slices (ground-truth images).

:func:`convergence` then compares the validation loss at the end with the one a quarter of the run earlier:
``rel_change = (L(0.75 T) - L(T)) / |L(T)|`` (positive: still falling). A model is **converged** when
``|rel_change| < REL_TOL`` (2 %): over the last quarter of its training the validation loss changed by less than
2 % either way (one that still falls has not converged; one that rises, from instability or over-fitting, is not
settled either).
``write_convergence_csv`` collects one row per model into ``convergence.csv`` of the run folder; the report
marks findings that rest on an unconverged model (``unconverged_models``). The segmentation net's row says
whether its validation Dice plateaued (:mod:`hyperrecon.segref`) instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

REL_TOL = 0.02
TAIL = 0.25
N_EVALS = 20
CONVERGENCE_COLUMNS = [
    "model",
    "kind",
    "steps",
    "n_evals",
    "val_loss_first",
    "val_loss_tail_start",
    "val_loss_final",
    "rel_change_last_quarter",
    "rel_tol",
    "converged",
]


def eval_every(steps: int, n_evals: int = N_EVALS) -> int:
    """Steps between validation evaluations: about ``n_evals`` of them over ``steps``."""
    return max(1, steps // n_evals)


class ValidationTracker:
    """Training callback: ``objective(model) -> float`` every ``every`` steps (at ``probe`` events, the training
    timer paused) and at the end, in eval mode.

    ``history``: ``[{"step": s, "val_loss": v}, ...]``. ``path`` (optional): a JSON file rewritten (atomically) at
    each evaluation, so that a resumed training keeps the evaluations of the interrupted attempt (those at steps up
    to the resume step).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        objective: Callable[[torch.nn.Module], float],
        steps: int,
        *,
        every: int | None = None,
        path: Path | None = None,
    ) -> None:
        self.model, self.objective, self.steps = model, objective, steps
        self.every = every if every is not None else eval_every(steps)
        self.path = path
        self.history: list[dict[str, float]] = []

    def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event == "start":
            self.history = []
            if info.get("resumed") and self.path is not None and self.path.exists():
                from .io import read_json

                saved = read_json(self.path)
                self.history = [r for r in saved.get("history", []) if r["step"] <= info["step"]]
        elif event == "probe":  # emitted at probe_steps() with the training timer paused
            step = int(info["step"])
            if step % self.every == 0:
                self.evaluate(step)
        elif event == "end":  # after the last step, outside the timed training
            self.evaluate(int(info["total"]))

    def probe_steps(self) -> list[int]:
        """The training steps (before the last) after which this tracker evaluates; pass them to
        :func:`hyperrecon.training.train` as ``probe_steps`` so that validation does not count as training time."""
        return list(range(self.every, self.steps, self.every))

    def evaluate(self, step: int) -> float:
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                value = float(self.objective(self.model))
        finally:
            self.model.train(was_training)
        self.history = [r for r in self.history if r["step"] != step] + [{"step": step, "val_loss": value}]
        if self.path is not None:
            from .io import write_json

            write_json(self.path, {"history": self.history})
        return value


def recon_val_objective(
    task, lams: Sequence[Sequence[float]], *, batch_size: int = 32, precision: str = "fp32"
) -> Callable[[torch.nn.Module], float]:
    """Mean composite loss of ``task`` (a validation :class:`~hyperrecon.tasks.ReconTask`) over its samples and
    the λ rows ``lams`` (each a list of k values)."""
    lam_rows = [torch.tensor([float(v) for v in lam], dtype=torch.float32) for lam in lams]

    def objective(model: torch.nn.Module) -> float:
        device = next(model.parameters()).device
        total, count = 0.0, 0
        for lam in lam_rows:
            for start in range(0, task.n_samples, batch_size):
                idx = torch.arange(start, min(start + batch_size, task.n_samples))
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                    values, _, _ = task.batch_loss(model, idx, lam.expand(len(idx), -1))
                total += float(values.float().sum())
                count += len(idx)
        return total / count

    return objective


def val_lam_grid(n_lams: int) -> list[list[float]]:
    """The fixed λ of a conditional model's validation objective: 5 points on [0, 1], or 3 x 3 for k = 2."""
    axis = [0.0, 0.25, 0.5, 0.75, 1.0] if n_lams == 1 else [0.0, 0.5, 1.0]
    if n_lams == 1:
        return [[v] for v in axis]
    return [[a, b] for a in axis for b in axis]


def convergence(
    history: Sequence[dict[str, float]], steps: int, *, tail: float = TAIL, rel_tol: float = REL_TOL
) -> dict[str, Any]:
    """The convergence check of one model from its validation ``history`` (module doc).

    Returns ``{n_evals, val_loss_first, val_loss_tail_start, val_loss_final, rel_change_last_quarter, rel_tol,
    converged}``; with fewer than two evaluations, or none at or before ``(1 - tail) * steps``, the change is NaN
    and ``converged`` is None (unknown).
    """
    rows = sorted(history, key=lambda r: r["step"])
    out: dict[str, Any] = {
        "n_evals": len(rows),
        "val_loss_first": math.nan,
        "val_loss_tail_start": math.nan,
        "val_loss_final": math.nan,
        "rel_change_last_quarter": math.nan,
        "rel_tol": rel_tol,
        "converged": None,
    }
    if not rows:
        return out
    out["val_loss_first"], out["val_loss_final"] = rows[0]["val_loss"], rows[-1]["val_loss"]
    cut = (1.0 - tail) * steps
    before = [r for r in rows[:-1] if r["step"] <= cut]
    if not before:
        return out
    start, final = before[-1]["val_loss"], rows[-1]["val_loss"]
    out["val_loss_tail_start"] = start
    if not (math.isfinite(start) and math.isfinite(final)) or final == 0:
        return out
    change = (start - final) / abs(final)
    out["rel_change_last_quarter"] = change
    out["converged"] = bool(abs(change) < rel_tol)
    return out


def write_convergence_csv(run_dir: Path, models: Sequence[tuple[str, str]]) -> Path | None:
    """``convergence.csv``: one row per ``(name, kind)`` whose ``jobs/<name>.json`` holds a ``val_history``."""
    import pandas as pd

    from .io import read_json, write_csv
    from .runs.folder import RunFolder

    folder = RunFolder(run_dir)
    rows = []
    for name, kind in models:
        path = folder.job_record(name)
        if not path.exists():
            continue
        info = read_json(path)
        if "val_history" not in info:
            continue
        steps = int(info.get("cost", {}).get("steps", 0)) or max((r["step"] for r in info["val_history"]), default=0)
        # a job's own verdict wins (the segmentation net: whether its validation Dice plateaued)
        check = info.get("convergence") or convergence(info["val_history"], steps)
        rows.append({"model": name, "kind": kind, "steps": steps, **{k: check.get(k) for k in CONVERGENCE_COLUMNS[3:]}})
    if not rows:
        return None
    out = folder.table("convergence.csv")
    write_csv(out, pd.DataFrame(rows, columns=CONVERGENCE_COLUMNS))
    return out


def unconverged_models(run_dir: Path) -> set[str]:
    """Models of a run whose convergence check failed (``converged`` false); empty without ``convergence.csv``."""
    import pandas as pd

    from .runs.folder import RunFolder

    path = RunFolder(run_dir).table("convergence.csv")
    if not path.exists():
        return set()
    table = pd.read_csv(path)
    return set(table.loc[table["converged"].astype(str).str.lower() == "false", "model"])
