"""Atomic file output: every result file is written to a temp file in the same folder and renamed into place.

A run killed at any moment therefore leaves each file either complete (old or new) or absent, never truncated.
"""

from __future__ import annotations

import errno
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from .errors import CheckpointError, RunError


def shareable_mode() -> int:
    """The mode ``open()`` would give a new file: ``0o666`` less the process umask (mkstemp makes 0600 files)."""
    try:  # Linux >= 4.7 reports it without changing it (os.umask would, for a moment, for every thread)
        with open("/proc/self/status", encoding="ascii") as fh:
            umask = next(int(line.split()[1], 8) for line in fh if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


class NoSpaceError(RunError):
    """A write failed for want of space (``ENOSPC``, ``EDQUOT``): retrying will not help until space is freed."""


def write_failed(path: str | os.PathLike[str], exc: OSError) -> RunError:
    """The one-line error for a failed write of ``path``: "PATH: cannot write (no space left on device) ..."."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpaceError(
            f"{path}: cannot write (no space left on device); free some space, then continue with "
            "--resume (what was written before is intact)"
        )
    return RunError(f"{path}: cannot write ({exc.strerror or exc})")


def _temp_copy(path: Path, data: bytes) -> str:
    """A complete, fsync'd temp file holding ``data`` next to ``path`` (mode ``0o666 & ~umask``); its name.
    ``RunError`` naming ``path`` when it cannot be written, with no temp file left behind."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise write_failed(path, exc) from exc
        raise RunError(f"{path.parent}: cannot write here ({exc.strerror})") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, shareable_mode())  # mkstemp makes 0600 files
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise write_failed(path, exc) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same folder (fsync, ``os.replace``), with the permissions
    of an ordinary new file (``0o666 & ~umask``), so that reports and results can be shared.

    A failed write (a full disk) leaves ``path`` as it was and raises ``RunError`` naming it (:func:`write_failed`).
    """
    path = Path(path)
    tmp = _temp_copy(path, data)
    try:
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise write_failed(path, exc) from exc
    return path


def atomic_create_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Create ``path`` with ``data`` only if it does not exist yet, atomically: of two processes that try at once,
    exactly one succeeds and the other gets ``FileExistsError``; a crash leaves the file whole or absent.

    The complete content goes to a temp file that is then hard-linked to ``path`` (``link`` fails on an existing
    name, unlike ``rename``). Where the file system has no hard links, an ``O_EXCL`` claim file stands in.
    ``RunError`` naming the file when it cannot be written (:func:`write_failed`).
    """
    path = Path(path)
    tmp = _temp_copy(path, data)
    try:
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            claim = path.with_name(f".{path.name}.claim")
            os.close(os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            if path.exists():
                raise FileExistsError(errno.EEXIST, "exists", str(path)) from None
            os.replace(tmp, path)
    except FileExistsError:
        raise
    except OSError as exc:
        raise write_failed(path, exc) from exc
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def _jsonable(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def read_json(path: str | os.PathLike[str]) -> Any:
    """Parse a JSON file of a run; ``RunError`` naming the file when it is missing, unreadable or corrupt."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RunError(f"{path}: missing; expected a JSON file written by `hrbench run`") from exc
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise RunError(f"{path}: unreadable or corrupt JSON ({exc})") from exc


def write_csv(path: str | os.PathLike[str], frame: Any) -> Path:
    """Write a pandas DataFrame atomically (no index column)."""
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    return atomic_write_text(path, buf.getvalue())


def write_npz(path: str | os.PathLike[str], **arrays: Any) -> Path:
    import numpy as np

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


def check_zip(path: str | os.PathLike[str], what: str = "checkpoint") -> None:
    """Verify the CRC-32 of every member of a ``torch.save`` file (a zip archive).

    ``torch.load`` does not check them: a few flipped bytes inside a tensor load silently as wrong weights. Reading
    the archive once costs about as much as copying it. ``CheckpointError`` naming the file when it is damaged.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise CheckpointError(f"{path}: corrupt or truncated {what} (not a readable archive: {exc})") from exc
    if bad is not None:
        raise CheckpointError(f"{path}: corrupt {what} (checksum mismatch in {bad})")
