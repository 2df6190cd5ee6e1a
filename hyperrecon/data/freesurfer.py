"""``freesurfer-brain``: T1 brains processed by FreeSurfer (ABIDE style), with aseg labels merged to 5 classes.

Two layouts are accepted under ``path`` (searched recursively; both may be mixed):

1. **Volumes**: one folder per subject holding ``norm.mgz`` (or ``orig.mgz``; ``image`` picks which is preferred,
   the other is the fallback) and ``aseg.mgz``, directly or in its ``mri/`` sub-folder, or the NIfTI equivalents
   ``norm.nii[.gz]``, ``orig.nii[.gz]``, ``aseg.nii[.gz]``. Volumes are reoriented to RAS with nibabel and cut
   into axial slices (anterior up, subject's right on the image right, as ``mni-brain``).
2. **Slices**: ``<subj>_orig_<NNNN>.npy`` (H, W) next to ``asegs/<subj>_aseg_<NNNN>.npy`` (same shape).

Compressed volumes (``.mgz``, ``.nii.gz``) are decompressed once to the end before nibabel reads them, so that a
damaged gzip stream (bad CRC-32 or length) is a ``DataError`` rather than silently wrong voxels.

Intensities: negatives clipped to 0, then divided by the subject's maximum (norm.mgz is uint8 0..255).
Slices are zero-padded (centred) to ``image_size`` if they fit, else padded square and resized (``fit_to_size``).
Slices without anatomy are dropped. Split by subject (``val_fraction``/``test_fraction``), never by slice.

aseg -> 5 classes (paper: background, gray matter, white matter, CSF, cortex): one table in ``aseg.py``
(``ASEG_TABLE``, every code of a FreeSurfer 5-7 aseg.mgz, from FreeSurferColorLUT.txt); a code not in it stops the
run with an error naming the file. Classes: background, subcortical-gm, white-matter, csf, cortex (cerebral).

Identity (``identity.py``): a subject is its folder's path relative to the data root (``siteA/sub-01``; the
``mri/`` level is dropped), or for the slice layout ``<folder>/<subj>``; files reached twice through links are
read once; two files that give one subject id stop with an error naming both.
"""

from __future__ import annotations

import dataclasses
import gzip
import re
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .aseg import ASEG_CLASSES, CLASS_NAMES, merge_aseg
from .base import DataBundle, fit_to_size, has_anatomy, split_groups, stack_split
from .identity import clash_error, data_root, find_files, relative_id
from .registry import DATASETS
from .source import DatasetParams, DatasetSource, check_choice, check_range

VOLUME_EXTS = (".mgz", ".nii.gz", ".nii")
SLICE_RE = re.compile(r"^(?P<subj>.+)_orig_(?P<idx>\d+)\.npy$")


def check_gzip(f: Path) -> None:
    """Decompress a gzip file (``.mgz``, ``.nii.gz``) to its end, in chunks, so that its CRC-32 and length are
    checked: nibabel stops reading at the last voxel, before the gzip trailer, so garbled bytes inside the deflate
    stream would give wrong voxels and no error. ``DataError`` naming the file when the stream is damaged."""
    try:
        with gzip.open(f, "rb") as fh:
            while fh.read(1 << 20):
                pass
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(
            f"{f}: cannot read volume (corrupt or truncated gzip stream: {type(exc).__name__}: {exc}); "
            "expected an intact MGH/NIfTI file"
        ) from exc


def _load_volume(f: Path) -> tuple[np.ndarray, np.ndarray]:
    """(data (X, Y, Z) in RAS axis order, original affine) of an .mgz/.nii[.gz] file (gzip checksum verified)."""
    import nibabel as nib

    if f.name.endswith((".mgz", ".gz")):
        check_gzip(f)
    try:
        img = nib.load(str(f))
        data = np.asarray(img.dataobj)
    except Exception as exc:  # nibabel raises many kinds (ImageFileError, EOFError, zlib.error ...)
        raise DataError(
            f"{f}: cannot read volume ({type(exc).__name__}: {exc}); expected an intact MGH/NIfTI file"
        ) from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(f"{f}: volume has shape {data.shape}; expected a 3-D volume (X, Y, Z)")
    ornt = nib.orientations.io_orientation(img.affine)
    return nib.orientations.apply_orientation(data, ornt), img.affine


