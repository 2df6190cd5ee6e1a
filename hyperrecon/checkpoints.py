"""Training checkpoints: atomic writes, archive checksums verified before ``torch.load(weights_only=True)``."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError
from .io import atomic_write_bytes, check_zip

CHECKPOINT_VERSION = 1


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    """Write ``payload`` atomically: temp file in the same folder, flush + fsync, ``os.replace``.

    Serialised in memory first, so that a failed write (a full disk) surfaces as the ``OSError`` it is rather than
    as torch's ``RuntimeError``: ``RunError`` naming the file, the previous checkpoint left as it was.
    """
    path = Path(path)
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())
    try:  # make the rename itself durable (best effort; not possible on every file system)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


_REQUIRED_KEYS = (
    "format_version",
    "step",
    "model",
    "optimizer",
    "scheduler",
    "data_generator",
    "lam_generator",
    "perm",
    "perm_pos",
    "torch_rng",
    "sampler",
    "history",
    "cost",
    "settings",
)


def read_torch_file(path: str | os.PathLike[str], what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` after verifying the archive; ``CheckpointError`` naming the file.

    The CRC-32 of every archive member is verified first (:func:`hyperrecon.io.check_zip`): ``torch.load`` does not
    check them, so a few flipped bytes inside a tensor would otherwise load silently as wrong weights. ``what``
    names the file's role in the messages ("checkpoint", "model weights").
    """
    path = Path(path)
    try:
        check_zip(path, what)
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: {what} not found") from exc
    except CheckpointError:
        raise
    except Exception as exc:  # zip, unpickling, EOF ... errors differ by torch version
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(f"{path}: corrupt or truncated {what} ({type(exc).__name__}: {first})") from exc


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a training checkpoint (:func:`read_torch_file`); ``CheckpointError`` naming the file if unusable."""
    data = read_torch_file(path)
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: not a training checkpoint (top level is {type(data).__name__})")
    if data.get("format_version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {data.get('format_version')!r}, expected {CHECKPOINT_VERSION}"
        )
    missing = [k for k in _REQUIRED_KEYS if k not in data]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return data
