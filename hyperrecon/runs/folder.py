"""The run folder: every path of a run, and the one reader and checker of ``run.json`` and ``config.json``.

Run folder (``runs/<study>/<timestamp>-<profile>/`` unless ``--out``)::

    run.json            format version, run id, storage URL (``ledger``: the journal's name inside the folder, so
                        that a moved or copied run folder keeps its own ledger), threads, provenance
    config.json         the fully resolved study (``--resume`` refuses a different one)
    ledger.journal      the job ledger (Optuna journal file) unless --storage names a database
    scales.json         loss scales in use (given, or computed by the ``scales`` job)
    checkpoints/        training checkpoints (resume mid-job)         models/   final weights per model
    jobs/<job>.json     what each job did and cost                    eval/     per-model evaluation outputs
    search/             per-target search trials, fidelity.csv        figures/  report figures
    results.csv, metrics.csv, costs.csv, convergence.csv, dice_reference.csv, search.csv, search_summary.csv,
    search_parallel.csv, search_mo.csv, summary.json, report.md
    replicates/r<r>/    replicate r >= 1 (``replicates = N``): its own scales, checkpoints, models, jobs, eval

Every file, column and key is described in ``docs/run-folder.md``. This module imports neither torch nor pandas.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import RunError
from ..io import atomic_create_bytes

RUN_FORMAT = 1
"""The run folder format of this version; a folder of another format is refused (start a new run)."""
LEDGER_FILE = "ledger.journal"


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A JSON object file of a run; ``RunError`` naming the file and ``what`` was expected otherwise."""
    if not path.exists():
        raise RunError(f"{path}: missing; expected {what} (is this a run folder made by `hrbench run`?)")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunError(f"{path}: unreadable JSON (corrupt JSON or file: {detail}); expected {what}") from exc
    if not isinstance(obj, dict):
        raise RunError(f"{path}: expected a JSON object with {what}")
    return obj


@dataclass(frozen=True)
class RunInfo:
    """``run.json`` and ``config.json`` of a run folder, checked (:meth:`RunFolder.read_info`)."""

    folder: RunFolder
    run: dict[str, Any]
    """``run.json`` as written (format, run_id, storage, ledger, threads, study, profile, provenance)."""
    study: dict[str, Any]
    """``config.json`` ``study``: the resolved study."""
    config_hash: str

    @property
    def run_id(self) -> str:
        return self._required("run_id")

    @property
    def stored_url(self) -> str:
        """The storage URL as ``run.json`` keeps it (a database URL without its password)."""
        return self._required("storage")

    @property
    def ledger_url(self) -> str:
        """The run's ledger: its own journal file when it has one (found relative to the folder, wherever the
        folder now is), else the storage URL it was made with."""
        if isinstance(self.run.get("ledger"), str):
            return str((self.folder.root / self.run["ledger"]).resolve())
        return self.stored_url

    @property
    def threads(self) -> int | None:
        """``threads`` (older runs: their provenance's); None when neither says. ``RunError`` on a bad value."""
        prov = self.run.get("provenance")
        value = self.run.get("threads", prov.get("threads") if isinstance(prov, dict) else None)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise RunError(f"run.json threads: expected a whole number >= 1, but got {value!r}")
        return value

    def _required(self, key: str) -> str:
        missing = [k for k in ("run_id", "storage") if not isinstance(self.run.get(k), str)]
        if missing:
            raise RunError(
                f"{self.folder.run_json}: lacks {', '.join(missing)}; expected a run folder made by `hrbench run`"
            )
        return str(self.run[key])


