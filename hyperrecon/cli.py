"""The ``hrbench`` command line: thin Typer commands over library functions.

Importing this module must not import torch (``hrbench --help`` stays fast): heavy modules are imported inside
the commands. Errors the user can fix are printed as one red ``error:`` line with no traceback (under ``--json``:
one JSON object ``{"error": ..., "exit_code": ...}`` on stderr); exit code 2 for usage and config errors, 1 for
runtime errors (see :mod:`hyperrecon.errors`). Usage errors found by the parser (an unknown option, a value not
among the choices) take the same form. Output is safe under an ASCII locale (``LC_ALL=C PYTHONUTF8=0``): characters
the terminal cannot encode are spelled out (λ -> lambda) or replaced.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from . import __version__
from .config import PROFILES
from .console import ascii_safe_streams
from .errors import ConfigError, HyperReconError

if TYPE_CHECKING:
    from rich.progress import TaskID

RUN_FOLDER_DOC = "docs/run-folder.md"


class _Group(TyperGroup):
    """Typer's group with one change: usage errors found by the parser (an unknown option, a value outside its
    choices, a missing argument) are one ``error:`` line, or a JSON object under ``--json``, exit code 2; and the
    output streams are made safe for the terminal's encoding first."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        ascii_safe_streams()
        if not standalone_mode:
            return super().main(
                args, prog_name, complete_var, standalone_mode=False, windows_expand_args=windows_expand_args, **extra
            )
        argv = [str(a) for a in (sys.argv[1:] if args is None else args)]
        try:
            rv = super().main(
                argv, prog_name, complete_var, standalone_mode=False, windows_expand_args=windows_expand_args, **extra
            )
        except typer.TyperException as exc:  # the parser's errors (Click's UsageError family)
            if type(exc).__name__ == "NoArgsIsHelpError":  # `hrbench` or `hrbench data` alone: the help is shown
                sys.exit(exc.exit_code)
            command = getattr(getattr(exc, "ctx", None), "command_path", None) or "hrbench"
            _report_error(
                f"{command}: {_usage_message(exc.format_message())} (see {command} --help)",
                exc.exit_code,
                as_json="--json" in argv,
            )
            sys.exit(exc.exit_code)
        except typer.Abort:
            _report_error("aborted", 1, as_json="--json" in argv)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


def _usage_message(message: str) -> str:
    """Click's message, with a did-you-mean when a value is not among the choices."""
    message = message.replace("Value error, ", "")  # pydantic's prefix on Typer's choice errors
    found = re.search(r"'([^']*)' is not one of (.*?)\.?$", message)
    if found is None:
        return message
    from .registry import did_you_mean

    return message.rstrip(".") + did_you_mean(found.group(1), re.findall(r"'([^']*)'", found.group(2)))


app = typer.Typer(
    name="hrbench",
    cls=_Group,
    help="hrbench: measure what a HyperRecon hypernetwork buys against per-λ U-Nets and classic λ search.",
    epilog=f"Run folders and every file in them: {RUN_FOLDER_DOC}. Study files: docs/study-format.md.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(
    cls=_Group,
    help="Inspect the data a study uses.",
    no_args_is_help=True,
    epilog="Example: hrbench data preview --study ao-knee --profile smoke -o preview/",
)
app.add_typer(data_app, name="data")

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

#: Choices the parser checks and ``--help`` lists (derived from the config, so a new profile shows up here).
Profile = Literal[PROFILES]  # type: ignore[valid-type]
DEVICES = ("auto", "cpu", "cuda")


def _device(value: str) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    if value in DEVICES or re.fullmatch(r"cuda:\d+", value):
        return value
    raise typer.BadParameter(f"'{value}' is not one of 'auto', 'cpu', 'cuda', 'cuda:N'")


def _complete_device(incomplete: str) -> list[str]:
    return [d for d in (*DEVICES, "cuda:0") if d.startswith(incomplete)]


