"""``mni-brain``: axial slices of the MNI152 2009 T1 template shipped inside nilearn (real data, offline).

It is ONE averaged brain (single_subject=True): every split shares the same anatomy, so splits are disjoint
slice ranges and every sample is augmented. Reports must say so.

Slices (z = index along the template's axis 2, inferior -> superior, 1 mm):

- usable range z = 15..145 (131 slices; below 15 and above 150 there is little or no brain),
- cut into repeating 26-slice blocks ``train 14 | gap 2 | val 3 | gap 2 | test 3 | gap 2`` starting at z = 15
  (the last, partial block keeps its leading train slices), so train/val/test cover the whole brain from
  cerebellum to vertex but no val/test slice is within 2 mm of a training slice. Default: 71 train, 15 val,
  15 test slices; the exact z lists are in ``meta["z"]``.
- ``slice_step`` keeps every k-th slice of each split, ``max_slices`` then caps each split (evenly spaced).

Pixels: the 197x233 slice is shown anterior up, subject's right on the image right, zero-padded (centred) to
256x256 (1 mm pixels), then resized with anti-aliasing if ``image_size != 256``. Intensities are the template's,
already in [0, 1] (nilearn scales the uint8 file).

Labels (4 classes): background, CSF, GM, WM. brain = T1 > 0; CSF = clip(1 - GM - WM, 0, 1) inside the brain
(no CSF map is shipped); label = argmax over [not brain, CSF, GM, WM] (ties go to the lower class).

Augmentation (``augment.py``): each training slice appears ``n_train_copies`` times, each copy warped, bias-field
modulated and Rician-noised with strength ``augment`` from ``rng([seed, z, copy])``. Val/test slices get
``n_eval_copies`` milder copies (strength ``eval_augment``) from a FIXED seed (independent of ``seed``), so the
test set is the same for every run and never pixel-identical to a training sample.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import DataError
from .augment import augment as augment_slice
from .base import DataBundle, has_anatomy, pad_to, resize, stack_split
from .registry import DATASETS
from .source import DatasetParams, DatasetSource, check_range

Z_FIRST, Z_LAST = 15, 145
BLOCK = (("train", 14), ("gap", 2), ("val", 3), ("gap", 2), ("test", 3), ("gap", 2))
PAD = 256
EVAL_SEED = 20_250_001
CLASS_NAMES = ("background", "csf", "gray-matter", "white-matter")


def slice_ranges(z_first: int = Z_FIRST, z_last: int = Z_LAST) -> dict[str, list[int]]:
    """z indices of each split from the repeating block layout (see module docstring)."""
    out: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    z = z_first
    while z <= z_last:
        for name, n in BLOCK:
            for _ in range(n):
                if z > z_last:
                    break
                if name != "gap":
                    out[name].append(z)
                z += 1
    return out


def subsample(zs: list[int], step: int, cap: int | None) -> list[int]:
    zs = zs[::step]
    if cap is not None and len(zs) > cap:
        idx = np.round(np.linspace(0, len(zs) - 1, cap)).astype(int)
        zs = [zs[i] for i in idx]
    return zs


def load_template() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T1, GM, WM) float32 volumes (197, 233, 189) from nilearn's bundled files (no download)."""
    try:
        from nilearn.datasets import load_mni152_gm_template, load_mni152_template, load_mni152_wm_template

        vols = [
            f(resolution=1).get_fdata(dtype=np.float32)
            for f in (load_mni152_template, load_mni152_gm_template, load_mni152_wm_template)
        ]
    except Exception as exc:  # nilearn missing or its files damaged: name the cause in one line
        raise DataError(
            f"mni-brain: cannot load the MNI152 template from nilearn ({exc}); expected nilearn>=0.10.3"
        ) from exc
    return vols[0], vols[1], vols[2]


def axial(vol: np.ndarray, z: int) -> np.ndarray:
    """Slice z of a RAS volume (X, Y, Z) as (Y, X) with anterior up, padded to 256x256."""
    return pad_to(np.ascontiguousarray(vol[:, :, z].T[::-1]), PAD, PAD)


