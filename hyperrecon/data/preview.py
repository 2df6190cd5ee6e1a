"""``preview``: one PNG montage and a summary dict to check a data set and its forward model by eye.

Rows (columns = ``n`` test slices, evenly spaced through the test split):

1. target image ``x``;
2. network input magnitude ``|network_input(measure(x))|`` with its PSNR against ``x``;
3. the operator picture ``forward_model.mask_image()`` (sampling mask, SR kernel footprint or a noise sample),
   drawn once in the first column with the achieved acceleration where it is a binary mask;
4. label map (only when the data have labels).

The title names the source and says, in red, when the data are SYNTHETIC or ONE AVERAGED BRAIN.
matplotlib is used through its Agg canvas directly (no pyplot, no global backend switch); torch is imported
here only, because the forward models are torch.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_write_bytes
from .base import DataBundle


def _stats(a: np.ndarray) -> dict[str, float]:
    return {"min": float(a.min()), "max": float(a.max()), "mean": float(a.mean())}


def summarise(bundle: DataBundle) -> dict[str, Any]:
    """Per-split counts, shapes, intensity min/max/mean and class fractions; JSON-friendly."""
    splits = {}
    for name, s in bundle.splits.items():
        entry: dict[str, Any] = {"count": len(s), "shape": list(s.images.shape), **_stats(s.images)}
        if s.labels is not None and bundle.n_classes:
            counts = np.bincount(s.labels.ravel(), minlength=bundle.n_classes)
            entry["class_fractions"] = [round(float(c) / s.labels.size, 5) for c in counts]
        splits[name] = entry
    return {
        "source": bundle.source,
        "description": bundle.description,
        "synthetic": bundle.synthetic,
        "single_subject": bundle.single_subject,
        "image_size": bundle.image_size,
        "n_classes": bundle.n_classes,
        "class_names": list(bundle.class_names) if bundle.class_names else None,
        "splits": splits,
        # paths skipped because they are the same file as one read (a symlink or hard link): say so, never silently
        **({"duplicates_skipped": bundle.meta["duplicates"]} if bundle.meta.get("duplicates") else {}),
    }


def notice(bundle: DataBundle) -> str:
    """The warning every figure and report about this bundle must carry ('' for ordinary real data)."""
    parts = []
    if bundle.synthetic:
        parts.append("SYNTHETIC DATA (procedural phantom, not real MRI)")
    if bundle.single_subject:
        parts.append("ONE AVERAGED BRAIN: all splits share one anatomy")
    return "; ".join(parts)


def _label_colours(n: int) -> Any:
    """Background black, then the tab10/tab20 colours: one distinct colour per class."""
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    base = colormaps["tab10" if n <= 11 else "tab20"]
    return ListedColormap([(0.0, 0.0, 0.0, 1.0)] + [base(i % base.N) for i in range(n - 1)])


def _build_forward_model(forward_model: Any, size: int) -> Any:
    if isinstance(forward_model, str):
        from ..physics import FORWARD_MODELS

        return FORWARD_MODELS.build(forward_model, {}, image_shape=(size, size))
    return forward_model


def preview(
    bundle: DataBundle, forward_model: Any, out_dir: str | Path, *, n: int = 4, seed: int = 0
) -> dict[str, Any]:
    """Write ``out_dir/preview.png`` and return the summary (see :func:`summarise`) plus the forward model's
    ``describe()`` (with ``acceleration_achieved`` = pixels / sampled pixels for a binary mask), the ids shown and
    the mean input PSNR (dB) of those slices. ``forward_model``: an object of :mod:`hyperrecon.physics`, a
    registered name (built with default parameters), or None (no input/mask rows). ``seed`` seeds the noise."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(bundle)
    test = bundle.test
    idx = np.unique(np.round(np.linspace(0, len(test) - 1, min(n, len(test)))).astype(int))
    x = test.images[idx]

    fm = _build_forward_model(forward_model, bundle.image_size)
    inputs = mask = None
    if fm is not None:
        import torch

        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            y = fm.measure(torch.from_numpy(x)[:, None], generator=gen)
            z = fm.network_input(y)
        inputs = torch.sqrt(z[:, 0] ** 2 + z[:, 1] ** 2).numpy()
        mask = np.asarray(fm.mask_image())
        desc = dict(fm.describe())
        if "acceleration_achieved" not in desc and mask.size and set(np.unique(mask)) <= {0, 1}:
            desc["acceleration_achieved"] = float(mask.size / max(mask.sum(), 1))
        summary["forward_model"] = desc
        mse = np.mean((inputs - x) ** 2, axis=(1, 2))
        summary["input_psnr_db"] = float(np.mean(10 * np.log10(1.0 / np.maximum(mse, 1e-12))))
    else:
        summary["forward_model"] = None

    rows = [("target", x)]
    if inputs is not None:
        rows.append(("network input |z|", inputs))
        rows.append(("mask / kernel", None))
    if test.labels is not None:
        rows.append(("labels", test.labels[idx]))
    cols = len(idx)
    n_lab = max(bundle.n_classes or (int(test.labels.max()) + 1 if test.labels is not None else 2), 2)
    label_cmap = _label_colours(n_lab)
    fig = Figure(figsize=(2.3 * max(cols, 2), 2.3 * len(rows) + 0.9), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), max(cols, 2), squeeze=False)
    for r, (name, arr) in enumerate(rows):
        for c in range(axes.shape[1]):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if name == "mask / kernel":
                if c == 0:
                    ax.imshow(mask, cmap="gray", interpolation="nearest")
                    acc = summary["forward_model"].get("acceleration_achieved")
                    ax.set_title(
                        f"{summary['forward_model'].get('name', 'operator')}" + (f" R={acc:.2f}" if acc else ""),
                        fontsize=8,
                    )
                else:
                    ax.axis("off")
                continue
            if c >= cols:
                ax.axis("off")
                continue
            if name == "labels":
                ax.imshow(arr[c], cmap=label_cmap, vmin=-0.5, vmax=n_lab - 0.5, interpolation="nearest")
            else:
                ax.imshow(arr[c], cmap="gray", vmin=0, vmax=1)
            title = test.ids[idx[c]] if r == 0 else name
            if name.startswith("network") and inputs is not None:
                mse = float(np.mean((inputs[c] - x[c]) ** 2))
                title = f"input PSNR {10 * np.log10(1 / max(mse, 1e-12)):.1f} dB"
            ax.set_title(title, fontsize=7)
        axes[r, 0].set_ylabel(name, fontsize=8)
    if test.labels is not None:
        from matplotlib.patches import Patch

        names = bundle.class_names or tuple(str(i) for i in range(n_lab))
        handles = [Patch(color=label_cmap(i), label=f"{i} {nm}") for i, nm in enumerate(names)]
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=7, frameon=False)
    warn = notice(bundle)
    width_chars = int(2.3 * max(cols, 2) * 15)  # ~15 characters per inch at 8 pt
    fig.suptitle(textwrap.fill(f"{bundle.source}: {bundle.description}", width_chars), fontsize=8, y=0.995)
    if warn:
        fig.text(0.5, 0.955, warn, color="red", ha="center", va="top", fontsize=10, weight="bold")
    fig.tight_layout(rect=(0, 0.03 if test.labels is not None else 0, 1, 0.93))
    path = out / "preview.png"
    buf = io.BytesIO()  # rendered in memory, then written atomically: never a half-written preview.png
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())
    summary["preview"] = str(path)
    summary["shown"] = [test.ids[i] for i in idx]
    summary["notice"] = warn
    return summary
