"""The fidelity table: each baseline's validation metrics at fixed points of its training (a tabular benchmark in
the manner of HPOBench/YAHPO), which multi-fidelity strategies replay.

Rows (``search/fidelity.csv`` of a run; :data:`FIDELITY_COLUMNS` plus one column per metric): ``model``,
``lam1``, ``lam2`` (NaN for k=1), ``step`` (training steps done), ``train_seconds`` (training device seconds to
reach that step, validation passes excluded), ``eval_seconds`` (device seconds of that validation pass), then the
metric columns (``psnr``, ``hfen``, ``dice`` ...: means over the validation slices). The steps are
:func:`fidelity_steps` of the baselines' training length; the last one is the fully trained baseline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import ConfigError

FIDELITY_COLUMNS = ["model", "lam1", "lam2", "step", "train_seconds", "eval_seconds"]


def fidelity_steps(total: int, n: int, reduction_factor: int) -> list[int]:
    """Training steps at which a baseline's validation objective is recorded: ``s0 · η^i`` below ``total``, then
    ``total``, with ``s0 = max(1, total // η^(n-1))``. A geometric series, so the rungs of successive halving and
    Hyperband (``min_resource · η^r``) fall on recorded steps. E.g. ``(200, 4, 3) -> [7, 21, 63, 200]``,
    ``(4, 4, 3) -> [1, 3, 4]``, ``(n=1) -> [total]``."""
    if total < 1 or n < 1 or reduction_factor < 2:
        raise ConfigError(
            f"fidelity steps: `total >= 1, n >= 1, reduction_factor >= 2` must hold, "
            f"but got total={total}, n={n}, reduction_factor={reduction_factor}"
        )
    s0 = max(1, total // reduction_factor ** (n - 1))
    return sorted({s0 * reduction_factor**i for i in range(n - 1) if s0 * reduction_factor**i < total}) + [total]


@dataclass(frozen=True)
class FidelityTable:
    """The fidelity table as arrays: ``cells`` (C, k) λ of each trained baseline, ``steps`` (F,) ascending,
    ``values`` (C, F, M) of ``metrics`` (M names), ``train_seconds`` and ``eval_seconds`` (C, F), ``models`` (C,)."""

    cells: np.ndarray
    steps: np.ndarray
    values: np.ndarray
    train_seconds: np.ndarray
    eval_seconds: np.ndarray
    metrics: tuple[str, ...]
    models: tuple[str, ...]

    @classmethod
    def from_frame(
        cls, frame: pd.DataFrame, metrics: Sequence[str], n_lams: int, *, where: str = "fidelity table"
    ) -> FidelityTable:
        """Check and reshape a fidelity table; every cell must have every step (``ConfigError`` naming the first
        cell and step that lacks a row, a missing column or a λ outside [0, 1])."""
        if n_lams not in (1, 2):
            raise ConfigError(f"{where}: n_lams must be 1 or 2, got {n_lams!r}")
        lam_cols = ["lam1", "lam2"][:n_lams]
        need = [*lam_cols, "step", "train_seconds", *metrics]
        missing = [c for c in need if c not in frame.columns]
        if missing:
            raise ConfigError(f"{where}: expected columns {need}, missing {missing}")
        if frame.empty:
            raise ConfigError(f"{where}: no rows (no trained baseline to replay)")
        frame = frame.copy()
        if "eval_seconds" not in frame.columns:
            frame["eval_seconds"] = 0.0
        if "model" not in frame.columns:
            frame["model"] = ["baseline-" + "-".join(f"{v:g}" for v in r) for r in frame[lam_cols].to_numpy()]
        lams = frame[lam_cols].to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(lams)) or lams.min() < 0.0 or lams.max() > 1.0:
            raise ConfigError(f"{where}: λ values must lie in [0, 1], got {np.unique(lams).tolist()}")
        steps = np.array(sorted(frame["step"].astype(int).unique()))
        keys = [tuple(r) for r in lams]
        cells = list(dict.fromkeys(keys))
        index = {(k, int(s)): i for i, (k, s) in enumerate(zip(keys, frame["step"].astype(int), strict=True))}
        if len(index) != len(frame):
            raise ConfigError(f"{where}: more than one row for the same λ and step")
        C, F, M = len(cells), len(steps), len(metrics)
        values = np.full((C, F, M), np.nan)
        train = np.full((C, F), np.nan)
        evals = np.full((C, F), np.nan)
        models = []
        for c, cell in enumerate(cells):
            for f, step in enumerate(steps):
                i = index.get((cell, int(step)))
                if i is None:
                    raise ConfigError(
                        f"{where}: baseline λ={[float(v) for v in cell]} has no row for step {int(step)} "
                        f"(every baseline needs the steps {steps.tolist()})"
                    )
                row = frame.iloc[i]
                values[c, f] = [float(row[m]) for m in metrics]
                train[c, f] = float(row["train_seconds"])
                evals[c, f] = float(row["eval_seconds"])
            models.append(str(frame.iloc[index[(cell, int(steps[-1]))]]["model"]))
        if np.any(np.diff(train, axis=1) < 0) or np.any(train < 0) or np.any(evals < 0):
            raise ConfigError(f"{where}: train_seconds must not decrease with the step and seconds must be >= 0")
        return cls(np.array(cells, dtype=np.float64), steps, values, train, evals, tuple(metrics), tuple(models))

    @classmethod
    def single(cls, table: pd.DataFrame, n_lams: int) -> FidelityTable:
        """One fidelity from a table of trained cells (``lam1``, [``lam2``], ``objective``, ``cost_seconds``): each
        trial costs the cell's ``cost_seconds`` (no validation cost)."""
        lam_cols = ["lam1", "lam2"][:n_lams] if n_lams in (1, 2) else []
        missing = [c for c in [*lam_cols, "objective", "cost_seconds"] if c not in table.columns]
        if missing or n_lams not in (1, 2):
            raise ConfigError(
                f"search_replay table: expected columns {[*lam_cols, 'objective', 'cost_seconds']} "
                f"for n_lams={n_lams}, missing {missing}"
            )
        frame = table.rename(columns={"cost_seconds": "train_seconds"}).assign(step=1, eval_seconds=0.0)
        return cls.from_frame(frame, ["objective"], n_lams, where="search_replay table")

    def nearest(self, lam: np.ndarray) -> int:
        """Index of the trained cell nearest to ``lam`` (L2 in λ space; ties to the first cell)."""
        return int(np.argmin(((self.cells - np.asarray(lam, dtype=np.float64)[None, :]) ** 2).sum(axis=1)))

    def metric_index(self, metric: str) -> int:
        if metric not in self.metrics:
            raise ConfigError(f"fidelity table: no metric '{metric}'; it has {list(self.metrics)}")
        return self.metrics.index(metric)