ProfileOpt = Annotated[Profile, typer.Option("--profile", "-p", help="run size (profiles of the study file)")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="override a value: key.sub=value (repeatable)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print machine-readable JSON instead of tables")]
StudyOpt = Annotated[str, typer.Option("--study", "-s", help="a bundled study name or a path to a .toml file")]
DataOpt = Annotated[str | None, typer.Option("--data", help="folder or file of real data (replaces data.path)")]
DeviceOpt = Annotated[
    str,
    typer.Option(
        "--device",
        parser=_device,
        autocompletion=_complete_device,
        metavar="[auto|cpu|cuda|cuda:N]",
        help="where to train and evaluate",
    ),
]


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"hrbench {__version__}", highlight=False)
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    pass


def _one_line(message: object) -> str:
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


def _error_line(message: str) -> None:
    """Print ``error: message`` as one line (messages may quote file contents: no markup, no line breaks)."""
    err_console.print(f"[bold red]error:[/] {escape(_one_line(message))}", highlight=False, soft_wrap=True)


def _report_error(message: str, exit_code: int, *, as_json: bool = False) -> None:
    """One ``error:`` line, or under ``--json`` one JSON object ``{"error", "exit_code"}`` on stderr."""
    if as_json:
        sys.stderr.write(json.dumps({"error": _one_line(message), "exit_code": exit_code}) + "\n")
        sys.stderr.flush()
    else:
        _error_line(message)


def handle_errors(fn: F) -> F:
    """Check the environment (:mod:`hyperrecon.settings`), then turn ``HyperReconError`` (and OS errors: a full
    disk, a vanished folder) into one ``error:`` line (a JSON object under ``--json``) and its exit code; keep
    tracebacks for bugs."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("as_json", False))
        try:
            from .settings import check_all

            check_all()  # a bad HRBENCH_* variable stops the command before it writes anything
            return fn(*args, **kwargs)
        except HyperReconError as exc:
            _report_error(str(exc), exc.exit_code, as_json=as_json)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            _report_error("interrupted; run again with --resume to continue", 130, as_json=as_json)
            raise typer.Exit(130) from None
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            _report_error(f"{where}{exc.strerror or exc}", 1, as_json=as_json)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (a scheduler's stop, ``Popen.terminate``) ends a run like Ctrl-C: the running job is requeued at
    once instead of waiting for its heartbeat to go stale."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def _overrides(values: list[str] | None, data: str | None = None) -> list[str]:
    out = list(values or [])
    if data is not None:
        out.append(f"data.path={json.dumps(data)}")
    return out


def _load(study: str, profile: str, set_: list[str] | None, data: str | None):
    """The study with ``--set`` overrides; ``--data`` replaces data.path and picks the reader for a built-in source."""
    from .config import load_study

    cfg = load_study(study, profile, _overrides(set_, data))
    if data is not None:
        from .resolve import with_data_path

        cfg = with_data_path(cfg)
    return cfg


# ---------------------------------------------------------------------------------------------------------------


LIST_KINDS = (
    "studies",
    "losses",
    "samplers",
    "strategies",
    "pruners",
    "models",
    "datasets",
    "metrics",
    "forward-models",
)
ListKind = Literal[LIST_KINDS]  # type: ignore[valid-type]


@app.command("list", epilog="Example: hrbench list strategies --json")
@handle_errors
def list_cmd(
    kind: Annotated[ListKind, typer.Argument(help="what to list")] = "studies",
    as_json: JsonOpt = False,
) -> None:
    """List registered names with one-line descriptions."""
    from .config import bundled_studies, read_toml
    from .registry import did_you_mean

    if kind not in LIST_KINDS:  # the parser checks too; a direct call lands here
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


@app.command(epilog="Example: hrbench validate --study sl-knee-cs --profile smoke --set train.steps=50")
@handle_errors
def validate(
    study: StudyOpt,
    profile: ProfileOpt = "quick",
    set_: SetOpt = None,
    data: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Load a study, resolve every plugin name, check every value, build the cheap objects; train nothing."""
    from .resolve import resolve

    cfg = _load(study, profile, set_, data)
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


