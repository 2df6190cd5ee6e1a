"""Terminal output that works under any locale: characters the stream cannot encode are spelled out.

Under ``LC_ALL=C PYTHONUTF8=0`` Python writes ASCII and raises ``UnicodeEncodeError`` on the first "λ" of a help
text or a message. :func:`ascii_safe_streams` switches stdout and stderr to an error handler that writes ``lambda``
for λ (and the like for the other symbols the project prints) and ``?`` for anything else, so every command's
output, help included, still works; a UTF-8 terminal is left untouched.
"""

from __future__ import annotations

import codecs
import sys

#: Spelled-out forms of the non-ASCII characters the project's texts use.
SPELLED = {
    "λ": "lambda",
    "Λ": "Lambda",
    "σ": "sigma",
    "Δ": "Delta",
    "μ": "u",
    "µ": "u",
    "ε": "eps",
    "−": "-",
    "–": "-",
    "—": "--",
    "‐": "-",
    "²": "^2",
    "³": "^3",
    "×": "x",
    "·": "*",
    "±": "+/-",
    "≥": ">=",
    "≤": "<=",
    "≈": "~",
    "≠": "!=",
    "∈": "in",
    "→": "->",
    "←": "<-",
    "…": "...",
    "•": "*",
    "‘": "'",
    "’": "'",
    "“": '"',
    "”": '"',
    "━": "-",
    "─": "-",
    "│": "|",
    "╭": "+",
    "╮": "+",
    "╰": "+",
    "╯": "+",
    "\u00a0": " ",
}
ERRORS = "hrbench-spell"


def _spell(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    text = exc.object[exc.start : exc.end]
    return "".join(SPELLED.get(c, "?") for c in text), exc.end


codecs.register_error(ERRORS, _spell)


def spell(text: str, encoding: str = "ascii") -> str:
    """``text`` as it will appear on a stream of ``encoding`` (``λ`` -> ``lambda`` under ASCII)."""
    return text.encode(encoding, errors=ERRORS).decode(encoding)


def ascii_safe_streams() -> None:
    """Make ``sys.stdout`` and ``sys.stderr`` spell out what their encoding cannot hold (no-op under UTF-8)."""
    for stream in (sys.stdout, sys.stderr):
        encoding = getattr(stream, "encoding", None)
        reconfigure = getattr(stream, "reconfigure", None)
        if not encoding or reconfigure is None:
            continue
        try:
            "λ—━".encode(encoding)
        except UnicodeEncodeError:
            reconfigure(errors=ERRORS)
        except LookupError:  # an encoding Python does not know: leave the stream alone
            continue
