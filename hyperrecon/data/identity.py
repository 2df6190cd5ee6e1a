"""Volume identity for every reader: which files a data folder holds, and what each one is called.

The rule (one place, used by ``fastmri-knee``, ``freesurfer-brain`` and ``arrays``):

- A volume's **id** is its path relative to the data root, with ``/`` separators and the data suffix removed
  (``siteA/file1.h5`` -> ``siteA/file1``; a FreeSurfer subject folder ``siteB/sub-01/mri`` -> ``siteB/sub-01``).
  When the root is a single file, the id is that file's name without suffix. Slice ids are ``<volume id>/<slice>``,
  so two sites holding ``file1.h5`` give ``siteA/file1/000`` and ``siteB/file1/000``.
- A volume without a patient (subject) attribute is its own patient, named by its id, so files of the same name
  in different folders are never merged into one patient.
- Folders are walked following symbolic links (each real folder once, so a link to an ancestor cannot loop).
  Two paths that are the **same file** (a symlink or hard link to another file already found, or a linked folder)
  are read once: the path reached without symbolic links below the root wins, else the first in sorted order;
  the others are reported in ``duplicates`` so that a report can say so. The same volume is never in two splits.
- If two different files still map to one id (``a/x.h5`` and ``a/x.hdf5``; ``sub/norm.mgz`` and
  ``sub/mri/norm.mgz``), :func:`check_unique` raises one ``DataError`` naming both files.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError

#: suffixes stripped from a file name to form its id (longest first, so ``.nii.gz`` beats ``.gz``)
DATA_SUFFIXES = (".nii.gz", ".hdf5", ".h5", ".mgz", ".nii", ".npy", ".npz")


def strip_suffix(name: str) -> str:
    """``name`` without its data suffix (see :data:`DATA_SUFFIXES`), else without its last suffix."""
    for suffix in DATA_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(name).stem or name


def volume_of(slice_id: str) -> str:
    """The volume id of a slice id ``<volume id>/<slice>`` (``siteA/patient1/file/000`` -> ``siteA/patient1/file``);
    an id without ``/`` is its own volume. A volume without a patient attribute is its own subject."""
    return str(slice_id).rsplit("/", 1)[0]


def data_root(path: Path) -> Path:
    """The folder ids are relative to: ``path`` itself for a folder, its parent for a file."""
    return path if path.is_dir() else path.parent


def relative_id(path: Path, root: Path, *, strip: bool = True) -> str:
    """Id of ``path`` (a file or folder under ``root``): posix path relative to ``root``, data suffix removed.
    ``path == root`` (one file given, or a subject folder given as the root) gives the root's own name."""
    try:
        rel = path.relative_to(root)
    except ValueError:  # not below the root (cannot happen for walked paths): fall back to the name
        rel = Path(path.name)
    parts = list(rel.parts) or [root.name]
    if strip:
        parts[-1] = strip_suffix(parts[-1])
    return "/".join(parts)


@dataclass
class Found:
    """Result of :func:`find_files`: ``files`` sorted by path relative to the root, each a distinct file on disk;
    ``duplicates`` maps each skipped path to the path kept for the same file (both as strings)."""

    files: list[Path]
    duplicates: dict[str, str] = field(default_factory=dict)


def _file_key(p: Path) -> tuple[int, int]:
    st = p.stat()  # follows symlinks: a link and its target share (device, inode), as do hard links
    return st.st_dev, st.st_ino


def walk_files(root: Path) -> Iterable[Path]:
    """Every regular file below ``root`` (following folder symlinks; a folder whose real path is the current
    folder or one of its ancestors is skipped, so link cycles end)."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = os.path.realpath(dirpath)
        keep = []
        for d in sorted(dirnames):
            real = os.path.realpath(os.path.join(dirpath, d))
            if here == real or here.startswith(real.rstrip(os.sep) + os.sep):
                continue  # a link back up the tree
            keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if p.is_file():  # also drops dangling links
                yield p


def _rank(p: Path, root: Path, root_real: Path) -> tuple[bool, str]:
    """Sort key among paths of one file: a path with no symbolic link below the root first, then by relative path."""
    rel = p.relative_to(root)
    return Path(os.path.realpath(p)) != root_real / rel, rel.as_posix()


def find_files(path: Path, accept: Callable[[Path], bool]) -> Found:
    """Files under ``path`` (or ``path`` itself when it is a file) for which ``accept(file)`` holds, each distinct
    file on disk once (see the module docstring for which path of a duplicate is kept)."""
    if path.is_file():
        return Found([path] if accept(path) else [])
    root_real = Path(os.path.realpath(path))
    groups: dict[tuple[int, int], list[Path]] = {}
    for p in walk_files(path):
        if accept(p):
            groups.setdefault(_file_key(p), []).append(p)
    kept: list[Path] = []
    duplicates: dict[str, str] = {}
    for paths in groups.values():
        paths = sorted(paths, key=lambda p: _rank(p, path, root_real))
        kept.append(paths[0])
        for other in paths[1:]:
            duplicates[str(other)] = str(paths[0])
    kept.sort(key=lambda p: p.relative_to(path).as_posix())
    return Found(kept, dict(sorted(duplicates.items())))


def clash_error(first: Path, second: Path, vid: str, what: str = "volume id") -> DataError:
    """The one-line error for two different files that map to one id."""
    return DataError(
        f"{first} and {second}: both map to {what} '{vid}' (path relative to the data root without suffix); "
        "expected one file per id: rename or remove one of them"
    )


def check_unique(ids: Iterable[tuple[str, Path]], what: str = "volume id") -> None:
    """``DataError`` naming both files when two different files share an id; ``ids`` = (id, file) pairs."""
    seen: dict[str, Path] = {}
    for vid, f in ids:
        if vid in seen and seen[vid] != f:
            raise clash_error(seen[vid], f, vid, what)
        seen[vid] = f
