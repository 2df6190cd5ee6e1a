"""Runtime settings from environment variables, each checked where it is read.

Every ``HRBENCH_*`` variable the project reads is parsed here, and nowhere else, so that a bad value is one
``error:`` line naming the variable and what was expected (``ConfigError``, exit 2) instead of a traceback or a
silently wrong run. An empty value counts as unset. The list, with defaults and checks, is in
``docs/study-format.md`` (section "Environment"); :data:`VARIABLES` is the same list for code and tests.

- ``HRBENCH_HEARTBEAT_S``: seconds between a running job's heartbeats; finite, ``0.1 <= value <= 3600`` (a beat
  of 0 would write the ledger in a busy loop).
- ``HRBENCH_GRACE_S``: seconds without a heartbeat after which another worker reclaims a job; finite,
  ``value <= 86400`` and greater than the heartbeat period (else a live, beating job is taken over and runs twice).
- ``HRBENCH_HOST_ID``: this machine's identity for the same-host dead-process rule; printable ASCII without
  spaces, at most 200 characters.
- ``HRBENCH_CACHE``: root of the mask and prepared-data caches; a folder, or a path where one can be made.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from .errors import ConfigError

DEFAULT_HEARTBEAT_S = 10.0
DEFAULT_GRACE_S = 60.0
HEARTBEAT_RANGE = (0.1, 3600.0)
GRACE_MAX = 86400.0
HOST_ID_MAX = 200

VARIABLES = ("HRBENCH_HEARTBEAT_S", "HRBENCH_GRACE_S", "HRBENCH_HOST_ID", "HRBENCH_CACHE")


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else None


def _seconds(name: str, default: float) -> float:
    text = _raw(name)
    if text is None:
        return default
    try:
        value = float(text.strip())
    except ValueError:
        raise ConfigError(f"{name}={text!r}: expected a number of seconds, e.g. {name}={default:g}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name}={text!r}: expected a finite number of seconds")
    return value


def heartbeat_s() -> float:
    """Heartbeat period of the job ledger in seconds (``HRBENCH_HEARTBEAT_S``, default 10)."""
    value = _seconds("HRBENCH_HEARTBEAT_S", DEFAULT_HEARTBEAT_S)
    lo, hi = HEARTBEAT_RANGE
    if not lo <= value <= hi:
        raise ConfigError(
            f"HRBENCH_HEARTBEAT_S={value:g}: `{lo:g} <= HRBENCH_HEARTBEAT_S <= {hi:g}` must hold "
            "(seconds between a running job's heartbeats)"
        )
    return value


def grace_s() -> float:
    """Grace period in seconds (``HRBENCH_GRACE_S``, default 60); greater than :func:`heartbeat_s`."""
    beat = heartbeat_s()
    value = _seconds("HRBENCH_GRACE_S", DEFAULT_GRACE_S)
    if not value <= GRACE_MAX:
        raise ConfigError(f"HRBENCH_GRACE_S={value:g}: `HRBENCH_GRACE_S <= {GRACE_MAX:g}` must hold")
    if not value > beat:
        raise ConfigError(
            f"HRBENCH_GRACE_S={value:g}: `HRBENCH_GRACE_S > HRBENCH_HEARTBEAT_S` must hold, but the "
            f"heartbeat is {beat:g} s (a live job would be reclaimed and run twice)"
        )
    return value


def ledger_timing() -> tuple[float, float]:
    """``(heartbeat_s, grace_s)``, both checked."""
    return heartbeat_s(), grace_s()


def host_id_override() -> str | None:
    """``HRBENCH_HOST_ID`` when set (``:`` replaced by ``_``: the worker id uses ``:`` as separator), else None."""
    text = _raw("HRBENCH_HOST_ID")
    if text is None:
        return None
    if len(text) > HOST_ID_MAX or not text.isascii() or not text.isprintable() or any(c.isspace() for c in text):
        raise ConfigError(
            f"HRBENCH_HOST_ID={text[:60]!r}: expected printable ASCII without spaces, at most "
            f"{HOST_ID_MAX} characters (a name for this machine)"
        )
    return text.replace(":", "_")


def cache_root() -> Path:
    """Root of the caches (``HRBENCH_CACHE``, default ``~/.cache/hrbench``): a folder, or a path that can be one."""
    text = _raw("HRBENCH_CACHE")
    if text is None:
        return Path.home() / ".cache" / "hrbench"
    if "\x00" in text:
        raise ConfigError("HRBENCH_CACHE: contains a NUL byte; expected a folder path")
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"HRBENCH_CACHE={text}: exists and is not a folder; expected a folder for the caches")
    return path


def check_all() -> None:
    """Check every variable at once (the command line calls this before a command writes anything)."""
    ledger_timing()
    host_id_override()
    cache_root()
