"""``knee-phantom``: the project's procedural coronal knee (SYNTHETIC), split by simulated subject.

Subjects come from ``knee_phantom.sample_subject``; each gets ``slices_per_subject`` coronal slices at positions
evenly spaced over [-position_range, position_range] (anterior -> posterior) plus a per-subject jitter of up to a
quarter of the spacing. Contrast: "PD", "PDFS", or "both" (subjects alternate PD/PDFS, one contrast per subject,
like fastMRI where each volume is one acquisition).

Randomness: subject i of split s (train=0, val=1, test=2) uses ``rng([seed, s, i])`` and its slice j
``rng([seed, s, i, j])``, so adding test subjects never changes the training set, and the three splits never
share a subject.

Preprocessing as the authors did for fastMRI: render at 320², pad/resize to ``image_size`` with anti-aliasing,
divide by the 99th percentile, clip to [0, 1]; labels resized nearest-neighbour. Slices without anatomy are
dropped. Prepared splits are cached (see ``cache.py``): rendering costs ~0.1 s per slice.

``workers``: >1 renders subjects in a ``ProcessPoolExecutor`` (results are identical either way). On the
shared 2-core dev machine, 36 slices at 256² took 1.58 s serial vs 1.37 s with 2 workers (+15 %): not worth
a default, so ``workers=1``; raise it on a machine with idle cores. Not part of the cache key.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ProcessPoolExecutor
from typing import Any, ClassVar

import numpy as np

from ..errors import DataError
from .base import SPLIT_NAMES, DataBundle, fit_to_size, has_anatomy, knee_preprocess, stack_split
from .registry import DATASETS
from .source import DatasetParams, DatasetSource, check_choice, check_range

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
RENDER_SIZE = 320


def _phantom() -> Any:
    try:
        from . import knee_phantom
    except ImportError as exc:  # pragma: no cover - the module ships with the package
        raise DataError(
            f"knee-phantom: generator module missing ({exc}); expected hyperrecon/data/knee_phantom.py"
        ) from exc
    return knee_phantom


def subject_contrast(contrast: str, split_code: int, i: int) -> str:
    if contrast != "both":
        return contrast
    return "PD" if (i + split_code) % 2 == 0 else "PDFS"


def render_subject(
    task: tuple[int, int, int, str, int, float, int],
) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """Render and preprocess all slices of one subject. ``task`` = (seed, split code, i, contrast, n, range, size)."""
    seed, code, i, contrast, n, pos_range, size = task
    kp = _phantom()
    subject = kp.sample_subject(np.random.default_rng([seed, code, i]))
    base = np.linspace(-pos_range, pos_range, n) if n > 1 else np.zeros(1)
    spacing = (2 * pos_range / (n - 1)) if n > 1 else 0.0
    jitter = np.random.default_rng([seed, code, i, 10_000]).uniform(-0.25, 0.25) * spacing
    images, labels, ids = [], [], []
    for j, pos in enumerate(np.clip(base + jitter, -1.0, 1.0)):
        mag, lab = kp.render_slice(
            subject, float(pos), contrast, np.random.default_rng([seed, code, i, j]), size=RENDER_SIZE
        )
        if not has_anatomy(mag):
            continue
        images.append(knee_preprocess(mag, size))
        labels.append(fit_to_size(np.asarray(lab, np.uint8), size, labels=True, mode="resize"))
        ids.append(f"knee-{SPLIT_NAMES[code]}{i:03d}/{contrast}/s{j:02d}")
    return images, labels, ids


@dataclasses.dataclass(frozen=True)
class KneePhantomParams(DatasetParams):
    """``knee-phantom`` parameters: contrast, subjects per split, slices per subject, coronal position range,
    worker processes for rendering (not in the cache key: they do not change the arrays)."""

    contrast: str = "both"
    n_train: int = 16
    n_val: int = 4
    n_test: int = 8
    slices_per_subject: int = 12
    position_range: float = 0.8
    workers: int = 1

    NOT_CACHED: ClassVar[tuple[str, ...]] = ("workers",)

    def check(self, where: str) -> None:
        check_choice(where, "contrast", self.contrast, ("PD", "PDFS", "both"))
        for name in ("n_train", "n_val", "n_test", "slices_per_subject", "workers"):
            check_range(where, name, getattr(self, name), 1, integer=True)
        check_range(where, "position_range", self.position_range, 0.0, 1.0)


@DATASETS.register(
    "knee-phantom",
    description="SYNTHETIC procedural coronal knee (PD/PDFS) with labels, split by subject",
    smoke_params={"n_train": 2, "n_val": 1, "n_test": 1, "slices_per_subject": 2},
)
class KneePhantom(DatasetSource):
    """Procedural coronal knee phantom (synthetic), PD/PDFS, tissue labels, split by simulated subject."""

    Params = KneePhantomParams
    p: KneePhantomParams

    def build(self) -> DataBundle:
        p = self.p
        kp = _phantom()
        tasks = {
            name: [
                (
                    self.seed,
                    code,
                    i,
                    subject_contrast(p.contrast, code, i),
                    p.slices_per_subject,
                    float(p.position_range),
                    self.image_size,
                )
                for i in range(getattr(p, f"n_{name}"))
            ]
            for name, code in SPLIT_CODES.items()
        }
        flat = [t for ts in tasks.values() for t in ts]
        if self.p.workers > 1:
            with ProcessPoolExecutor(max_workers=self.p.workers) as pool:
                results = list(pool.map(render_subject, flat))
        else:
            results = [render_subject(t) for t in flat]
        splits, k = {}, 0
        for name, ts in tasks.items():
            images, labels, ids = [], [], []
            for _ in ts:
                im, lb, i = results[k]
                k += 1
                images += im
                labels += lb
                ids += i
            # one phantom subject per `knee-<split><i>` (its contrasts and slices are not independent)
            subjects = [s.split("/", 1)[0] for s in ids]
            splits[name] = stack_split(images, labels, ids, self.image_size, subjects=subjects)
        class_names = tuple(kp.LABELS)
        return DataBundle(
            **splits,
            n_classes=len(class_names),
            class_names=class_names,
            source="knee-phantom",
            description=(
                f"SYNTHETIC procedural coronal knee phantom ({p.contrast}), {p.n_train}/{p.n_val}/"
                f"{p.n_test} simulated subjects; not real MRI"
            ),
            synthetic=True,
            single_subject=False,
            image_size=self.image_size,
            meta={
                "subjects": {name: [t[2] for t in ts] for name, ts in tasks.items()},
                "contrasts": {name: [t[3] for t in ts] for name, ts in tasks.items()},
                "render_size": RENDER_SIZE,
                "preprocessing": "render 320², anti-aliased resize to image_size, / 99th percentile, clip [0,1]",
                "notice": "synthetic phantom: results do not transfer to real knees without checking",
            },
        )
