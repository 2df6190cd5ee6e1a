"""What users of Typer/Rich command lines reach for first: --version, python -m, shell completion, typed choices
with examples, one-line parser errors, JSON errors under --json, and output that survives an ASCII locale."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import version

import pytest
from typer.testing import CliRunner

import hyperrecon
from hyperrecon.cli import app
from hyperrecon.config import PROFILES

runner = CliRunner()
COMMANDS = [["list"], ["validate"], ["run"], ["worker"], ["report"], ["data"], ["data", "preview"]]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HRBENCH_", "_HRBENCH", "PYTHONIOENCODING"))}
    env.update(extra)
    return env


def test_version_is_the_package_metadata() -> None:
    assert hyperrecon.__version__ == version("hyperrecon")
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"hrbench {version('hyperrecon')}"
    out = subprocess.run([sys.executable, "-m", "hyperrecon", "--version"], capture_output=True, text=True, env=_env())
    assert out.returncode == 0 and out.stdout.strip() == f"hrbench {version('hyperrecon')}"


@pytest.mark.parametrize(("shell", "marker"), [("bash", "complete -o"), ("zsh", "compdef"), ("fish", "complete")])
def test_completion_scripts(shell: str, marker: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "hyperrecon"],
        capture_output=True,
        text=True,
        env=_env(_HRBENCH_COMPLETE=f"source_{shell}"),
    )
    assert out.returncode == 0, out.stderr
    assert "_HRBENCH_COMPLETE" in out.stdout and marker in out.stdout
    if shutil.which(shell) and shell == "bash":  # the script parses
        check = subprocess.run([shell, "-n"], input=out.stdout, text=True, capture_output=True)
        assert check.returncode == 0, check.stderr


def _complete(words: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "hyperrecon"],
        capture_output=True,
        text=True,
        env=_env(_HRBENCH_COMPLETE="complete_bash", COMP_WORDS=words, COMP_CWORD=str(len(words.split(" ")) - 1)),
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_completion_offers_the_choices() -> None:
    assert _complete("hrbench run --profile ") == list(PROFILES)
    assert _complete("hrbench run --device c") == ["cpu", "cuda", "cuda:0"]
    assert "strategies" in _complete("hrbench list s") and "studies" in _complete("hrbench list s")


def test_help_lists_choices_and_an_example() -> None:
    for cmd in COMMANDS:
        result = runner.invoke(app, [*cmd, "--help"])
        assert result.exit_code == 0, result.output
        assert "Example: hrbench" in result.output, cmd
    # a wide terminal, so that the choices do not wrap inside the help table's column
    run_help = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "250", "TERMINAL_WIDTH": "250"}).output
    assert "|".join(PROFILES) in run_help and "auto|cpu|cuda|cuda:N" in run_help
    assert "forward-models" in runner.invoke(app, ["list", "--help"]).output


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["run", "--study", "x", "--device", "tpu"], ["--device", "'tpu'", "did you mean 'cpu'"]),
        (["run", "--study", "x", "--profile", "quik"], ["--profile", "'quik' is not one of", "did you mean 'quick'"]),
        (["list", "samplerz"], ["'samplerz' is not one of", "did you mean 'samplers'"]),
        (["run", "--bogus"], ["No such option: --bogus"]),
    ],
)
def test_parser_errors_are_one_line(args: list[str], needles: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for needle in needles:
        assert needle in lines[0]


@pytest.mark.parametrize(
    ("args", "env", "code", "needle"),
    [
        (["validate", "--study", "ao-knee", "--set", "train.steps=0", "--json"], {}, 2, "steps >= 1"),
        (["list", "samplerz", "--json"], {}, 2, "samplerz"),
        (["report", "/nonexistent/run", "--json"], {}, 1, "/nonexistent/run"),
        (["list", "--json"], {"HRBENCH_GRACE_S": "abc"}, 2, "HRBENCH_GRACE_S"),
    ],
)
def test_json_errors_are_a_json_object_on_stderr(args, env, code, needle) -> None:
    out = subprocess.run([sys.executable, "-m", "hyperrecon", *args], capture_output=True, text=True, env=_env(**env))
    assert out.returncode == code
    assert out.stdout == ""
    obj = json.loads(out.stderr)
    assert obj["exit_code"] == code and needle in obj["error"]


def test_every_command_works_under_an_ascii_locale() -> None:
    """``LC_ALL=C PYTHONUTF8=0``: ASCII streams; help texts and messages hold λ, which is spelled out."""
    script = (
        "import sys\nfrom hyperrecon.cli import app\ncodes = []\n"
        f"for args in {[[*c, '--help'] for c in COMMANDS] + [[]]!r} + [['validate', '--study', 'ao-knee', "
        "'--set', 'baselines.grid=[2.0]'], ['list', 'studies'], ['validate', '--study', 'sl-knee-cs']]:\n"
        "    try:\n        app(args, prog_name='hrbench')\n    except SystemExit as e:\n        codes.append(e.code)\n"
        "print('CODES', codes)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, env=_env(LC_ALL="C", PYTHONUTF8="0"))
    stdout, stderr = out.stdout.decode("ascii"), out.stderr.decode("ascii")  # nothing but ASCII came out
    assert out.returncode == 0, stderr
    assert "Traceback" not in stdout + stderr
    codes = json.loads(stdout.rsplit("CODES", 1)[1].strip().replace("None", "0"))
    assert codes == [0] * len(COMMANDS) + [2, 2, 0, 0]
    assert "per-lambda U-Nets" in stdout  # the app's help, spelled out
    assert "every lambda in [0, 1]" in stderr
