"""The ``hrbench`` command line: thin Typer commands over library functions.

Importing this module must not import torch (``hrbench --help`` stays fast): heavy modules are imported inside
the commands. Errors the user can fix are printed as one red ``error:`` line with no traceback; exit code 2 for
usage and config errors, 1 for runtime errors (see :mod:`hyperrecon.errors`).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from .errors import HyperReconError

app = typer.Typer(
    name="hrbench",
    help="hrbench: measure what a HyperRecon hypernetwork buys against per-λ U-Nets and classic λ search.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect the data a study uses.", no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

ProfileOpt = Annotated[str, typer.Option("--profile", "-p", help="smoke | quick | paper")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="override a value: key.sub=value (repeatable)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print machine-readable JSON instead of tables")]
StudyOpt = Annotated[str, typer.Option("--study", "-s", help="a bundled study name or a path to a .toml file")]
DataOpt = Annotated[str | None, typer.Option("--data", help="folder or file of real data (replaces data.path)")]


def handle_errors(fn: F) -> F:
    """Turn ``HyperReconError`` into one ``error:`` line and its exit code; keep tracebacks for bugs."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except HyperReconError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("[bold red]error:[/] interrupted; run again with --resume to continue", highlight=False)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def _overrides(values: list[str] | None, data: str | None = None) -> list[str]:
    out = list(values or [])
    if data is not None:
        out.append(f"data.path={json.dumps(data)}")
    return out


# ---------------------------------------------------------------------------------------------------------------


LIST_KINDS = ("studies", "losses", "samplers", "strategies", "models", "datasets", "metrics", "forward-models")


@app.command("list")
@handle_errors
def list_cmd(
    kind: Annotated[str, typer.Argument(help=" | ".join(LIST_KINDS))] = "studies",
    as_json: JsonOpt = False,
) -> None:
    """List registered names with one-line descriptions."""
    from .config import bundled_studies, read_toml
    from .errors import ConfigError
    from .registry import did_you_mean

    if kind not in LIST_KINDS:
        raise ConfigError(f"unknown kind '{kind}'{did_you_mean(kind, LIST_KINDS)}; valid: {', '.join(LIST_KINDS)}")
    if kind == "studies":
        rows = [(name, str(read_toml(path).get("description", ""))) for name, path in bundled_studies().items()]
    else:
        from .plugins import registry

        reg = registry(kind)
        rows = [(name, reg.describe(name)) for name in reg.names()]
    if as_json:
        _print_json([{"name": n, "description": d} for n, d in rows])
        return
    table = Table(title=kind, show_header=True, header_style="bold")
    table.add_column("name", style="cyan", no_wrap=True)
    table.add_column("description")
    for name, desc in rows:
        table.add_row(name, desc)
    console.print(table)


@app.command()
@handle_errors
def validate(
    study: StudyOpt,
    profile: ProfileOpt = "quick",
    set_: SetOpt = None,
    data: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Load a study, resolve every plugin name, check every value, build the cheap objects; train nothing."""
    from .config import load_study
    from .resolve import resolve

    cfg = load_study(study, profile, _overrides(set_, data))
    summary = resolve(cfg)
    if as_json:
        _print_json({"study": cfg.to_dict(), "config_hash": cfg.config_hash(), "resolved": summary})
        return
    console.print(f"[bold green]ok[/] {cfg.name} ({cfg.profile}) from {cfg.source_file}  hash {cfg.config_hash()}")
    _print_config(cfg.to_dict())
    table = Table(title="resolved objects", header_style="bold")
    table.add_column("object", style="cyan")
    table.add_column("details")
    for key, value in summary.items():
        table.add_row(key, value if isinstance(value, str) else json.dumps(value, default=str))
    console.print(table)


def _print_config(d: dict[str, Any]) -> None:
    table = Table(title="resolved config", header_style="bold")
    table.add_column("key", style="cyan", no_wrap=True)
    table.add_column("value")
    for key, value in d.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                table.add_row(f"{key}.{sub}", json.dumps(v, default=str))
        else:
            table.add_row(key, json.dumps(value, default=str))
    console.print(table)


@data_app.command("preview")
@handle_errors
def data_preview(
    study: StudyOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for preview.png")],
    profile: ProfileOpt = "quick",
    data: DataOpt = None,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a PNG montage (target, network input, mask or kernel, labels) and print split statistics."""
    from .config import load_study
    from .resolve import preview_study

    cfg = load_study(study, profile, _overrides(set_, data))
    summary = preview_study(cfg, out)
    if as_json:
        _print_json(summary)
        return
    console.print(f"[bold green]wrote[/] {summary.get('png')}")
    for key, value in summary.items():
        if key != "png":
            console.print(f"[cyan]{key}[/]: {json.dumps(value, default=str)}")


def main() -> None:  # pragma: no cover - console entry point helper
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
