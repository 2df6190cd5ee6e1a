"""Orchestration: a study -> a run folder, its jobs through the ledger, and the merged result tables.

Run folder (``runs/<study>/<timestamp>/`` unless ``--out``)::

    run.json            format version, run id, storage URL (``ledger``: the journal's name inside the folder, so
                        that a moved or copied run folder keeps its own ledger), provenance (versions, git SHA,
                        device, date)
    config.json         the fully resolved study (``--resume`` refuses a different one)
    ledger.journal      the job ledger (Optuna journal file) unless --storage names a database
    scales.json         loss scales in use (given, or computed by the ``scales`` job)
    checkpoints/        training checkpoints (resume mid-job)         models/   final weights per model
    jobs/<job>.json     what each job did and cost                    eval/     per-model evaluation outputs
    search/             per-target search trials, fidelity.csv        figures/  report figures
    results.csv         tidy: model, lam1, lam2 (AO only), slice, metric, replicate, value (test set, every replicate)
    metrics.csv         unit and better direction of each metric
    costs.csv           one row per replicate and trained model: parameters, steps, device and wall seconds, peak memory
    replicates/r<r>/    replicate r >= 1 (``replicates = N``): its own scales, checkpoints, models, jobs, eval
    convergence.csv     one row per trained model: steps, validation loss, convergence check (convergence.py)
    dice_reference.csv  segmentation Dice on the ground-truth (ceiling) and zero-filled (floor) test slices
    search.csv          every search trial;   search_summary.csv   per target and strategy
    search_parallel.csv replayed baseline searches with 1, 4, 16 workers;  search_mo.csv  multi-objective trials
    summary.json        machine-readable headline;  report.md      the report

Every file, column and key is described in ``docs/run-folder.md``.

Every job is deterministic given the study seed and its name, so a job that is retried after a crash gives the
same result as one that ran once.

Faults: a new run reads its data before the run folder is made, and ``--resume`` checks the folder (format, config,
ledger, the checkpoints and weights its unfinished jobs will read) before it writes anything, so bad input fails
with one line and leaves what is on disk as it was. Every result file is written atomically (:mod:`hyperrecon.io`,
:func:`hyperrecon.checkpoints.save_checkpoint`): a run killed at any moment resumes from complete files.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import PROFILES, Study, study_from_dict
from .context import Progress, RunContext, device_name, first_line, load_bundle, load_weights, provenance
from .errors import CheckpointError, ConfigError, DataError, HyperReconError, RunError, TrainingError
from .executors import run_job
from .io import NoSpaceError, atomic_create_bytes, read_json, write_csv, write_json
from .jobs import lam_label, recon_models, study_jobs
from .plugins import load_plugins
from .resolve import resolve, resolve_device, resolve_precision
from .runfiles import build_summary, metrics_table, tidy
from .storage import JobLedger, find_runs, open_storage
from .storage_urls import normalize, public_url, redact
from .timing import add_job_peaks

__all__ = [
    "RUN_FORMAT",
    "Progress",
    "Run",
    "RunContext",
    "context_for",
    "device_name",
    "enqueue",
    "execute",
    "finalize",
    "load_weights",
    "prepare_run",
    "provenance",
    "run_for_worker",
    "run_job",
    "work",
]

RUN_FORMAT = 1
LEDGER_FILE = "ledger.journal"


# ---------------------------------------------------------------------------------------------------------------
# Run folders


def default_run_dir(study: Study, root: Path = Path("runs")) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return root / study.name / f"{stamp}-{study.profile}"


def make_default_run_dir(study: Study, root: Path = Path("runs")) -> Path:
    """Create a new run folder under the default name, ``-2``, ``-3``... appended when that name is taken:
    ``mkdir`` succeeds for one caller only, so two runs started in the same second get two folders."""
    base = default_run_dir(study, root)
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
        for n in range(1, 10_000):
            candidate = base if n == 1 else base.with_name(f"{base.name}-{n}")
            try:
                candidate.mkdir()
                return candidate
            except FileExistsError:
                continue
    except OSError as exc:
        raise RunError(f"{base.parent}: cannot create the run folder ({exc.strerror})") from exc
    raise RunError(f"{base.parent}: no free run folder name for {base.name}; use --out")


def claim_run_dir(run_dir: Path, info: dict[str, Any]) -> None:
    """Make ``run_dir`` this run's: create its ``run.json`` only if no other run did (atomic, one winner).
    ``RunError`` for the loser, who has written nothing."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"{run_dir}: cannot create the run folder ({exc.strerror})") from exc
    text = json.dumps(info, indent=2, sort_keys=True, default=str) + "\n"
    try:
        atomic_create_bytes(run_dir / "run.json", text.encode("utf-8"))
    except FileExistsError:
        raise RunError(
            f"{run_dir}: another run claimed this folder first (it made run.json while this run was "
            "starting); choose another --out, or --resume that run"
        ) from None