@dataclass(frozen=True)
class RunFolder:
    """Where every file of a run lives. ``RunFolder(path)``; :meth:`replicate` gives replicate r's folder (the run
    folder itself for 0, ``replicates/r<r>/``), which holds the per-replicate files (scales, checkpoints, models,
    jobs, eval) under the same names."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # -- making and finding run folders ------------------------------------------------------------------------

    @staticmethod
    def default_path(study_name: str, profile: str, root: Path = Path("runs")) -> Path:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        return Path(root) / study_name / f"{stamp}-{profile}"

    @staticmethod
    def latest(study_name: str, root: Path = Path("runs")) -> Path | None:
        """The newest run folder of a study under ``root`` (None when there is none)."""
        base = Path(root) / study_name
        runs = sorted(p for p in base.glob("*") if (p / "run.json").exists()) if base.exists() else []
        return runs[-1] if runs else None

    def claim(self, info: dict[str, Any]) -> None:
        """Make this folder the run's: create its ``run.json`` only if no other run did (atomic, one winner).
        ``RunError`` for the loser, who has written nothing."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunError(f"{self.root}: cannot create the run folder ({exc.strerror})") from exc
        text = json.dumps(info, indent=2, sort_keys=True, default=str) + "\n"
        try:
            atomic_create_bytes(self.run_json, text.encode("utf-8"))
        except FileExistsError:
            raise RunError(
                f"{self.root}: another run claimed this folder first (it made run.json while this run was "
                "starting); choose another --out, or --resume that run"
            ) from None

    def read_info(self) -> RunInfo:
        """``run.json`` (of this version's format) and ``config.json`` (with a ``study`` object), checked;
        ``RunError`` naming the file and what was expected otherwise. The one reader of both files."""
        if not self.root.is_dir():
            raise RunError(f"{self.root}: not a folder; expected a run folder made by `hrbench run`")
        run = read_json_object(self.run_json, "the run's provenance")
        fmt = run.get("format")
        if fmt != RUN_FORMAT:
            raise RunError(
                f"{self.run_json}: run folder format {fmt!r}; expected format {RUN_FORMAT} (a run folder made by this "
                "version of `hrbench run`); start a new run"
            )
        cfg = read_json_object(self.config_json, "the resolved study config")
        if not isinstance(cfg.get("study"), dict):
            raise RunError(f"{self.config_json}: no 'study' object; expected the resolved study config")
        return RunInfo(self, run, cfg["study"], str(cfg.get("config_hash", "")))

    # -- files of the run --------------------------------------------------------------------------------------

    def replicate(self, r: int) -> RunFolder:
        return self if int(r) == 0 else RunFolder(self.root / "replicates" / f"r{int(r)}")

    def __truediv__(self, name: str) -> Path:
        return self.root / name

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    @property
    def config_json(self) -> Path:
        return self.root / "config.json"

    @property
    def ledger_journal(self) -> Path:
        return self.root / LEDGER_FILE

    @property
    def scales_json(self) -> Path:
        return self.root / "scales.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def jobs(self) -> Path:
        return self.root / "jobs"

    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def search(self) -> Path:
        return self.root / "search"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    def checkpoint(self, name: str) -> Path:
        """``checkpoints/<name>.pt``: the training checkpoint a retried job resumes from."""
        return self.checkpoints / f"{name}.pt"

    def val_history(self, name: str) -> Path:
        """``checkpoints/<name>-val.json``: the validation evaluations of a training so far."""
        return self.checkpoints / f"{name}-val.json"

    def weights(self, name: str) -> Path:
        """``models/<name>.pt``: a trained model's final weights."""
        return self.models / f"{name}.pt"

    def job_record(self, name: str) -> Path:
        """``jobs/<name>.json``: what a job did and cost."""
        return self.jobs / f"{name}.json"

    @property
    def long_reference(self) -> Path:
        """``reference/``: the long-run reference of the best baseline (:mod:`hyperrecon.long_reference`)."""
        return self.root / "reference"

    def long_reference_file(self, name: str) -> Path:
        """``reference/<name>``: ``long-baseline.csv``, ``long-baseline.json``, and the long runs' checkpoints and
        validation histories (``r<replicate>-<model>-x<factor>.pt``, ``...-val.json``)."""
        return self.long_reference / name

    def eval_file(self, model: str, suffix: str = ".csv") -> Path:
        """``eval/<model><suffix>``: ``.csv`` (the tidy table), ``-ranges.csv``, ``-images.npz``, ``-meta.json``,
        ``-endpoints.npz``, ``-dhs-kept.npz``, ``-fidelity.csv``."""
        return self.eval / f"{model}{suffix}"

    def search_file(self, name: str) -> Path:
        return self.search / name

    def worker_log(self, i: int) -> Path:
        return self.root / f"worker-{i}.log"

    def table(self, name: str) -> Path:
        """A merged table or file of the run: ``results.csv``, ``summary.json``, ``report.md`` ..."""
        if name not in MERGED_FILES:
            raise ValueError(f"{name}: not a merged file of a run folder (expected one of {', '.join(MERGED_FILES)})")
        return self.root / name


MERGED_FILES = (
    "results.csv",
    "metrics.csv",
    "costs.csv",
    "convergence.csv",
    "dice_reference.csv",
    "search.csv",
    "search_summary.csv",
    "search_parallel.csv",
    "search_mo.csv",
    "summary.json",
    "report.md",
    "explore.html",
)
