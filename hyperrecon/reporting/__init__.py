"""Reports: markdown with PNG figures for a finished run (see :mod:`hyperrecon.reporting.report`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    from .report import write_report as _write

    return _write(Path(run_dir), Path(out) if out is not None else None)


def report_summary(run_dir: str | Path) -> dict[str, Any]:
    from .report import report_summary as _summary

    return _summary(Path(run_dir))
