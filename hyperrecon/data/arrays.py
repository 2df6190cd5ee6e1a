"""``arrays``: your own slices as one ``.npy`` or ``.npz`` file.

- ``.npy``: images of shape (N, H, W) or (N, 1, H, W); labels optionally in a second ``.npy`` (``labels_path``).
- ``.npz``: key ``images`` (or the only array in the file) and optional key ``labels``; same shapes.
- labels: integer class maps (integral floats accepted) with the images' shape; ``n_classes = max + 1``.
- intensities (``normalize``, per slice): ``"max"`` divides by the slice maximum (needs values >= 0), ``"p99"``
  divides by the 99th percentile and clips, ``"minmax"`` maps [min, max] to [0, 1], ``"none"`` requires [0, 1].
- size (``fit``): ``"pad"`` zero-pads to ``image_size`` when the slice fits (else pads square and resizes down);
  ``"resize"`` pads square and resizes (anti-aliased; labels nearest neighbour).
- slices without anatomy are dropped (``base.has_anatomy``).
- splits: there are no subject ids, so slices are cut by ``val_fraction``/``test_fraction`` into CONTIGUOUS
  blocks (train first, then val, then test: neighbouring slices of one volume stay together), or at random with
  ``shuffle=True`` (seeded).
- ids (``identity.py``): ``<file name without suffix>/<slice index, 5 digits>``; ``labels_path`` must be another
  file than ``path`` (a link to the image file is refused).
"""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .base import DataBundle, anatomy_mask, fit_to_size, normalise_percentile, stack_split
from .identity import data_root, relative_id
from .registry import DATASETS
from .source import DatasetParams, DatasetSource, check_choice, check_range

NORMALIZE = ("max", "p99", "minmax", "none")


