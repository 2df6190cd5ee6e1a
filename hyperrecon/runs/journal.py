"""The job ledger's journal file, safe against torn writes: Optuna's ``JournalFileBackend`` with a repaired tail.

Optuna appends one JSON record per line and, on reading, skips a last line that lacks its newline (a record cut
by a crash or a full disk). Its next append, though, lands right behind that partial line: the two merge into one
line that is not JSON, and from then on every read of the file fails ("the job ledger is corrupt"). One torn
record would cost the whole run.

:class:`SafeJournalFileBackend` therefore, under the journal's own lock, before it reads on opening and before
every append: if the file does not end with a newline, it copies the file to ``<name>.torn-<n>`` (a backup that
is never overwritten) and cuts the partial record. The records before it are kept; the state they describe is the
one Optuna had read anyway (a job whose ``COMPLETE`` record was cut is RUNNING for a dead worker and is reclaimed,
:meth:`hyperrecon.runs.ledger.JobLedger.reclaim_stale`). When the backup cannot be written the file is left untouched
and ``RunError`` says so. Its own appends never tear: a failed write (``ENOSPC``) is cut back to the last whole
record before ``RunError`` naming the file is raised.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from optuna.storages.journal import JournalFileBackend

from ..errors import RunError
from ..io import shareable_mode, write_failed

log = logging.getLogger("hyperrecon")

_CHUNK = 1 << 16


def whole_records_size(path: str | os.PathLike[str]) -> int:
    """The length in bytes of ``path`` up to and including its last newline (0 for a file without one)."""
    with open(path, "rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        pos = end
        while pos > 0:
            start = max(0, pos - _CHUNK)
            fh.seek(start)
            block = fh.read(pos - start)
            i = block.rfind(b"\n")
            if i >= 0:
                return start + i + 1
            pos = start
        return 0


def repair_torn_tail(path: str | os.PathLike[str]) -> Path | None:
    """Cut a partial last record off the journal at ``path``; returns the backup made, or None if it was whole.

    Call it holding the journal's lock. The whole file is copied to ``<name>.torn-<n>`` first (fsync'd); if that
    copy fails (a full disk) the journal is left untouched and ``RunError`` names it.
    """
    path = Path(path)
    size = path.stat().st_size
    keep = whole_records_size(path)
    if keep == size:
        return None
    backup = _backup(path)
    fd = os.open(path, os.O_WRONLY)  # cut in place: the journal is appended to, never rewritten
    try:
        os.ftruncate(fd, keep)
        os.fsync(fd)
    finally:
        os.close(fd)
    log.warning(
        "%s: cut a torn last record (%d bytes, left by a crash or a full disk mid-write); the file as it "
        "was is kept in %s",
        path,
        size - keep,
        backup,
    )
    return backup


def _backup(path: Path) -> Path:
    data = path.read_bytes()
    for n in range(1, 10_000):
        backup = path.with_name(f"{path.name}.torn-{n}")
        try:
            fd = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL, shareable_mode())
        except FileExistsError:
            continue
        except OSError as exc:
            raise _no_backup(path, exc) from exc
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            backup.unlink(missing_ok=True)
            raise _no_backup(path, exc) from exc
        return backup
    raise RunError(f"{path}: too many backups of torn records next to it ({path.name}.torn-*); remove old ones")


def _no_backup(path: Path, exc: OSError) -> RunError:
    return RunError(
        f"{path}: its last record is torn (a crash or a full disk mid-write) and no backup can be "
        f"written next to it ({exc.strerror}); the file is left as it was. Free some space, then run again"
    )


class SafeJournalFileBackend(JournalFileBackend):
    """``JournalFileBackend`` that repairs a torn tail before it reads or appends and never leaves one itself."""

    def __init__(self, file_path: str) -> None:
        super().__init__(file_path)
        if whole_records_size(file_path) == os.path.getsize(file_path):
            return  # the usual case: no lock taken (a read-only folder can still be read)
        try:
            with self._locked():
                repair_torn_tail(self._file_path)
        except OSError as exc:
            raise write_failed(self._file_path, exc) from exc

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The journal's own inter-process lock (Optuna's symlink lock), as Optuna's appends take it."""
        self._lock.acquire()
        try:
            yield
        finally:
            self._lock.release()

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        data = ("\n".join(json.dumps(entry, separators=(",", ":")) for entry in logs) + "\n").encode("utf-8")
        try:  # the lock is a symlink next to the journal: a full disk can refuse it too
            with self._locked():
                repair_torn_tail(self._file_path)  # another process may have died mid-write
                self._append_locked(data)
        except OSError as exc:
            raise write_failed(self._file_path, exc) from exc

    def _append_locked(self, data: bytes) -> None:
        fd = os.open(self._file_path, os.O_WRONLY | os.O_APPEND)
        try:
            start = os.fstat(fd).st_size
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except OSError:
                try:  # back to the last whole record: a failed append leaves no partial line behind
                    os.ftruncate(fd, start)
                except OSError:
                    pass  # the next append's repair_torn_tail cuts it
                raise
        finally:
            os.close(fd)
