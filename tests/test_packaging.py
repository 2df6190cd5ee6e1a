"""What a wheel ships: every subpackage (the shipped contract checks included), py.typed, the studies."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_every_subpackage_is_listed() -> None:
    listed = set(CONFIG["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "hyperrecon").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert found <= listed, f"pyproject [tool.setuptools] packages lacks {sorted(found - listed)}"
    assert "hyperrecon.testing" in listed


def test_py_typed_ships() -> None:
    assert (ROOT / "hyperrecon" / "py.typed").is_file()
    assert "py.typed" in CONFIG["tool"]["setuptools"]["package-data"]["hyperrecon"]


def test_pre_commit_runs_ruff_and_mypy() -> None:
    text = (ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8")
    for hook in ("id: ruff-format", "id: ruff-check", "id: mypy"):
        assert hook in text
    assert CONFIG["tool"]["mypy"]["files"] == ["hyperrecon"]
