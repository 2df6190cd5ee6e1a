"""``hrbench explore RUN_DIR --export page.html``: one self-contained HTML file with pre-rendered reconstructions.

The file holds the page (:mod:`.page`) and, as inline JSON, for every conditional model and each exported slice the
reconstruction (PNG ``data:`` URL) and metrics at every λ of an export grid (``points`` per axis: 21 for one λ, 7x7
for two by default), the nearest baseline of each, the landscapes, and the most diverse pair and range of each
(model, slice). The sliders snap to the grid. Slices: ``slices`` of them at the centres of equal bins of the test
set (:func:`hyperrecon.evaluation.range_slice_indices`, as the report's range slices). Nothing in it is loaded from
the network, so it opens from disk, from a mail or next to a report.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..io import atomic_write_text
from .page import export_html
from .session import Explorer

DEFAULT_POINTS = {1: 21, 2: 7}
DEFAULT_SLICES = 4


def export_data(
    ex: Explorer,
    *,
    points: int | None = None,
    slices: int = DEFAULT_SLICES,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """The JSON the exported page reads (see the module docstring); ``progress(done, total)`` per render."""
    from ..evaluation import range_slice_indices

    k = ex.n_lams
    check_points(points)
    points = DEFAULT_POINTS[k] if points is None else int(points)
    if slices < 1:
        raise ConfigError(f"export slices: `slices >= 1` must hold, but got {slices}")
    axis = np.linspace(0.0, 1.0, points)
    lams = [[float(a)] for a in axis] if k == 1 else [[float(a), float(b)] for a in axis for b in axis]
    chosen = range_slice_indices(ex.n_slices, slices)
    info = ex.info()
    info["slices"] = [s for s in info["slices"] if s["index"] in chosen]
    info["exported"] = {"points": points, "slices": chosen}
    renders: dict[str, dict[int, list[dict[str, Any]]]] = {}
    baselines: dict[str, dict[str, Any]] = {}
    diverse: dict[str, dict[int, dict[str, Any]]] = {}
    total, done = len(ex.models) * len(chosen) * (len(lams) + 1), 0
    for model in ex.models:
        renders[model], diverse[model] = {}, {}
        for i in chosen:
            rows = []
            for lam in lams:
                r = ex.render(model, i, lam)
                b = r.pop("baseline")
                if b is not None:
                    baselines[f"{b['model']}/{i}"] = b
                rows.append(
                    {
                        "model": model,
                        "image": r["image"],
                        "metrics": r["metrics"],
                        "baseline": None if b is None else b["model"],
                    }
                )
                done += 1
                if progress is not None:
                    progress(done, total)
            renders[model][i] = rows
            diverse[model][i] = ex.diverse(model, i)
            done += 1
            if progress is not None:
                progress(done, total)
    return {
        "info": info,
        "grid": axis.tolist(),
        "slices": {i: ex.slice_images(i) for i in chosen},
        "renders": renders,
        "baselines": baselines,
        "diverse": diverse,
    }


def check_points(points: int | None) -> None:
    if points is not None and not 2 <= int(points) <= 101:
        raise ConfigError(f"--export-points: `2 <= points <= 101` must hold, but got {points}")


def check_out(out: str | Path) -> Path:
    """``out`` must not be a folder (checked before any work)."""
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"--export {out}: is a folder; expected an .html file name")
    return out


def export_page(ex: Explorer, out: str | Path, **kwargs: Any) -> Path:
    """Write the self-contained page to ``out`` atomically; returns its path."""
    return atomic_write_text(check_out(out), export_html(export_data(ex, **kwargs)))