def _read(f: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(images, labels or None) from a .npy / .npz file; raw arrays, checked for dimensionality later."""
    try:
        if f.suffix == ".npz":
            with np.load(f, allow_pickle=False) as z:
                names = list(z.files)
                if "images" in names:
                    images = z["images"]
                elif len(names) == 1:
                    images = z[names[0]]
                else:
                    raise DataError(f"{f}: no key 'images' among {names}; expected keys 'images' [+ 'labels']")
                labels = z["labels"] if "labels" in names else None
            return images, labels
        if f.suffix == ".npy":
            return np.load(f, allow_pickle=False), None
    except DataError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise DataError(f"{f}: cannot read ({type(exc).__name__}: {exc}); expected an intact .npy/.npz file") from exc
    raise DataError(f"{f}: unsupported file type '{f.suffix}'; expected .npy or .npz")


def _as_stack(a: np.ndarray, f: Path, what: str) -> np.ndarray:
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 3:
        raise DataError(f"{f}: {what} have shape {a.shape}; expected (N, H, W) or (N, 1, H, W)")
    return a


def normalise(image: np.ndarray, how: str, where: str) -> np.ndarray:
    """One slice (H, W) to [0, 1] per ``how`` (see module docstring)."""
    if how == "p99":
        return normalise_percentile(np.clip(image, 0, None))
    if how == "minmax":
        lo, hi = float(image.min()), float(image.max())
        return ((image - lo) / (hi - lo)).astype(np.float32) if hi > lo else np.zeros_like(image, np.float32)
    if how == "max":
        if float(image.min()) < 0:
            raise DataError(f"{where}: negative intensities; expected magnitude images >= 0 (or normalize='minmax')")
        peak = float(image.max())
        return (image / peak).astype(np.float32) if peak > 0 else image.astype(np.float32)
    if float(image.min()) < 0 or float(image.max()) > 1:
        raise DataError(
            f"{where}: intensities span [{image.min():.4g}, {image.max():.4g}]; expected [0, 1] with normalize='none'"
        )
    return image.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class ArraysParams(DatasetParams):
    """``arrays`` parameters: a second ``.npy`` of labels, intensity normalisation, how slices fit the size,
    split fractions and whether to shuffle before splitting."""

    labels_path: str | None = None
    normalize: str = "max"
    fit: str = "pad"
    val_fraction: float = 0.15
    test_fraction: float = 0.3
    shuffle: bool = False

    def check(self, where: str) -> None:
        check_choice(where, "normalize", self.normalize, NORMALIZE)
        check_choice(where, "fit", self.fit, ("pad", "resize"))
        check_choice(where, "shuffle", self.shuffle, (True, False))
        check_range(where, "val_fraction", self.val_fraction, 0.0, 0.9)
        check_range(where, "test_fraction", self.test_fraction, 0.0, 0.9)


@DATASETS.register(
    "arrays", description="reader: one .npy/.npz of slices (N,H,W) with optional labels, split by fractions"
)
class Arrays(DatasetSource):
    """Plain arrays of slices (``.npy``/``.npz``), optional labels, contiguous or shuffled fraction splits."""

    needs_path = True

    Params = ArraysParams
    p: ArraysParams

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        labels_path = self.p.labels_path
        self.labels_file = Path(labels_path).expanduser() if labels_path is not None else None
        if self.labels_file is not None and not self.labels_file.is_file():
            raise DataError(f"{self.labels_file}: no such file; expected a .npy of labels (labels_path)")
        if self.path is not None and self.path.is_dir():
            raise DataError(f"{self.path}: is a folder; expected one .npy or .npz file for source 'arrays'")
        if self.path is not None and self.labels_file is not None and self.path.samefile(self.labels_file):
            raise DataError(
                f"{self.labels_file}: labels_path is the same file as path {self.path}; expected a separate "
                ".npy of labels"
            )

    @classmethod
    def write_sample(cls, folder: Path) -> Path:
        """``slices.npz``: 10 noisy disc slices (10, 20, 24) with 3-class labels."""
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[0:20, 0:24]
        disc = (((yy - 10) / 8) ** 2 + ((xx - 12) / 9) ** 2) < 1
        images = np.stack([disc * rng.uniform(20, 40) + rng.uniform(0, 2, disc.shape) for _ in range(10)])
        labels = np.stack([disc * (1 + k % 2) for k in range(10)]).astype(np.int64)
        np.savez(folder / "slices.npz", images=images.astype(np.float32), labels=labels)
        return folder / "slices.npz"

    def input_files(self) -> list[Path]:
        return [f for f in (self.path, self.labels_file) if f is not None]

    def build(self) -> DataBundle:
        p, f = self.p, self.path
        if f is None:  # not reachable: needs_path
            raise DataError("arrays: no path")
        images, labels = _read(f)
        if self.labels_file is not None:
            if labels is not None:
                raise DataError(f"{f}: has 'labels' and labels_path is set too; expected one source of labels")
            labels, _ = _read(self.labels_file)
        images = _as_stack(images, f, "images")
        if not np.issubdtype(images.dtype, np.number) or np.iscomplexobj(images):
            raise DataError(f"{f}: images have dtype {images.dtype}; expected real numbers")
        if not np.all(np.isfinite(images)):
            raise DataError(f"{f}: images contain NaN or Inf; expected finite values")
        lf = self.labels_file or f
        if labels is not None:
            labels = _as_stack(labels, lf, "labels")
            if labels.shape != images.shape:
                raise DataError(f"{lf}: labels have shape {labels.shape} but images {images.shape}; expected equal")
            if not np.issubdtype(labels.dtype, np.integer):
                if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
                    raise DataError(f"{lf}: labels are not integers; expected class indices 0..K-1")
            if labels.size and (labels.min() < 0 or labels.max() > 255):
                raise DataError(f"{lf}: labels span [{labels.min()}, {labels.max()}]; expected class indices 0..255")
            labels = labels.astype(np.uint8)
        keep = np.flatnonzero(anatomy_mask(images))
        n = len(keep)
        n_val = max(1, round(n * p.val_fraction))
        n_test = max(1, round(n * p.test_fraction))
        if n - n_val - n_test < 1:
            raise DataError(
                f"{f}: {n} slice(s) with anatomy (of {len(images)}); expected at least {n_val + n_test + 1} "
                "to split train/val/test"
            )
        order = keep[np.random.default_rng(self.seed).permutation(n)] if p.shuffle else keep
        parts = {
            "train": order[: n - n_val - n_test],
            "val": order[n - n_val - n_test : n - n_test],
            "test": order[n - n_test :],
        }
        splits = {}
        for name, idx in parts.items():
            imgs = [
                np.clip(
                    fit_to_size(
                        normalise(images[i].astype(np.float32), p.normalize, f"{f} slice {i}"),
                        self.image_size,
                        mode=p.fit,
                    ),
                    0.0,
                    1.0,
                )
                for i in idx
            ]
            labs = (
                [fit_to_size(labels[i], self.image_size, labels=True, mode=p.fit) for i in idx]
                if labels is not None
                else None
            )
            vid = relative_id(f, data_root(f))  # the file's name without suffix (identity.py)
            splits[name] = stack_split(imgs, labs, [f"{vid}/{i:05d}" for i in idx], self.image_size)
        n_classes = int(labels.max()) + 1 if labels is not None else None
        return DataBundle(
            **splits,
            n_classes=n_classes,
            class_names=None,
            source="arrays",
            description=f"arrays from {f.name}: {len(images)} slices ({n} with anatomy), "
            f"{'shuffled' if p.shuffle else 'contiguous'} fraction split (no subject ids)",
            synthetic=False,
            single_subject=False,
            image_size=self.image_size,
            meta={
                "file": str(f),
                "labels_file": str(self.labels_file) if self.labels_file else None,
                "indices": {k: [int(i) for i in v] for k, v in parts.items()},
                "dropped_empty": int(len(images) - n),
            },
        )