def _axial(vol: np.ndarray, k: int) -> np.ndarray:
    return np.ascontiguousarray(vol[:, :, k].T[::-1])


@dataclasses.dataclass(frozen=True)
class FreeSurferBrainParams(DatasetParams):
    """``freesurfer-brain`` parameters: image volume (norm/orig), split fractions, slice step and caps."""

    image: str = "norm"
    val_fraction: float = 0.15
    test_fraction: float = 0.3
    slice_step: int = 1
    max_slices_per_subject: int | None = None
    max_subjects: int | None = None

    def check(self, where: str) -> None:
        check_choice(where, "image", self.image, ("norm", "orig"))
        check_range(where, "val_fraction", self.val_fraction, 0.0, 0.9)
        check_range(where, "test_fraction", self.test_fraction, 0.0, 0.9)
        check_range(where, "slice_step", self.slice_step, 1, integer=True)
        for name in ("max_slices_per_subject", "max_subjects"):
            if getattr(self, name) is not None:
                check_range(where, name, getattr(self, name), 1, integer=True)


@DATASETS.register(
    "freesurfer-brain",
    description="reader: FreeSurfer/ABIDE T1 (norm/orig + aseg, mgz/nii or npy slices), 5 classes",
    smoke_params={"max_slices_per_subject": 2},
)
class FreeSurferBrain(DatasetSource):
    """FreeSurfer-processed T1 brains with aseg merged to 5 classes, axial slices, split by subject."""

    needs_path = True

    Params = FreeSurferBrainParams
    p: FreeSurferBrainParams

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._subjects_cache: dict[str, dict[str, Any]] | None = None
        self._duplicates: dict[str, str] = {}

    # -- discovery --------------------------------------------------------------------------------------------
    def _subjects(self) -> dict[str, dict[str, Any]]:
        """subject id -> {"kind": "volume", "image": Path, "aseg": Path} | {"kind": "slices", "files": [(idx, img,
        aseg)]}. Subject ids are folder paths relative to the data root (``identity.py``), computed once."""
        if self._subjects_cache is not None:
            return self._subjects_cache
        root = self.path
        if root is None:  # not reachable: needs_path
            raise DataError("freesurfer-brain: no path")
        base = data_root(root)
        prefer = [self.p.image, "orig" if self.p.image == "norm" else "norm"]
        found = find_files(
            root,
            lambda f: (
                (f.name.endswith(VOLUME_EXTS) and f.name.split(".")[0] in prefer)
                or (SLICE_RE.match(f.name) is not None and f.parent.name != "asegs")
            ),
        )
        subjects: dict[str, dict[str, Any]] = {}
        owner: dict[str, Path] = {}  # subject id -> a file of it, to name both files when two layouts clash
        images_by_folder: dict[Path, list[Path]] = {}
        for f in found.files:
            if f.name.endswith(VOLUME_EXTS):
                images_by_folder.setdefault(f.parent, []).append(f)
        for d, candidates in sorted(images_by_folder.items()):
            names = {f.name: f for f in candidates}
            image = next(names[f"{stem}{ext}"] for stem in prefer for ext in VOLUME_EXTS if f"{stem}{ext}" in names)
            aseg = next((d / f"aseg{ext}" for ext in VOLUME_EXTS if (d / f"aseg{ext}").is_file()), None)
            if aseg is None:
                raise DataError(f"{d}: has {image.name} but no aseg.mgz/aseg.nii[.gz]; expected both per subject")
            subj_dir = d.parent if d.name == "mri" and d != base else d
            name = relative_id(subj_dir, base, strip=False)
            if name in owner:
                raise clash_error(owner[name], image, name, "subject id")
            owner[name] = image
            subjects[name] = {"kind": "volume", "image": image, "aseg": aseg}
        for f in found.files:
            m = SLICE_RE.match(f.name)
            if m is None:
                continue
            aseg = f.parent / "asegs" / f"{m['subj']}_aseg_{m['idx']}.npy"
            if not aseg.is_file():
                raise DataError(f"{f}: no matching label file {aseg}; expected asegs/<subj>_aseg_<NNNN>.npy")
            folder = relative_id(f.parent, base, strip=False) if f.parent != base else ""
            name = f"{folder}/{m['subj']}" if folder else m["subj"]
            entry = subjects.setdefault(name, {"kind": "slices", "files": []})
            if entry["kind"] != "slices":
                raise clash_error(owner[name], f, name, "subject id")
            owner.setdefault(name, f)
            entry["files"].append((int(m["idx"]), f, aseg))
        if not subjects:
            raise DataError(
                f"{root}: no subjects found; expected <subj>/norm.mgz (or orig, .nii[.gz]) + aseg, or "
                "<subj>_orig_NNNN.npy + asegs/<subj>_aseg_NNNN.npy"
            )
        self._duplicates = found.duplicates
        self._subjects_cache = dict(sorted(subjects.items()))
        return self._subjects_cache

    @classmethod
    def write_sample(cls, folder: Path) -> Path:
        """Four subjects ``sub<i>/norm.mgz`` + ``aseg.mgz`` (18 x 20 x 16, LIA like FreeSurfer's conformed space):
        an ellipsoid of white matter (aseg 2) in cortex (3) with a ventricle (4) and hippocampus (17)."""
        import nibabel as nib

        rng = np.random.default_rng(0)
        x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in (18, 20, 16)], indexing="ij")
        r = np.sqrt((x / 0.8) ** 2 + (y / 0.85) ** 2 + (z / 0.75) ** 2)
        aseg = np.zeros(r.shape, np.int32)
        aseg[r < 1.0], aseg[r < 0.7] = 3, 2
        aseg[(r < 0.3) & (x > 0)], aseg[(r < 0.3) & (x <= 0)] = 4, 17
        lia = np.array([[-1, 0, 0, 9], [0, 0, 1, -8], [0, -1, 0, 10], [0, 0, 0, 1]], float)
        for i in range(4):
            t1 = np.select([aseg == 2, aseg == 3, aseg == 17, aseg == 4], [200, 120, 110, 40], 0)
            t1 = np.clip(t1 + rng.normal(0, 3, r.shape) * (aseg > 0), 0, 255).astype(np.uint8)
            d = folder / f"sub{i}"
            d.mkdir()
            nib.save(nib.MGHImage(t1, lia), d / "norm.mgz")
            nib.save(nib.MGHImage(aseg, lia), d / "aseg.mgz")
        return folder

    def input_files(self) -> list[Path]:
        out: list[Path] = []
        for s in self._subjects().values():
            if s["kind"] == "volume":
                out += [s["image"], s["aseg"]]
            else:
                for _, img, aseg in sorted(s["files"]):
                    out += [img, aseg]
        return out + [Path(p) for p in self._duplicates]  # a new or removed link changes the cache key

    # -- reading ----------------------------------------------------------------------------------------------
    def _read_subject(self, s: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, list[int], str]:
        """(images (N, H, W) float, class labels (N, H, W) uint8 (``aseg.merge_aseg``), slice indices, file for
        messages)."""
        if s["kind"] == "volume":
            img, _ = _load_volume(s["image"])
            aseg, _ = _load_volume(s["aseg"])
            where = str(s["image"])
            if aseg.shape != img.shape:
                raise DataError(
                    f"{s['aseg']}: labels have shape {aseg.shape} but {s['image'].name} {img.shape}; expected equal"
                )
            idx = list(range(img.shape[2]))
            imgs = np.stack([_axial(img, k) for k in idx])
            labs = np.stack([_axial(aseg, k) for k in idx])
        else:
            items = sorted(s["files"])
            imgs_l, labs_l = [], []
            for _, f, af in items:
                a, b = _load_npy(f), _load_npy(af)
                if a.ndim != 2:
                    raise DataError(f"{f}: slice has shape {a.shape}; expected a 2-D (H, W) slice")
                if b.shape != a.shape:
                    raise DataError(f"{af}: labels have shape {b.shape} but {f.name} {a.shape}; expected equal")
                if imgs_l and a.shape != imgs_l[0].shape:
                    raise DataError(f"{f}: slice has shape {a.shape}, other slices {imgs_l[0].shape}; expected equal")
                imgs_l.append(a)
                labs_l.append(merge_aseg(b, str(af)))
            imgs, labs, idx = np.stack(imgs_l), np.stack(labs_l), [i for i, _, _ in items]
            where = str(items[0][1])
        if not np.issubdtype(imgs.dtype, np.number) or np.iscomplexobj(imgs):
            raise DataError(f"{where}: image dtype {imgs.dtype}; expected real numbers")
        imgs = imgs.astype(np.float32)
        if not np.all(np.isfinite(imgs)):
            raise DataError(f"{where}: image contains NaN or Inf; expected finite values")
        imgs = np.clip(imgs, 0.0, None)
        peak = float(imgs.max())
        if peak > 0:
            imgs /= peak
        if s["kind"] == "volume":  # slices were merged file by file, so that an error names the label file
            labs = merge_aseg(labs, str(s["aseg"]))
        return imgs, labs, idx, where

    def build(self) -> DataBundle:
        p = self.p
        subjects = self._subjects()
        if p.max_subjects:
            subjects = dict(list(subjects.items())[: p.max_subjects])
        groups = split_groups(
            list(subjects),
            val_fraction=p.val_fraction,
            test_fraction=p.test_fraction,
            seed=self.seed,
            where=str(self.path),
            unit="subject",
        )
        splits = {}
        for name, members in groups.items():
            images, labels, ids, subject_ids = [], [], [], []
            for subj in members:
                imgs, labs, idx, _ = self._read_subject(subjects[subj])
                keep = [i for i in range(len(idx)) if has_anatomy(imgs[i])][:: p.slice_step]
                cap = p.max_slices_per_subject
                if cap is not None and len(keep) > cap:  # evenly spaced through the brain
                    keep = [keep[j] for j in np.round(np.linspace(0, len(keep) - 1, cap)).astype(int)]
                for i in keep:
                    images.append(np.clip(fit_to_size(imgs[i], self.image_size), 0.0, 1.0))
                    labels.append(fit_to_size(labs[i], self.image_size, labels=True))
                    ids.append(f"{subj}/z{idx[i]:04d}")
                    subject_ids.append(subj)
            splits[name] = stack_split(images, labels, ids, self.image_size, subjects=subject_ids)
        return DataBundle(
            **splits,
            n_classes=len(CLASS_NAMES),
            class_names=CLASS_NAMES,
            source="freesurfer-brain",
            description=f"FreeSurfer T1 brains ({len(subjects)} subjects), aseg merged to 5 classes, split by subject",
            synthetic=False,
            single_subject=False,
            image_size=self.image_size,
            meta={
                "subjects": groups,
                "files": {
                    s: str(v["image"]) if v["kind"] == "volume" else str(sorted(v["files"])[0][1].parent)
                    for s, v in subjects.items()
                },
                "aseg_classes": {CLASS_NAMES[c]: list(m) for c, m in ASEG_CLASSES.items()},
                "duplicates": self._duplicates,
                "intensity": "negatives clipped, divided by the subject maximum",
            },
        )


def _load_npy(f: Path) -> np.ndarray:
    try:
        return np.load(f, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{f}: cannot read .npy ({exc}); expected an intact numpy array file") from exc
