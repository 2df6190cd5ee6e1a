"""On-disk cache of prepared splits: one ``.npz`` per (source, params, image_size, seed, inputs, code version).

Root: ``$HRBENCH_CACHE`` if set, else ``~/.cache/hrbench``; bundles go to ``<root>/data``. A ``cache_dir``
argument overrides both (used as is). Files are written to a temporary name in the same folder and moved into
place with ``os.replace`` (atomic on POSIX), so a crash or a concurrent writer never leaves a partial file under
the final name. An unreadable cache file is ignored (and later overwritten), never an error.

The code version is a hash of the data package's own source files, so editing a generator or reader invalidates
old entries without anyone remembering to bump a number.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .base import SPLIT_NAMES, DataBundle, Split

FORMAT = 1


def default_cache_dir() -> Path:
    """``$HRBENCH_CACHE/data`` (checked by :func:`hyperrecon.settings.cache_root`), else ``~/.cache/hrbench/data``."""
    from ..settings import cache_root

    return cache_root() / "data"


@lru_cache(maxsize=1)
def code_version() -> str:
    """sha1 over the data package's ``.py`` files (preview.py excluded: it does not change the arrays)."""
    h = hashlib.sha1()
    for f in sorted(Path(__file__).parent.glob("*.py")):
        if f.name != "preview.py":
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


def cache_key(payload: dict[str, Any]) -> str:
    text = json.dumps({**payload, "code": code_version(), "format": FORMAT}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def file_stamp(paths: list[Path]) -> list[tuple[str, int, int]]:
    """(path, size, mtime_ns) per input file: a changed or replaced file gives a new cache key."""
    out = []
    for p in paths:
        st = p.stat()
        out.append((str(p.resolve()), st.st_size, st.st_mtime_ns))
    return out


def save_bundle(bundle: DataBundle, path: Path) -> None:
    """Write ``bundle`` to ``path`` atomically (tmp file in the same folder + ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    for name, split in bundle.splits.items():
        arrays[f"{name}_images"] = split.images
        arrays[f"{name}_ids"] = np.array(split.ids, dtype=np.str_)
        arrays[f"{name}_subjects"] = np.array(split.subject_ids(), dtype=np.str_)
        if split.labels is not None:
            arrays[f"{name}_labels"] = split.labels
    header = {
        "n_classes": bundle.n_classes,
        "class_names": list(bundle.class_names) if bundle.class_names is not None else None,
        "source": bundle.source,
        "description": bundle.description,
        "synthetic": bundle.synthetic,
        "single_subject": bundle.single_subject,
        "image_size": bundle.image_size,
        "meta": bundle.meta,
    }
    arrays["header"] = np.array(json.dumps(header, default=str))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_bundle(path: Path) -> DataBundle | None:
    """Read a bundle written by :func:`save_bundle`; None when missing or unreadable."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(str(z["header"]))
            splits = {}
            for name in SPLIT_NAMES:
                labels = z[f"{name}_labels"] if f"{name}_labels" in z.files else None
                subjects = [str(i) for i in z[f"{name}_subjects"]]  # a bundle cached before subjects: rebuilt
                splits[name] = Split(z[f"{name}_images"], labels, [str(i) for i in z[f"{name}_ids"]], subjects)
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError):  # EOF: cut at 0 B
        return None
    return DataBundle(
        **splits,
        n_classes=header["n_classes"],
        class_names=tuple(header["class_names"]) if header["class_names"] is not None else None,
        source=header["source"],
        description=header["description"],
        synthetic=header["synthetic"],
        single_subject=header["single_subject"],
        image_size=header["image_size"],
        meta=header["meta"],
    )