def run_threads(info: dict[str, Any] | None = None) -> int:
    """The CPU thread count of a run: ``threads`` of its ``run.json`` (older runs: their provenance), or for a new
    run this process's setting (``OMP_NUM_THREADS`` when set, else torch's default, the number of cores).

    Every job of the run sets it (:func:`hyperrecon.executors.run_job`), whatever ``--workers`` and the machine it
    runs on: results of CPU kernels depend on the thread count (reduction order), so a resumed or parallel run
    would otherwise mix numbers from different settings.
    """
    if info is None:
        import torch

        return int(torch.get_num_threads())
    prov = info.get("provenance")
    value = info.get("threads", prov.get("threads") if isinstance(prov, dict) else None)
    if value is None:
        import torch

        return int(torch.get_num_threads())
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RunError(f"run.json threads: expected a whole number >= 1, but got {value!r}")
    return value


def latest_run_dir(study: Study, root: Path = Path("runs")) -> Path | None:
    base = root / study.name
    runs = sorted(p for p in base.glob("*") if (p / "run.json").exists()) if base.exists() else []
    return runs[-1] if runs else None


@dataclass
class Run:
    run_dir: Path
    study: Study
    run_id: str
    storage: str
    device: str
    precision: str
    bundle: Any = field(default=None, repr=False, compare=False)
    """The data, when already loaded (a new run reads them before it makes its folder)."""
    threads: int | None = None
    """CPU threads every job of this run uses (``run.json`` ``threads``, fixed when the run was made)."""


def ledger_url(run_dir: Path, info: dict[str, Any]) -> str:
    """The ledger of a run: its own journal file when it has one (found relative to the folder, wherever the folder
    now is), else the storage URL it was made with."""
    if isinstance(info.get("ledger"), str):
        return str((Path(run_dir) / info["ledger"]).resolve())
    return info["storage"]