@data_app.command("preview", epilog="Example: hrbench data preview --study sl-brain-cs --data ~/subjects -o preview/")
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
    from .resolve import preview_study

    cfg = _load(study, profile, set_, data)
    summary = preview_study(cfg, out)
    if as_json:
        _print_json(summary)
        return
    console.print(f"[bold green]wrote[/] {Path(str(summary.get('png'))).resolve()}", highlight=False)
    for key, value in summary.items():
        if key != "png":
            console.print(f"[cyan]{key}[/]: {json.dumps(value, default=str)}")


class _RunProgress:
    """Rich progress for a run: one bar over jobs, one for the current job's steps or evaluation."""

    def __init__(self, quiet: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.quiet = quiet
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            transient=False,
            disable=quiet,
        )
        self.jobs_task: TaskID | None = None
        self.step_task: TaskID | None = None
        self.n_jobs = 0

    def __enter__(self) -> _RunProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event == "enqueued":
            self.n_jobs = int(info.get("total", len(info["jobs"])))
            if self.jobs_task is None:
                self.jobs_task = self.bar.add_task(
                    "jobs", total=max(self.n_jobs, 1), completed=int(info.get("done", 0))
                )
        elif event == "job-start":
            if self.step_task is not None:
                self.bar.remove_task(self.step_task)
            self.step_task = self.bar.add_task(f"  {info['job']}", total=None)
        elif event == "job-done" and self.jobs_task is not None:
            self.bar.advance(self.jobs_task)
        elif event == "step" and self.step_task is not None:
            self.bar.update(self.step_task, completed=info.get("step", 0), total=info.get("total"))
        elif event == "eval" and self.step_task is not None:
            self.bar.update(self.step_task, completed=info.get("done", 0), total=info.get("total"))
        elif event == "status" and self.jobs_task is not None:
            done = sum(1 for v in info["status"].values() if v == "COMPLETE")
            self.bar.update(self.jobs_task, completed=done, total=max(len(info["status"]), 1))


