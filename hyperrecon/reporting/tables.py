"""Markdown tables and number formatting for the report.

Every cell is a string made here, so a missing value is shown as ``—`` (with the reason in the text around the
table), never as ``nan``. ``md_table`` refuses a table with no rows or with no finite number at all: the report
fails loudly (``RunError``) rather than printing an empty or NaN table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

from ..errors import RunError

MISSING = "—"


def is_number(x: Any) -> bool:
    """A finite real number (bools excluded)."""
    if isinstance(x, bool) or x is None:
        return False
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def fmt_num(x: Any, digits: int = 3, signed: bool = False) -> str:
    """Fixed-point with ``digits`` decimals; ``—`` for None/NaN/inf."""
    if not is_number(x):
        return MISSING
    return f"{float(x):+.{digits}f}" if signed else f"{float(x):.{digits}f}"


def fmt_sig(x: Any, sig: int = 3) -> str:
    """Significant digits (``0.000123``, ``1.23e+04`` only for very large/small values)."""
    if not is_number(x):
        return MISSING
    v = float(x)
    if v == 0:
        return "0"
    if 1e-3 <= abs(v) < 1e5:
        decimals = max(0, sig - 1 - math.floor(math.log10(abs(v))))
        return f"{v:.{decimals}f}"
    return f"{v:.{sig - 1}e}"


def fmt_seconds(x: Any) -> str:
    """Seconds with a human unit: ``0.42 s``, ``12.3 min``, ``4.1 h``."""
    if not is_number(x):
        return MISSING
    v = float(x)
    if abs(v) < 600:
        return f"{fmt_sig(v, 3)} s"
    if abs(v) < 3 * 3600:
        return f"{v / 60:.1f} min"
    return f"{v / 3600:.1f} h"


def fmt_mib(x: Any) -> str:
    """Memory in MiB with a human unit: ``812 MiB``, ``3.2 GiB``; a missing or zero figure is ``MISSING``."""
    if not is_number(x) or float(x) <= 0:
        return MISSING
    v = float(x)
    return f"{v / 1024:.1f} GiB" if v >= 1024 else f"{v:.0f} MiB"


def fmt_params(n: Any) -> str:
    """Parameter count as the paper writes it: ``149K``, ``4.9M``, ``53M``."""
    if not is_number(n):
        return MISSING
    v = float(n)
    if v >= 1e7:
        return f"{v / 1e6:.0f}M"
    if v >= 1e6:
        return f"{v / 1e6:.1f}M"
    if v >= 1e3:
        return f"{v / 1e3:.0f}K"
    return f"{v:.0f}"


def fmt_p(p: Any) -> str:
    if not is_number(p):
        return MISSING
    return "<0.001" if float(p) < 1e-3 else f"{float(p):.3f}"


def fmt_lam(lam: Sequence[float] | float | None, digits: int = 3) -> str:
    """``0.25`` or ``(0.5, 1)``; ``—`` when any value is missing."""
    if lam is None:
        return MISSING
    values = [lam] if not isinstance(lam, list | tuple) else list(lam)
    if not values or not all(is_number(v) for v in values):
        return MISSING
    text = [f"{float(cast(float, v)):.{digits}g}" for v in values]  # numbers: checked above
    return text[0] if len(text) == 1 else f"({', '.join(text)})"


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|").replace("\n", " ")


def md_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, name: str, align: Sequence[str] | None = None
) -> str:
    """A GitHub-markdown table. ``align`` per column: ``l`` | ``r`` (default: first column left, others right).

    ``name`` names the table in the error raised for no rows, or for rows whose cells (past the first column)
    hold no number at all.
    """
    if not rows:
        raise RunError(f"{name}: no rows to report; expected at least one")
    if any(len(r) != len(header) for r in rows):
        raise RunError(f"{name}: ragged table (expected {len(header)} cells per row)")
    body_cells = [c for r in rows for c in r[1:]]
    if body_cells and all(c == MISSING for c in body_cells):
        raise RunError(f"{name}: every value is missing (NaN); expected numbers")
    align = list(align) if align is not None else ["l"] + ["r"] * (len(header) - 1)
    rule = [":---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(_escape(h) for h in header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(_escape(str(c)) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def drop_empty_columns(
    header: list[str], rows: list[list[str]], keep_first: int = 1
) -> tuple[list[str], list[list[str]]]:
    """Remove columns (after the first ``keep_first``) in which every cell is missing."""
    keep = [i for i in range(len(header)) if i < keep_first or any(r[i] != MISSING for r in rows)]
    return [header[i] for i in keep], [[r[i] for i in keep] for r in rows]
