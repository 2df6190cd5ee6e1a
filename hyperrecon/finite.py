"""Finiteness of the training loss, checked without a host synchronisation per step.

Each step :meth:`FiniteWatch.add` stacks the sums of the reduced loss, of the per-sample totals and of every named
loss part into one small vector and keeps ``isfinite`` of it *on the device* (a sum is non-finite when any of its
elements is). :meth:`FiniteWatch.check` reads the flags of all steps since the last check in one transfer, at the
points where the loop synchronises anyway (log records, checkpoints, the end), and raises a
:class:`~hyperrecon.errors.TrainingError` naming the *first* bad step, the non-finite loss terms of that step and
whether that batch's input data were non-finite: the same message a per-step check gives, but training may have run
on (at most one log window) before it is raised; nothing is written in between.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class FiniteWatch:
    """Device-side finiteness flags of the steps since the last :meth:`check`."""

    def __init__(self) -> None:
        self._flags: list[Tensor] = []  # per step: (2 + n_parts,) bool on the device
        self._steps: list[int] = []  # completed-step number of each entry (1-based)
        self._idx: list[Tensor] = []  # the batch's sample indices (CPU)
        self._names: list[list[str]] = []

    def __len__(self) -> int:
        return len(self._flags)

    def add(self, step: int, loss: Tensor, total: Tensor, parts: dict[str, Tensor], idx: Tensor) -> None:
        """Record step ``step`` (1-based): ``loss`` (), ``total`` (B,), ``parts`` name -> (B,) or (), ``idx`` (B,)."""
        sums = [loss.detach().float().reshape(()), total.detach().float().sum()]
        sums += [v.detach().float().sum() for v in parts.values()]
        self._flags.append(torch.isfinite(torch.stack(sums)))
        self._steps.append(step)
        self._idx.append(idx)
        self._names.append(list(parts))

    def clear(self) -> None:
        self._flags, self._steps, self._idx, self._names = [], [], [], []

    def first_bad(self) -> tuple[int, list[str], Tensor] | None:
        """(step, non-finite term names, batch indices) of the first non-finite step, or None; clears the record."""
        if not self._flags:
            return None
        # Steps with different numbers of parts cannot stack; the loss and totals (first two) always exist.
        ok = (
            [f.cpu() for f in self._flags]
            if len({f.numel() for f in self._flags}) > 1
            else list(torch.stack(self._flags).cpu())
        )  # one device-to-host transfer for the whole window
        found = None
        for flags, step, idx, names in zip(ok, self._steps, self._idx, self._names, strict=True):
            if not bool(flags.all()):
                found = (step, [n for n, good in zip(names, flags[2:].tolist(), strict=True) if not good], idx)
                break
        self.clear()
        return found

    def check(self, total_steps: int, task: Any) -> None:
        """Raise ``TrainingError`` if any recorded step was non-finite (see module doc)."""
        from .errors import TrainingError

        bad = self.first_bad()
        if bad is None:
            return
        step, bad_terms, idx = bad
        bad_data = task.non_finite_data(idx.cpu())
        what = []
        if bad_data:
            what.append(f"non-finite values in the batch's {', '.join(bad_data)}")
        what.append(f"non-finite loss terms: {', '.join(bad_terms)}" if bad_terms else "loss overflow (no single term)")
        raise TrainingError(f"training stopped at step {step} of {total_steps}: {'; '.join(what)}")