@app.command(
    epilog="Example: hrbench run --study sl-knee-cs --profile smoke --out runs/try  "
    f"(what the run folder holds: {RUN_FOLDER_DOC})"
)
@handle_errors
def run(
    study: StudyOpt,
    profile: ProfileOpt = "quick",
    data: DataOpt = None,
    device: DeviceOpt = "auto",
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="run folder (default runs/<study>/<time>-<profile>)")
    ] = None,
    storage: Annotated[
        str | None, typer.Option("--storage", help="job ledger: a journal file path or postgresql://...")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", "-w", min=1, help="local worker processes")] = 1,
    resume: Annotated[bool, typer.Option("--resume", help="continue the run in --out (or the latest run)")] = False,
    enqueue_only: Annotated[
        bool,
        typer.Option(
            "--enqueue-only",
            help="make the run and queue its jobs, run none: start `hrbench worker`s, then "
            "`--resume` merges the results",
        ),
    ] = False,
    set_: SetOpt = None,
    no_report: Annotated[bool, typer.Option("--no-report", help="skip writing report.md")] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="print the job list and the estimated wall time (a few seconds of calibration); "
            "train nothing, write no run folder",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run a study: train HyperRecon variants, FiLM, baselines and the segmentation net; evaluate; search; report."""
    from .runs.orchestrate import execute, prepare_run

    cfg = _load(study, profile, set_, data)
    t0 = __import__("time").perf_counter()
    if dry_run:
        _dry_run(cfg, device, as_json)
        return
    run_ = prepare_run(cfg, out=out, resume=resume, storage=storage, device=device)
    if enqueue_only:
        _enqueue_only(run_, as_json)
        return
    if not as_json:
        err_console.print(
            f"[bold]hrbench run[/] {cfg.name} ({cfg.profile}) -> {run_.run_dir.resolve()}  "
            f"device {run_.device} {run_.precision}",
            highlight=False,
        )
    estimate = None if resume else _estimate_for(run_)  # a resumed run: part of its work is done
    if estimate is not None and not as_json:
        _print_estimate(estimate)
    with _sigterm_interrupts(), _RunProgress(quiet=as_json) as progress:
        summary = execute(run_, workers=workers, progress=progress, device=device)
    if not no_report:
        from .reporting import write_report

        summary["report"] = str(Path(write_report(run_.run_dir)).resolve())
    summary["wall_seconds"] = round(__import__("time").perf_counter() - t0, 1)
    if estimate is not None:
        summary["estimated_wall_seconds"] = round(estimate.total_s, 1)
    if as_json:
        _print_json(summary)
    else:
        console.print(f"[bold green]done[/] in {summary['wall_seconds']} s: {run_.run_dir.resolve()}", highlight=False)
        if "report" in summary:
            console.print(f"report: {summary['report']}", highlight=False)
        console.print(f"what each file and column means: {RUN_FOLDER_DOC}", highlight=False)


def _estimate_for(run_: Any):
    """The estimate of a new run (its data already loaded; the calibration writes nothing)."""
    from .estimate import plan

    return plan(run_.study, device=run_.device, bundle=run_.bundle).estimate


def _print_estimate(est: Any) -> None:
    from .estimate import format_seconds

    phases = ", ".join(f"{k} {format_seconds(v)}" for k, v in est.by_phase().items())
    err_console.print(
        f"estimated wall time on this machine: {format_seconds(est.total_s)} ({phases}; from "
        f"{format_seconds(est.calibration.seconds)} of calibration)",
        highlight=False,
        soft_wrap=True,
    )


def _dry_run(cfg: Any, device: str, as_json: bool) -> None:
    """``hrbench run --dry-run``: the jobs a new run executes, in order, and their estimated seconds."""
    from .estimate import format_seconds, plan

    p = plan(cfg, device=device)
    rows = p.estimate.jobs
    if as_json:
        _print_json(
            {
                "study": cfg.name,
                "profile": cfg.profile,
                "device": p.device,
                "precision": p.precision,
                "jobs": [j.name for j in p.jobs],
                "estimate": p.estimate.to_dict(),
            }
        )
        return
    table = Table(
        title=f"{cfg.name} ({cfg.profile}): {len(rows)} jobs, device {p.device} {p.precision}", header_style="bold"
    )
    for col in ("phase", "job", "work", "estimate"):
        table.add_column(col, justify="right" if col == "estimate" else "left")
    for r in rows:
        table.add_row(str(r["phase"]), r["name"], r["work"], format_seconds(r["seconds"]))
    console.print(table)
    _print_estimate(p.estimate)
    console.print("dry run: nothing trained, no run folder written")


def _enqueue_only(run_: Any, as_json: bool) -> None:
    from .runs.ledger import _redact
    from .runs.orchestrate import context_for, enqueue

    added = enqueue(run_, context_for(run_))
    info = {
        "run_dir": str(run_.run_dir.resolve()),
        "run_id": run_.run_id,
        "storage": _redact(run_.storage),
        "enqueued": added,
    }
    if as_json:
        _print_json(info)
        return
    console.print(
        f"[bold green]queued[/] {len(added)} job(s) of {escape(run_.run_id)} in {escape(info['storage'])}",
        highlight=False,
    )
    console.print(
        f"start workers: hrbench worker --run-dir {escape(info['run_dir'])}  (or --study "
        f"{escape(run_.study.name)} --storage URL); then merge: hrbench run --study ... --out "
        f"{escape(info['run_dir'])} --resume",
        highlight=False,
        soft_wrap=True,
    )


@app.command(
    epilog="Example: hrbench worker --run-dir runs/sl-knee-cs/20250101-120000-quick  (or --study "
    "sl-knee-cs --storage postgresql://host/db)"
)
@handle_errors
def worker(
    run_dir: Annotated[Path | None, typer.Option("--run-dir", help="the run folder (shared file system)")] = None,
    study: Annotated[
        str | None, typer.Option("--study", "-s", help="with --storage: serve the newest run of it")
    ] = None,
    storage: Annotated[
        str | None, typer.Option("--storage", help="the job ledger (postgresql://... or journal file)")
    ] = None,
    device: DeviceOpt = "auto",
) -> None:
    """Take jobs of a run from its ledger until none are left (start many, on many machines)."""
    from .runs.orchestrate import context_for, run_for_worker, work

    run_ = run_for_worker(run_dir=run_dir, storage=storage, study_name=study, device=device)

    def log(event: str, info: dict[str, Any]) -> None:
        if event in ("job-start", "job-done", "job-superseded"):
            err_console.print(f"{event} {escape(info['job'])}", highlight=False)

    with _sigterm_interrupts():
        n = work(run_, context_for(run_), on_job=log)
    console.print(f"worker done: {n} job(s) run")


@app.command(epilog="Example: hrbench report runs/sl-knee-cs/20250101-120000-quick -o elsewhere/report.md")
@handle_errors
def report(
    run_dir: Annotated[Path, typer.Argument(help="a run folder")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="report file (default RUN_DIR/report.md)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write report.md with figures for a finished run."""
    from .reporting import report_summary, write_report

    path = write_report(run_dir, out=out)
    if as_json:
        _print_json(report_summary(run_dir))
    else:
        console.print(
            f"[bold green]wrote[/] {Path(path).resolve()}  (files of a run: {RUN_FOLDER_DOC})", highlight=False
        )


@app.command()
@handle_errors
def explore(
    run_dir: Annotated[Path, typer.Argument(help="a run folder (finished, or partly: trained models are enough)")],
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="port (0: any free one)")] = 8765,
    host: Annotated[str, typer.Option("--host", help="address to listen on (loopback by default)")] = "127.0.0.1",
    no_browser: Annotated[bool, typer.Option("--no-browser", help="do not open a browser")] = False,
    export: Annotated[Path | None, typer.Option("--export", help="write one self-contained page.html and exit")] = None,
    export_points: Annotated[
        int | None,
        typer.Option("--export-points", help="λ grid points per axis of --export (default 21 for one λ, 7 for two)"),
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="with --save: the conditional model")] = None,
    lam: Annotated[str | None, typer.Option("--lam", help="with --save: λ, e.g. 0.3 or 0.3,0.7")] = None,
    save: Annotated[
        Path | None,
        typer.Option(
            "--save", help="write --model's reconstructions of every test slice at --lam to this .npz and exit"
        ),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda")] = "cpu",
) -> None:
    """Move λ and watch the reconstruction change, live, in a local web page over a trained run."""
    from .errors import ConfigError
    from .explore.export import check_out, check_points
    from .explore.session import RequestError, check_save_path, open_explorer

    if save is not None:  # option checks first: a mistake costs no model loading
        check_save_path(save)
        if model is None or lam is None:
            raise ConfigError('--save needs --model and --lam (the page\'s "copy λ" gives all three)')
    if export is not None:
        check_out(export)
        check_points(export_points)
    ex = open_explorer(run_dir, device=device)
    if save is not None:
        try:
            name, values = ex.parse_model(model), ex.parse_lam(lam)
        except RequestError as exc:
            raise ConfigError(f"--model/--lam: {exc}") from None
        console.print(f"[bold green]wrote[/] {escape(str(ex.save(name, values, save)))}", highlight=False)
        return
    if export is not None:
        from .explore.export import export_page

        path = export_page(ex, export, points=export_points)
        console.print(f"[bold green]wrote[/] {escape(str(path))}", highlight=False)
        return
    from .explore.server import make_server, serve

    server = make_server(ex, host=host, port=port)
    console.print(
        f"[bold]hrbench explore[/] {escape(str(run_dir))}: {server.url}  (Ctrl-C stops)",
        highlight=False,
        soft_wrap=True,
    )
    if not no_browser:
        import webbrowser

        webbrowser.open(server.url)
    try:
        serve(server)
    except KeyboardInterrupt:
        console.print("stopped")
    # Leave without interpreter finalisation. torch's native thread pools (and a daemon request thread that may
    # still be inside a torch call) can abort in their static destructors at exit: "terminate called without an
    # active exception", SIGABRT, seen on a loaded CI machine after Ctrl-C. The explorer writes nothing, so only
    # the streams need flushing.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def main() -> None:  # pragma: no cover - console entry point helper
    app(prog_name="hrbench")


if __name__ == "__main__":  # pragma: no cover
    main()
