"""The command line: fast --help without torch, listing, validation, one-line errors with the right exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hyperrecon.cli import app

runner = CliRunner()
STUDIES = ["ao-brain", "ao-knee", "sl-brain-cs", "sl-knee-cs", "sl-knee-denoise", "sl-knee-sr"]


def test_importing_the_cli_does_not_import_torch() -> None:
    code = "import sys, hyperrecon.cli; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_help_lists_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in ("list", "validate", "data"):
        assert cmd in result.output


def test_list_studies_shows_the_six() -> None:
    result = runner.invoke(app, ["list", "studies", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == STUDIES
    assert all(r["description"] for r in rows)


def test_list_strategies() -> None:
    result = runner.invoke(app, ["list", "strategies", "--json"])
    names = [r["name"] for r in json.loads(result.output)]
    assert {"grid", "random", "tpe", "gp", "qmc"} <= set(names)


def test_list_unknown_kind() -> None:
    result = runner.invoke(app, ["list", "studys"])
    assert result.exit_code == 2
    assert "'studys' is not one of 'studies'" in result.output
    assert "(did you mean 'studies'?)" in result.output


def _one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["validate", "--study", "ao-kne"], "did you mean 'ao-knee'"),
        (["validate", "--study", "ao-knee", "--set", "train.stepz=3"], "did you mean 'steps'"),
        (["validate", "--study", "ao-knee", "--set", "train.steps=0"], "`steps >= 1` must hold"),
        (["validate", "--study", "ao-knee", "--set", "train.steps=abc"], "expected integer"),
        (["validate", "--study", "ao-knee", "--profile", "huge"], "'huge' is not one of 'smoke', 'quick'"),
        (["validate", "--study", "nowhere/missing.toml"], "study file not found"),
    ],
)
def test_config_errors_exit_2_with_one_line(args: list[str], expected: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert expected in _one_error_line(result)


def test_malformed_toml_through_the_cli(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nkind = \n')
    result = runner.invoke(app, ["validate", "--study", str(bad)])
    assert result.exit_code == 2
    line = _one_error_line(result)
    assert str(bad) in line and "malformed TOML" in line


def test_console_script_runs() -> None:
    exe = Path(sys.executable).parent / "hrbench"
    if not exe.exists():
        pytest.skip("package not installed as a console script in this environment")
    out = subprocess.run([str(exe), "list", "studies", "--json"], capture_output=True, text=True)
    assert out.returncode == 0 and "ao-knee" in out.stdout
