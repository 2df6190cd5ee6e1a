"""The dataset registry and the one entry point, :func:`load_data`.

``source`` is a registered name (``hrbench list datasets``) or, for convenience, a path: a folder of ``.h5`` files
reads as ``fastmri-knee``, a ``.npy``/``.npz`` file as ``arrays``, anything else holding ``.mgz``/``.nii``/
``*_orig_*.npy`` files as ``freesurfer-brain`` (see :func:`detect_source`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError
from ..registry import Registry
from .base import DataBundle, validate_bundle

DATASETS: Registry = Registry("dataset")

#: constructor arguments supplied by load_data itself, never through ``params``
RESERVED = ("image_size", "seed", "path", "cache_dir")


def detect_source(path: str | Path) -> str:
    """Name of the reader for ``path`` (file or folder), or ``DataError`` saying what was looked for."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{p}: no such file or folder; expected a dataset name or an existing path")
    if p.is_file():
        if p.suffix in (".npy", ".npz"):
            return "arrays"
        if p.suffix in (".h5", ".hdf5"):
            return "fastmri-knee"
        if p.name.endswith((".mgz", ".nii", ".nii.gz")):
            return "freesurfer-brain"
    else:
        from .identity import walk_files  # follows linked folders, as the readers do

        files = list(walk_files(p))
        if any(f.suffix in (".h5", ".hdf5") for f in files):
            return "fastmri-knee"
        if any(f.name.endswith((".mgz", ".nii", ".nii.gz")) or "_orig_" in f.name for f in files):
            return "freesurfer-brain"
    raise DataError(
        f"{p}: cannot tell the data format; expected .h5 files (fastmri-knee), .mgz/.nii[.gz] volumes or "
        "<subj>_orig_NNNN.npy slices (freesurfer-brain), or one .npy/.npz file (arrays)"
    )


def load_data(
    source: str,
    *,
    image_size: int,
    seed: int,
    path: str | Path | None = None,
    params: dict[str, Any] | None = None,
    cache_dir: str | Path | None | bool = None,
    where: str = "",
) -> DataBundle:
    """Build the dataset ``source`` with ``params`` and return its validated :class:`DataBundle`.

    ``cache_dir``: None = default cache (``$HRBENCH_CACHE`` or ``~/.cache/hrbench``, sub-folder ``data``),
    False or ``"off"`` = no cache, else that folder. ``where`` prefixes config errors (e.g. the study file).
    """
    if source not in DATASETS and ("/" in source or Path(source).expanduser().exists()):
        if path is not None:
            raise ConfigError(f"{where or 'data'}: source {source!r} looks like a path and path={path} is also set")
        source, path = detect_source(source), source
    params = dict(params or {})
    for key in RESERVED:
        if key in params:
            raise ConfigError(
                f"{where or 'data'}: '{key}' is set by the data section itself, not by dataset params; "
                f"remove it from params"
            )
    cls = DATASETS.get(source, where=where)
    DATASETS.check_params(source, params, where=where)
    dataset = cls(image_size=image_size, seed=seed, path=path, cache_dir=cache_dir, **params)
    bundle = dataset.load()
    validate_bundle(bundle, dataset.where)
    return bundle