def read_run_info(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``run.json`` and ``config.json`` of a run folder, checked; ``RunError`` naming the file otherwise."""
    run_dir = Path(run_dir)
    for name in ("run.json", "config.json"):
        if not (run_dir / name).is_file():
            raise RunError(f"{run_dir / name}: missing; expected a run folder made by `hrbench run`")
    info = read_json(run_dir / "run.json")
    fmt = info.get("format") if isinstance(info, dict) else None
    if fmt != RUN_FORMAT:
        raise RunError(
            f"{run_dir / 'run.json'}: run folder format {fmt!r} is not this version's ({RUN_FORMAT}); start a new run"
        )
    missing = [k for k in ("run_id", "storage") if not isinstance(info.get(k), str)]
    if missing:
        raise RunError(
            f"{run_dir / 'run.json'}: lacks {', '.join(missing)}; expected a run folder made by `hrbench run`"
        )
    saved = read_json(run_dir / "config.json")
    if not isinstance(saved, dict) or not isinstance(saved.get("study"), dict):
        raise RunError(f"{run_dir / 'config.json'}: no 'study' object; expected the resolved study config")
    return info, saved


def prepare_run(study: Study, *, out: Path | None, resume: bool, storage: str | None, device: str) -> Run:
    """Create (or reopen with ``resume``) the run folder, write config and provenance, open the ledger."""
    resolve(study)
    dev = resolve_device(device)
    precision = resolve_precision(study.train.precision, dev)
    if resume:
        run_dir = out if out is not None else latest_run_dir(study)
        if run_dir is None or not (Path(run_dir) / "run.json").exists():
            where = run_dir if run_dir is not None else f"runs/{study.name}/"
            raise RunError(f"{where}: no run to resume (expected a run folder with run.json)")
        run_dir = Path(run_dir)
        info, saved = read_run_info(run_dir)
        if saved.get("config_hash") != study.config_hash():
            raise RunError(
                f"{run_dir / 'config.json'}: this run was made with a different study config "
                f"(hash {saved.get('config_hash')} vs {study.config_hash()}); resume with the same study, "
                "profile and --set values, or start a new run"
            )
        run = Run(run_dir, study, info["run_id"], ledger_url(run_dir, info), dev, precision, threads=run_threads(info))
        if storage is not None:
            if public_url(storage) not in (public_url(run.storage), public_url(info["storage"])):
                raise ConfigError(
                    f"--storage {redact(storage)}: this run keeps its jobs in {redact(run.storage)}; "
                    "resume without --storage"
                )
            if normalize(storage)[0] == "rdb":
                run.storage = storage  # the same database, with the password run.json does not keep
        check_resumable(run)
        return run
    run_dir = Path(out) if out is not None else None
    if run_dir is not None and run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"{run_dir}: exists and is not a folder; expected a new or empty folder for the run")
    if run_dir is not None and run_dir.exists() and any(run_dir.iterdir()):
        raise RunError(
            f"{run_dir}: folder exists and is not empty; use --resume to continue it or choose another --out"
        )
    if storage is not None:
        open_storage(storage)  # a bad URL or an unreachable database fails before anything is written
    bundle = load_bundle(study)  # so do bad data
    if run_dir is None:
        run_dir = make_default_run_dir(study)
    run_id = f"{study.name}-{run_dir.name}-{os.urandom(3).hex()}"
    storage_url = storage or str((run_dir / LEDGER_FILE).resolve())
    stored_url = public_url(storage_url) if storage and normalize(storage)[0] == "rdb" else storage_url
    threads = run_threads()
    # run.json first, created exclusively: of two runs started on one folder, one claims it, the other stops.
    claim_run_dir(
        run_dir,
        {
            "format": RUN_FORMAT,
            "run_id": run_id,
            "storage": stored_url,
            **({} if storage else {"ledger": LEDGER_FILE}),
            "threads": threads,
            "study": study.name,
            "profile": study.profile,
            "provenance": provenance(dev, precision),
        },
    )
    write_json(run_dir / "config.json", {"config_hash": study.config_hash(), "study": study.to_dict()})
    if not isinstance(study.loss.scales, str):
        write_json(
            run_dir / "scales.json",
            {"terms": list(study.loss.terms), "scales": list(study.loss.scales), "rule": "given in the study file"},
        )
    return Run(run_dir, study, run_id, storage_url, dev, precision, bundle=bundle, threads=threads)


def check_resumable(run: Run) -> None:
    """Before a resumed run writes anything: its ledger opens, and every file that its unfinished jobs will read
    (training checkpoints, model weights, job records, scales) is intact. ``RunError``/``CheckpointError`` naming
    the file otherwise, with the folder left as it was."""
    from .checkpoints import load_checkpoint

    url = run.storage
    kind, target = normalize(url)
    if kind == "journal":
        path = Path(target)
        if not path.is_file():  # opening it would create an empty ledger in the run folder
            raise RunError(f"{path}: the job ledger of this run is missing; expected the journal named in run.json")
    status = JobLedger(url, run.run_id).status()

    from .jobs import replicate_dir

    s = run.study
    models = [m for m, _, _ in recon_models(s)]
    for r in range(int(s.replicates)):  # each replicate's folder, its jobs named r<r>/<job> in the ledger
        d, pre = replicate_dir(run.run_dir, r), ("" if r == 0 else f"r{r}/")

        def unfinished(*jobs: str, pre: str = pre) -> bool:
            return any(status.get(pre + j) not in (None, "COMPLETE") for j in jobs)

        for path in sorted((d / "jobs").glob("*.json")) + [d / "scales.json"]:
            if path.exists():
                read_json(path)
        for name in [*models, "seg"]:
            ckpt = d / "checkpoints" / f"{name}.pt"
            if unfinished(name) and ckpt.exists():
                load_checkpoint(ckpt)  # the job will resume from it (checksums verified, as torch.load does not)
        readers = [j[len(pre) :] for j in status if j.startswith((pre + "eval-", pre + "search-"))]
        for name in [*models, "seg"]:
            consumers = readers + ["scales"] if name == "seg" else [f"eval-{name}", f"search-{name}", "scales"]
            path = d / "models" / f"{name}.pt"
            if path.exists() and unfinished(*consumers):
                load_weights(path)


def open_ledger(run: Run, *, create: bool = False) -> JobLedger:
    if not create:
        return JobLedger(run.storage, run.run_id)
    try:
        ledger = JobLedger(run.storage, run.run_id)
    except RunError:
        ledger = JobLedger(run.storage, run.run_id, create=True)
    meta = ledger.meta()
    for key, value in (("run_dir", str(run.run_dir.resolve())), ("study", run.study.to_dict())):
        if meta.get(key) != value:  # a resumed run appends nothing it already has
            ledger.set_meta(key, value)
    return ledger


def enqueue(run: Run, ctx: RunContext) -> list[str]:
    # The data first: bad data stop the run before the ledger is touched.
    has_labels = ctx.bundle.train.labels is not None and ctx.bundle.n_classes is not None
    ledger = open_ledger(run, create=True)
    return ledger.enqueue_missing([j.as_tuple() for j in study_jobs(run.study, has_labels=has_labels)])


# ---------------------------------------------------------------------------------------------------------------
# Workers


def work(
    run: Run,
    ctx: RunContext,
    *,
    poll_s: float = 0.5,
    on_job: Progress | None = None,
    stop_when_idle: bool = False,
    max_jobs: int | None = None,
) -> int:
    """Claim and run jobs until every job is complete (or ``max_jobs`` ran). Returns the number this worker ran.

    Failures: a ``RunError`` is retried by the ledger (up to its attempts) and this worker goes on. A config or
    data error, or a bug, stops this worker; the job is requeued for the others (another machine may have the
    plugin or the data). A corrupt checkpoint or a diverged training would fail the same way on every retry (jobs
    are deterministic): the job is failed for good and every worker stops. An interrupt requeues the job without
    counting an attempt.
    """
    ledger = open_ledger(run)
    ran = 0
    while max_jobs is None or ran < max_jobs:
        ledger.reclaim_stale()
        job = ledger.claim()
        if job is None:
            if ledger.current_phase() is None:
                return ran
            failed = ledger.failed_for_good()
            if failed:
                name, err = next(iter(failed.items()))
                raise RunError(
                    f"job '{name}' failed and is not retried; last error: {err} (fix the cause, then "
                    "continue with --resume)"
                )
            if stop_when_idle:
                return ran
            time.sleep(poll_s)
            continue
        if on_job is not None:
            on_job("job-start", {"job": job.name, "phase": job.phase, "attempt": job.attempt})
        try:
            with ledger.heartbeat(job):
                result = run_job(ctx, job.name, job.spec)
        except NoSpaceError as exc:
            # A full disk: every retry would fail the same way until space is freed. Requeue without counting an
            # attempt (the ledger may be on the full disk too) and stop with the file named.
            try:
                ledger.fail(job, str(exc), count=False)
            except HyperReconError:
                pass
            raise
        except (CheckpointError, TrainingError) as exc:
            ledger.fail(job, str(exc), retry=False)
            raise
        except (ConfigError, DataError) as exc:
            ledger.fail(job, str(exc))
            raise
        except HyperReconError as exc:
            requeued = ledger.fail(job, str(exc))
            if not requeued:
                raise RunError(f"job '{job.name}' failed {job.attempt} times; last error: {exc}") from exc
            continue
        except BaseException as exc:
            # A bug or an interrupt: record it; the job goes back to the queue for a later attempt.
            try:
                ledger.fail(job, f"{type(exc).__name__}: {exc}", count=not isinstance(exc, KeyboardInterrupt))
            except Exception:
                pass
            raise
        if not ledger.complete(job, result):
            # Reclaimed while this worker still ran it, and the retry is running elsewhere: it records the result.
            if on_job is not None:
                on_job("job-superseded", {"job": job.name})
            continue
        ran += 1
        if on_job is not None:
            on_job("job-done", {"job": job.name, "result": result})
    return ran


def context_for(run: Run, progress: Progress | None = None) -> RunContext:
    load_plugins(
        run.study.plugins,
        source=run.study.source_file,
        search_path=str(Path(run.study.source_file).parent) if run.study.source_file else None,
    )
    ctx = RunContext(run.run_dir, run.study, run.device, run.precision, progress=progress, threads=run.threads)
    if run.threads is not None:  # data and forward model too are computed with the run's thread count
        import torch

        torch.set_num_threads(run.threads)
    if run.bundle is not None:
        ctx.bundle = run.bundle  # fills the cached property
    return ctx


def run_for_worker(*, run_dir: Path | None, storage: str | None, study_name: str | None, device: str) -> Run:
    """Find the run a ``hrbench worker`` should serve: a run folder, or the newest run of a study in a storage."""
    if run_dir is None:
        if storage is None:
            raise ConfigError("hrbench worker: give --run-dir, or --storage with --study")
        runs = [r for r in find_runs(storage) if study_name is None or r.startswith(f"{study_name}-")]
        if not runs:
            raise RunError(f"--storage: no run of study '{study_name}' in this storage")
        ledger = JobLedger(storage, runs[-1])
        run_dir = Path(ledger.meta()["run_dir"])
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run folder (a worker needs the run folder on a shared file system)")
    info, saved = read_run_info(run_dir)
    study = study_from_dict_resolved(saved["study"])
    dev = resolve_device(device)
    return Run(
        run_dir,
        study,
        info["run_id"],
        storage or ledger_url(run_dir, info),
        dev,
        resolve_precision(study.train.precision, dev),
        threads=run_threads(info),
    )


def study_from_dict_resolved(d: dict[str, Any]) -> Study:
    """Rebuild a resolved :class:`Study` from ``config.json`` (profile already merged)."""
    raw = {k: v for k, v in d.items() if k not in ("profile", "source_file")}
    s = study_from_dict(
        raw,
        profile="paper" if d["profile"] not in PROFILES else d["profile"],
        source=d.get("source_file", "config.json"),
    )
    import dataclasses

    return dataclasses.replace(s, profile=d["profile"], source_file=d.get("source_file", ""))


def spawn_workers(run: Run, n: int, device: str) -> list[subprocess.Popen]:
    """Start ``n`` local ``hrbench worker`` processes on this run (one per GPU when several are visible)."""
    procs = []
    n_gpus = 0
    if run.device.startswith("cuda"):
        import torch

        n_gpus = torch.cuda.device_count()
    # Every worker uses the run's thread count (not cores / n): a job's result must not depend on how many workers
    # ran beside it. More threads than cores in all only costs speed (OpenMP threads spin-wait each other).
    threads = run.threads or run_threads()
    for i in range(n):
        env = dict(os.environ)
        env["OMP_NUM_THREADS"] = str(threads)
        if n_gpus > 1:
            env["CUDA_VISIBLE_DEVICES"] = str(i % n_gpus)
        cmd = [sys.executable, "-m", "hyperrecon.cli", "worker", "--run-dir", str(run.run_dir), "--device", device]
        log = open(run.run_dir / f"worker-{i}.log", "ab")  # noqa: SIM115 - handed to the child
        procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
    return procs


# ---------------------------------------------------------------------------------------------------------------
# Merge


def finalize(run: Run, ctx: RunContext) -> dict[str, Any]:
    """Merge per-job outputs into results.csv, costs.csv, search.csv, search_summary.csv and summary.json."""
    import pandas as pd

    from .search import summarise

    d, s = run.run_dir, run.study
    results, cost_rows, training_cost = _merge_replicates(run)
    write_csv(d / "results.csv", tidy(results, s.n_lams))
    write_csv(d / "metrics.csv", metrics_table([*results.metric.unique(), s.search.objective]))
    costs = pd.DataFrame(cost_rows)
    write_csv(d / "costs.csv", tidy(costs.rename(columns={"peak_memory_mb": "peak_memory_mib"}), s.n_lams))
    from .convergence import write_convergence_csv

    write_convergence_csv(d, [(m, k) for m, k, _ in recon_models(s)] + [("seg", "seg")])

    from .search.runner import merge_search_tables

    search = merge_search_tables(d, s, _read_csv)  # search.csv, search_parallel.csv, search_mo.csv

    from .metrics import higher_is_better

    maximize = higher_is_better(s.search.objective)
    baseline_val = search[search.target == "baselines"]
    objective = s.search.objective
    # Grid optimum: the best validation objective among the trained baselines.
    grid_vals = [
        read_json(d / "jobs" / f"eval-{m}.json")["val_objective"] for m, k, _ in recon_models(s) if k == "baseline"
    ]
    grid_optimum = max(grid_vals) if maximize else min(grid_vals)
    test_tables = {p.name[: -len("-test.csv")]: _read_csv(p) for p in (d / "search").glob("*-test.csv")}
    # the searches ran on replicate 0
    baseline_test = results[
        (results.replicate == 0) & (results.metric == objective) & results.model.str.startswith("baseline-")
    ]

    def test_metric(target: str, lam: Any, strategy: str | None = None, seed: int | None = None) -> float:
        if target == "baselines":
            lam = [float(v) for v in (lam if hasattr(lam, "__len__") else [lam])]
            m = f"baseline-{lam_label(tuple(lam))}"
            v = baseline_test[baseline_test.model == m].value
            return float(v.mean()) if len(v) else float("nan")
        t = test_tables.get(target)
        if t is None or strategy is None:
            return float("nan")
        row = t[(t.strategy == strategy) & (t.seed == seed)]
        return float(row.test_objective.iloc[0]) if len(row) else float("nan")

    summary_table = summarise(
        search, grid_optimum=grid_optimum, maximize=maximize, test_metric_fn=test_metric, training_cost=training_cost
    )
    # Conditional models: the test objective at each strategy's chosen λ was measured by the search job.
    for i, row in summary_table.iterrows():
        if row["target"] != "baselines":
            summary_table.loc[i, "test_metric"] = test_metric(
                row["target"], None, row["strategy"], int(row["chosen_seed"])
            )
    write_csv(d / "search_summary.csv", tidy(summary_table, s.n_lams))
    summary = build_summary(
        run_dir=d,
        run_id=run.run_id,
        storage=redact(run.storage),
        study=s,
        results=results,
        costs=costs,
        search_summary=summary_table,
        grid_optimum=grid_optimum,
        maximize=maximize,
        baseline_trials=len(baseline_val),
    )
    summary["replicates"] = int(s.replicates)
    write_json(d / "summary.json", summary)
    return summary


def _merge_replicates(run: Run) -> tuple[Any, list[dict[str, Any]], dict[str, float]]:
    """results (every replicate, with a ``replicate`` column), cost rows (one per replicate and model) and replicate
    0's training device seconds per model (what the replayed baseline search charges)."""
    import pandas as pd

    from .jobs import replicate_dir

    s = run.study
    frames, cost_rows = [], []
    training_cost: dict[str, float] = {}
    for r in range(int(s.replicates)):
        d = replicate_dir(run.run_dir, r)
        for name, _, _ in recon_models(s):
            frame = _read_csv(d / "eval" / f"{name}.csv")
            frame.insert(len(frame.columns) - 1, "replicate", r)  # before 'value'
            frames.append(frame)
        for name in [*(m for m, _, _ in recon_models(s)), "seg", "scales"]:
            path = d / "jobs" / f"{name}.json"
            if not path.exists():
                continue
            info = read_json(path)
            if "cost" in info:
                c = info["cost"]
                kind = next((k for m, k, _ in recon_models(s) if m == name), name)
                row = {
                    "model": name,
                    "kind": kind,
                    **{
                        k: c[k]
                        for k in (
                            "n_params",
                            "steps",
                            "device_seconds",
                            "wall_seconds",
                            "peak_memory_mb",
                            "device",
                            "dtype",
                        )
                    },
                }
                if r == 0:
                    training_cost[name] = float(c["device_seconds"])
            elif name == "scales":
                row = {
                    "model": "scales",
                    "kind": "scales",
                    "n_params": 0,
                    "steps": 0,
                    "device_seconds": info.get("device_seconds", 0.0),
                    "wall_seconds": info.get("wall_seconds", 0.0),
                    "peak_memory_mb": info.get("peak_memory_mib", 0.0),
                    "device": run.device,
                    "dtype": run.precision,
                }
            else:
                continue
            meta_path = d / "eval" / f"{name}-meta.json"
            if meta_path.exists():
                row["inference_seconds_per_slice"] = (
                    read_json(meta_path).get("seconds", {}).get("inference_seconds_per_slice")
                )
            add_job_peaks([row], d / "jobs")
            cost_rows.append({**row, "replicate": r})
    return pd.concat(frames, ignore_index=True), cost_rows, training_cost


def _first_worker_error(run_dir: Path, n: int, offsets: dict[Path, int]) -> str | None:
    """The first ``error:`` line the workers of this execution logged (a full disk names its file there)."""
    for i in range(n):
        path = run_dir / f"worker-{i}.log"
        try:
            with open(path, "rb") as fh:
                fh.seek(offsets.get(path, 0))
                text = fh.read().decode("utf-8", "replace")
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("error: "):
                return line[len("error: ") :].strip()
    return None


def _read_csv(path: Path):
    """A result table written by a job; ``RunError`` naming the file when it is missing or damaged."""
    import pandas as pd

    try:
        return pd.read_csv(path)
    except FileNotFoundError as exc:
        raise RunError(f"{path}: missing; expected the output of a finished job (run --resume to redo it)") from exc
    except (OSError, ValueError) as exc:  # pandas' ParserError and EmptyDataError are ValueErrors
        raise RunError(f"{path}: unreadable or corrupt table ({first_line(exc)})") from exc


def execute(run: Run, *, workers: int = 1, progress: Progress | None = None, device: str = "auto") -> dict[str, Any]:
    """Enqueue the study's jobs, run them (in this process or in ``workers`` local processes), merge results."""
    ctx = context_for(run, progress)
    added = enqueue(run, ctx)
    if progress is not None:
        status = open_ledger(run).status()
        progress(
            "enqueued",
            {
                "jobs": added,
                "ledger": run.storage,
                "total": len(status),
                "done": sum(1 for v in status.values() if v == "COMPLETE"),
            },
        )
    if workers <= 1:
        work(run, ctx, on_job=progress)
    else:
        logs = {p: p.stat().st_size for p in (run.run_dir / f"worker-{i}.log" for i in range(workers)) if p.exists()}
        procs = spawn_workers(run, workers, device)
        ledger = open_ledger(run)
        try:
            while any(p.poll() is None for p in procs):
                if progress is not None:
                    progress("status", {"status": ledger.status()})
                time.sleep(1.0)
        except BaseException:
            for p in procs:
                p.terminate()
            raise
        bad = [p.returncode for p in procs if p.returncode != 0]
        if bad or ledger.current_phase() is not None:
            first = _first_worker_error(run.run_dir, workers, logs)
            raise RunError(
                f"{run.run_dir}: {len(bad)} worker(s) failed{f' ({first})' if first else ''}; see "
                "worker-*.log there; fix the cause and continue with --resume"
            )
    return finalize(run, ctx)
