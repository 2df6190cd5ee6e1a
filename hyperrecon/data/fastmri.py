"""``fastmri-knee``: a folder (or one file) of fastMRI single-coil knee ``.h5`` volumes.

Schema read (fastMRI single-coil train/val files):

- ``reconstruction_esc`` (slices, 320, 320) float32, the target. ``target="auto"`` falls back to
  ``reconstruction_rss`` when there is no ESC reconstruction; ``target`` may also name either key explicitly.
- files without any reconstruction (the challenge test set: undersampled ``kspace`` + ``mask``) raise a
  ``DataError`` naming the file, unless ``from_kspace=True``: then the target is ``|IFFT2c(kspace)|`` centre-cropped
  to the header's ``encoding/reconSpace/matrixSize`` (320x320). A file that has a ``mask`` (undersampled) is
  refused even then: its zero-filled image is not a ground truth.
- ``ismrmrd_header`` (XML, namespace http://www.ismrm.org/ISMRMRD): the k-space padding
  ``left = encodedSpace.matrixSize.y // 2 - encodingLimits.kspace_encoding_step_1.center``,
  ``right = left + kspace_encoding_step_1.maximum + 1`` is read per file and recorded in ``meta["padding"]``
  (never hard-coded), together with the encoded and recon matrix sizes.
- attrs ``acquisition`` (CORPD_FBK = PD, CORPDFS_FBK = PDFS) filter the files (``contrast``: PD, PDFS, both; a
  file without the attribute is kept only for "both"); ``patient_id`` groups files of one patient.

Identity (``identity.py``): a volume's id is its path relative to the data folder without suffix
(``siteA/file1``), slice ids are ``<id>/<NNN>``; splits are by patient (``patient_id`` attr, else the volume id, so
same-named files of two sites are two patients): never by slice. A file reached twice (symlink, hard link) is read
once; two files with one id stop with an error naming both. A file another process holds open for writing raises
``DataBusyError`` (exit 1) saying so, not that the file is damaged. Each kept slice is padded to a
square, resized to ``image_size`` with anti-aliasing, divided by its 99th percentile and clipped to [0, 1] (the
authors' preprocessing); slices without anatomy are dropped (``base.has_anatomy``).
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataBusyError, DataError, HyperReconError
from .base import DataBundle, anatomy_mask, knee_preprocess, split_groups, stack_split
from .identity import Found, check_unique, data_root, find_files, relative_id
from .registry import DATASETS
from .source import DatasetParams, DatasetSource, check_choice, check_range

NS = "{http://www.ismrm.org/ISMRMRD}"
ACQUISITIONS = {"PD": ("CORPD_FBK",), "PDFS": ("CORPDFS_FBK",), "both": None}
TARGETS = ("auto", "reconstruction_esc", "reconstruction_rss")


def parse_header(xml: str | bytes, where: str) -> dict[str, Any]:
    """Matrix sizes and k-space padding from an ISMRMRD header string."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise DataError(f"{where}: ismrmrd_header is not valid XML ({exc}); expected an ISMRMRD header") from exc

    def find_int(path: str) -> int:
        node = root.find("/".join(NS + p for p in path.split("/")))
        if node is None or node.text is None:
            raise DataError(f"{where}: ismrmrd_header lacks {path}; expected an ISMRMRD header with it")
        try:
            return int(node.text.strip())
        except ValueError as exc:
            raise DataError(f"{where}: ismrmrd_header {path} = {node.text!r}; expected an integer") from exc

    enc = [find_int(f"encoding/encodedSpace/matrixSize/{a}") for a in "xyz"]
    rec = [find_int(f"encoding/reconSpace/matrixSize/{a}") for a in "xyz"]
    center = find_int("encoding/encodingLimits/kspace_encoding_step_1/center")
    maximum = find_int("encoding/encodingLimits/kspace_encoding_step_1/maximum")
    left = enc[1] // 2 - center
    return {"encoded_size": enc, "recon_size": rec, "padding": [left, left + maximum + 1]}


