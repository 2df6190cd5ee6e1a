"""Sentences generated from the paper-claims table (:mod:`.claims`) and nothing else.

Each finding restates one row of the table (its verdict, statistic, interval and reason), so the findings never say
more than the table does; :func:`cannot_test` lists, for the top of the report, what this run cannot test and why.
The sections below the findings still show every number; only the table draws conclusions.
"""

from __future__ import annotations

import math
from typing import Any

_UNITS_NOTE = "95% CI over replicates"


def _num(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{float(v):.{digits}g}"


def claim_sentence(row: dict[str, Any]) -> str:
    """``(a) <claim>: <verdict> — <statistic> = <value> (95% CI lo to hi, n replicates); <reason>.``"""
    text = f"({row['id']}) {row['claim']}: **{row['verdict']}**"
    if row.get("value") is not None:
        text += f" — {row['statistic']} = {_num(row['value'])}"
        if row.get("ci"):
            lo, hi = row["ci"]
            text += f" ({_UNITS_NOTE}: {_num(lo)} to {_num(hi)}, {row['n']} replicates)"
        else:
            text += f" ({row['n']} replicate{'s' if row['n'] != 1 else ''}, no CI)"
    if row.get("reason"):
        text += f"; {row['reason']}"
    return text + "."


def cannot_test(summary: dict[str, Any]) -> str | None:
    """The block at the top of a report: the claims this run cannot test, each with its reason, and the scale
    (profile, replicates, units) they follow from; None when every claim got a verdict."""
    rows = [r for r in summary.get("claims", []) if r["verdict"] == "not testable"]
    if not rows:
        return None
    meta = summary.get("claims_meta", {})
    n_rep = meta.get("n_replicates", 1)
    scale = (
        f"profile `{summary.get('profile')}`, {n_rep} replicate{'s' if n_rep != 1 else ''}"
        f"{' (no replicates: no confidence intervals)' if n_rep == 1 else ''}, "
        f"{meta.get('n_units', '?')} (replicate, subject) test units"
    )
    items = "; ".join(f"({r['id']}) {r['claim'].split(': ', 1)[-1]} — {r['reason']}" for r in rows)
    return f"**What this run cannot test** ({scale}): {items}."


def findings(summary: dict[str, Any]) -> list[str]:
    """One sentence per claims-table row, in table order; a smoke run says first that it tests the pipeline."""
    out: list[str] = []
    if summary.get("profile") == "smoke":
        out.append(
            "This is a smoke run (tiny data, a few training steps): the numbers test the pipeline, not the method."
        )
    out += [claim_sentence(r) for r in summary.get("claims", [])]
    return out
