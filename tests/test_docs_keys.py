"""docs/study-format.md documents every key of the study schema (walked from the pydantic dataclasses)."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

from hyperrecon.config import _TOP_KEYS, SECTIONS, Study

DOC = Path(__file__).resolve().parents[1] / "docs" / "study-format.md"
#: filled by the loader, not written in a study file
NOT_IN_FILES = {"profile", "source_file"}


def schema_keys() -> list[str]:
    """Every key a study file may hold: top-level keys, then ``section.key`` for every field of every section."""
    top = [f.name for f in dataclasses.fields(Study) if f.name not in SECTIONS and f.name not in NOT_IN_FILES]
    nested = [f"{section}.{f.name}" for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)]
    return top + nested


def documented_keys() -> set[str]:
    """The keys in the first column of the doc's tables (a cell may list several, e.g. `a.b`, `c.d`)."""
    keys: set[str] = set()
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = line.split("|")
        if line.startswith("|") and len(cells) > 2:
            keys.update(re.findall(r"`([a-z_]+(?:\.[a-z_]+)?)`", cells[1]))
    return keys


def test_every_schema_key_is_documented() -> None:
    missing = [key for key in schema_keys() if key not in documented_keys()]
    assert not missing, f"docs/study-format.md lacks a table row for {missing}"


def test_the_walk_sees_every_section_and_top_level_key() -> None:
    keys = schema_keys()
    assert {"name", "kind", "seed", "replicates", "plugins"} <= set(keys) and "profile" not in keys
    assert {k.split(".")[0] for k in keys if "." in k} == set(SECTIONS)
    assert set(_TOP_KEYS) - {"profiles"} <= set(keys)
    assert "hyper.model" in keys and "search.pruner_params" in keys


def test_a_missing_row_is_noticed(tmp_path: Path, monkeypatch) -> None:
    text = DOC.read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| `hyper.model` |"))
    stripped = tmp_path / "study-format.md"
    stripped.write_text(text.replace(row + "\n", ""), encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "DOC", stripped)
    assert "hyper.model" not in documented_keys()