def image_from_kspace(kspace: np.ndarray, crop: tuple[int, int]) -> np.ndarray:
    """``|IFFT2c(kspace)|`` of (slices, H, W) complex k-space, centre-cropped to ``crop`` -> float32."""
    img = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    h, w = img.shape[-2:]
    ch, cw = min(crop[0], h), min(crop[1], w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return np.abs(img[:, top : top + ch, left : left + cw]).astype(np.float32)


def h5_open_error(f: Path, exc: Exception, what: str) -> HyperReconError:
    """The error for an h5py failure to open or read ``f``.

    - another process holds the file open for writing (HDF5's file lock refused with errno 11 ``EAGAIN``, or the
      superblock's open-for-write flag): ``DataBusyError`` (exit 1) saying so and how to proceed;
    - the lock itself cannot be taken (a file system without locks, errno 38 ``ENOSYS`` ...): ``HyperReconError``
      (exit 1) naming ``HDF5_USE_FILE_LOCKING=FALSE``;
    - anything else: ``DataError`` saying the file cannot be read (``what``: e.g. "HDF5" or "'reconstruction_esc'").
    """
    import errno
    import re

    text = str(exc)
    m = re.search(r"errno = (\d+)", text)
    code = int(m.group(1)) if m else getattr(exc, "errno", None)
    if "unable to lock file" in text and code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
        return DataBusyError(
            f"{f}: locked by another process that has it open for writing; wait until that process has "
            "finished (or close the file there) and run again"
        )
    if "unable to lock file" in text:
        return HyperReconError(
            f"{f}: cannot take HDF5's file lock ({text}); the file system may not support locks: run again with "
            "HDF5_USE_FILE_LOCKING=FALSE if no other process writes the file"
        )
    if "already open for write" in text:
        return DataBusyError(
            f"{f}: marked as open for writing by another process (or by one that crashed before closing it); "
            f"wait until the writer has finished, or if none is running clear the flag with `h5clear -s {f}`"
        )
    return DataError(f"{f}: cannot read {what} ({exc}); expected an intact fastMRI .h5 file")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclasses.dataclass(frozen=True)
class FastMRIKneeParams(DatasetParams):
    """``fastmri-knee`` parameters: contrast, target key, targets from k-space, split fractions, caps."""

    contrast: str = "both"
    target: str = "auto"
    from_kspace: bool = False
    val_fraction: float = 0.15
    test_fraction: float = 0.3
    max_files: int | None = None
    slices_per_file: int | None = None

    def check(self, where: str) -> None:
        check_choice(where, "contrast", self.contrast, tuple(ACQUISITIONS))
        check_choice(where, "target", self.target, TARGETS)
        check_choice(where, "from_kspace", self.from_kspace, (True, False))
        check_range(where, "val_fraction", self.val_fraction, 0.0, 0.9)
        check_range(where, "test_fraction", self.test_fraction, 0.0, 0.9)
        for name in ("max_files", "slices_per_file"):
            if getattr(self, name) is not None:
                check_range(where, name, getattr(self, name), 1, integer=True)


@DATASETS.register(
    "fastmri-knee",
    description="reader: fastMRI single-coil knee .h5 files (PD/PDFS), split by patient",
    smoke_params={"slices_per_file": 2},
)
class FastMRIKnee(DatasetSource):
    """fastMRI single-coil knee ``.h5`` reader (reconstruction_esc targets), split by patient."""

    needs_path = True

    Params = FastMRIKneeParams
    p: FastMRIKneeParams

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._found_cache: Found | None = None

    def _found(self) -> Found:
        """The distinct .h5 files under the path (identity.find_files), computed once."""
        if self._found_cache is None:
            if self.path is None:  # not reachable: needs_path makes the constructor require it
                raise DataError("fastmri-knee: no path")
            found = find_files(self.path, lambda f: f.suffix in (".h5", ".hdf5"))
            if not found.files:
                raise DataError(f"{self.path}: no .h5 files found; expected fastMRI single-coil knee volumes")
            self._found_cache = found
        return self._found_cache

    @classmethod
    def write_sample(cls, folder: Path) -> Path:
        """Six single-coil files (PD and PDFS in turn) of 3 slices 24 x 20:
        ``reconstruction_esc``, zero ``kspace`` (24 x 22 encoded) and an ISMRMRD header, one patient each."""
        import h5py

        header = (
            '<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><encoding>'
            "<encodedSpace><matrixSize><x>48</x><y>22</y><z>1</z></matrixSize></encodedSpace>"
            "<reconSpace><matrixSize><x>24</x><y>20</y><z>1</z></matrixSize></reconSpace>"
            "<encodingLimits><kspace_encoding_step_1><minimum>0</minimum><maximum>19</maximum><center>11</center>"
            "</kspace_encoding_step_1></encodingLimits></encoding></ismrmrdHeader>"
        )
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[0:24, 0:20]
        knee = (((yy - 12) / 9) ** 2 + ((xx - 10) / 7) ** 2) < 1
        for i in range(6):
            recon = np.stack([knee * 1e-4 * (k + 1) + rng.uniform(0, 2e-6, knee.shape) for k in range(3)])
            with h5py.File(folder / f"file{i}.h5", "w") as h:
                h.create_dataset("reconstruction_esc", data=recon.astype(np.float32))
                h.create_dataset("kspace", data=np.zeros((3, 48, 22), np.complex64))
                h["ismrmrd_header"] = header
                h.attrs["acquisition"] = "CORPD_FBK" if i % 2 == 0 else "CORPDFS_FBK"
                h.attrs["patient_id"] = f"patient{i}"
        return folder

    def input_files(self) -> list[Path]:
        found = self._found()  # skipped duplicates too: adding or removing a link changes the cache key
        return list(found.files) + [Path(p) for p in found.duplicates]

    # -- per file ----------------------------------------------------------------------------------------------
    def _inspect(self, f: Path) -> dict[str, Any] | None:
        """Header facts of one file, or None when its acquisition is filtered out."""
        import h5py

        try:
            with h5py.File(f, "r") as h:
                acq = _text(h.attrs["acquisition"]) if "acquisition" in h.attrs else None
                wanted = ACQUISITIONS[self.p.contrast]
                if wanted is not None and acq not in wanted:
                    return None
                if "ismrmrd_header" not in h:
                    raise DataError(f"{f}: missing dataset 'ismrmrd_header'; expected a fastMRI .h5 file")
                header = parse_header(h["ismrmrd_header"][()], str(f))
                key = self._target_key(h, f)
                vid = relative_id(f, data_root(self.path or f))
                patient = _text(h.attrs["patient_id"]) if "patient_id" in h.attrs else vid
                shape = h[key].shape
        except DataError:
            raise
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            raise h5_open_error(f, exc, "HDF5") from exc
        return {"file": f, "id": vid, "acquisition": acq, "patient": patient, "key": key, "shape": shape, **header}

    def _target_key(self, h: Any, f: Path) -> str:
        target = self.p.target
        names = ("reconstruction_esc", "reconstruction_rss") if target == "auto" else (target,)
        for name in names:
            if name in h:
                return name
        if self.p.from_kspace and "kspace" in h:
            if "mask" in h:
                raise DataError(
                    f"{f}: has no {' or '.join(names)} and its kspace is undersampled ('mask' present); "
                    "expected a fully sampled file to compute a target from kspace"
                )
            return "kspace"
        hint = " (a challenge test file?)" if "mask" in h else ""
        raise DataError(
            f"{f}: missing {' and '.join(names)}{hint}; expected a train/val file with a reconstruction, "
            "or set from_kspace=true for fully sampled kspace"
        )

    def _read(self, info: dict[str, Any]) -> tuple[np.ndarray, int]:
        """(target slices (S, H, W) float32, index of the first) of one file (central ``slices_per_file``)."""
        import h5py

        f, key = info["file"], info["key"]
        try:
            with h5py.File(f, "r") as h:
                ds = h[key]
                if ds.ndim != 3:
                    raise DataError(f"{f}: '{key}' has shape {ds.shape}; expected (slices, H, W)")
                n = ds.shape[0]
                keep = self.p.slices_per_file
                lo = max(0, (n - keep) // 2) if keep else 0
                hi = min(n, lo + keep) if keep else n
                data = ds[lo:hi]
        except DataError:
            raise
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            raise h5_open_error(f, exc, f"'{key}'") from exc
        if key == "kspace":
            data = image_from_kspace(data, (info["recon_size"][0], info["recon_size"][1]))
        elif np.iscomplexobj(data):
            raise DataError(f"{f}: '{key}' is complex; expected real magnitude images")
        data = np.asarray(data, dtype=np.float32)
        if not np.all(np.isfinite(data)):
            raise DataError(f"{f}: '{key}' contains NaN or Inf; expected finite values")
        return data, lo

    # -- bundle -----------------------------------------------------------------------------------------------
    def build(self) -> DataBundle:
        p = self.p
        found = self._found()
        check_unique((relative_id(f, data_root(self.path)), f) for f in found.files)  # before reading any
        infos = [i for i in (self._inspect(f) for f in found.files) if i is not None]
        if not infos:
            raise DataError(
                f"{self.path}: no file with acquisition {ACQUISITIONS[p.contrast]}; expected PD (CORPD_FBK) "
                "or PDFS (CORPDFS_FBK) volumes, or contrast='both'"
            )
        if p.max_files:
            infos = infos[: p.max_files]
        groups = split_groups(
            [i["patient"] for i in infos],
            val_fraction=p.val_fraction,
            test_fraction=p.test_fraction,
            seed=self.seed,
            where=str(self.path),
            unit="patient",
        )
        splits, files_meta = {}, {}
        for name, patients in groups.items():
            members = set(patients)
            images, ids, patient_ids = [], [], []
            chosen = [i for i in infos if i["patient"] in members]
            for info in chosen:
                data, first = self._read(info)
                keep = anatomy_mask(data)
                for s in np.flatnonzero(keep):
                    images.append(knee_preprocess(data[s], self.image_size))
                    ids.append(f"{info['id']}/{first + s:03d}")
                    patient_ids.append(info["patient"])  # `patient_id` attribute, else the volume id
            splits[name] = stack_split(images, None, ids, self.image_size, subjects=patient_ids)
            files_meta[name] = [str(i["file"]) for i in chosen]
        return DataBundle(
            **splits,
            n_classes=None,
            class_names=None,
            source="fastmri-knee",
            description=f"fastMRI single-coil knee ({p.contrast}), {len(infos)} files, split by patient",
            synthetic=False,
            single_subject=False,
            image_size=self.image_size,
            meta={
                "files": files_meta,
                "patients": groups,
                "volume_ids": {str(i["file"]): i["id"] for i in infos},
                "duplicates": found.duplicates,
                "padding": {str(i["file"]): i["padding"] for i in infos},
                "encoded_size": {str(i["file"]): i["encoded_size"] for i in infos},
                "recon_size": {str(i["file"]): i["recon_size"] for i in infos},
                "acquisition": {str(i["file"]): i["acquisition"] for i in infos},
                "target": {str(i["file"]): i["key"] for i in infos},
                "preprocessing": "pad to square, anti-aliased resize to image_size, / 99th percentile, clip [0,1]",
            },
        )