def tissue_labels(t1: np.ndarray, gm: np.ndarray, wm: np.ndarray) -> np.ndarray:
    """uint8 map: argmax over [background, CSF, GM, WM] probabilities; inputs (H, W) floats."""
    brain = t1 > 0
    gm = np.where(brain, gm, 0.0)
    wm = np.where(brain, wm, 0.0)
    csf = np.where(brain, np.clip(1.0 - gm - wm, 0.0, 1.0), 0.0)
    probs = np.stack([(~brain).astype(np.float32), csf, gm, wm])
    return np.argmax(probs, axis=0).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class MNIBrainParams(DatasetParams):
    """``mni-brain`` parameters: augmented copies of the training and evaluation slices and their strengths,
    slice subsampling and cap."""

    n_train_copies: int = 4
    augment: float = 1.0
    eval_augment: float = 0.5
    n_eval_copies: int = 1
    slice_step: int = 1
    max_slices: int | None = None

    def check(self, where: str) -> None:
        check_range(where, "n_train_copies", self.n_train_copies, 1, integer=True)
        check_range(where, "n_eval_copies", self.n_eval_copies, 1, integer=True)
        check_range(where, "augment", self.augment, 0.0, 3.0)
        check_range(where, "eval_augment", self.eval_augment, 0.0, 3.0)
        check_range(where, "slice_step", self.slice_step, 1, integer=True)
        if self.max_slices is not None:
            check_range(where, "max_slices", self.max_slices, 1, integer=True)


@DATASETS.register(
    "mni-brain",
    description="real T1 brain: MNI152 template from nilearn, ONE averaged brain, slice-range splits, augmented",
    smoke_params={"slice_step": 8, "n_train_copies": 1, "max_slices": 4},
)
class MNIBrain(DatasetSource):
    """MNI152 2009 T1 template (one averaged brain), axial slices, 4 tissue classes, per-sample augmentation."""

    Params = MNIBrainParams
    p: MNIBrainParams

    def build(self) -> DataBundle:
        p = self.p
        t1, gm, wm = load_template()
        ranges = {k: subsample(v, p.slice_step, p.max_slices) for k, v in slice_ranges().items()}
        splits = {}
        for name, zs in ranges.items():
            train = name == "train"
            copies = p.n_train_copies if train else p.n_eval_copies
            strength = p.augment if train else p.eval_augment
            images, labels, ids = [], [], []
            for z in zs:
                img = axial(t1, z)
                if not has_anatomy(img):
                    continue
                lab = tissue_labels(img, axial(gm, z), axial(wm, z))
                img = np.clip(resize(img, self.image_size), 0.0, 1.0)
                lab = resize(lab, self.image_size, labels=True)
                for c in range(copies):
                    rng = np.random.default_rng([self.seed if train else EVAL_SEED, z, c])
                    a_img, a_lab = augment_slice(img, lab, rng, strength)
                    images.append(a_img)
                    labels.append(a_lab)
                    ids.append(f"mni152/z{z:03d}/c{c}")
            # one anatomy: every slice (and every augmented copy) is of the one MNI152 subject
            splits[name] = stack_split(images, labels, ids, self.image_size, subjects=["mni152"] * len(ids))
        return DataBundle(
            **splits,
            n_classes=len(CLASS_NAMES),
            class_names=CLASS_NAMES,
            source="mni-brain",
            description=(
                "MNI152 2009 T1 template (nilearn): ONE averaged brain, not a population; train/val/test are "
                "disjoint axial slice ranges of the same anatomy, made distinct by per-sample augmentation"
            ),
            synthetic=False,
            single_subject=True,
            image_size=self.image_size,
            meta={
                "z": ranges,
                "block_layout": [list(b) for b in BLOCK],
                "usable_z": [Z_FIRST, Z_LAST],
                "pad_to": PAD,
                "eval_seed": EVAL_SEED,
                "augmentation": {
                    "train": f"{p.n_train_copies} copies per slice, strength {p.augment}, rng([seed, z, copy])",
                    "val/test": f"{p.n_eval_copies} copies per slice, strength {p.eval_augment}, "
                    f"rng([{EVAL_SEED}, z, copy]) (same for every seed)",
                },
                "licence": "MNI ICBM152 2009 (c) 1993-2009 Louis Collins, McConnell Brain Imaging Centre (permissive)",
                "notice": "single averaged brain: splits share anatomy; scores measure robustness to augmentation",
            },
        )
