"""Orchestration: a study -> a run (its folder made or reopened), its jobs through the ledger, workers, ``execute``.

:func:`prepare_run` makes the run folder (:class:`.folder.RunFolder`) or reopens it with ``--resume``;
:func:`enqueue` puts every job of the study (:mod:`.jobs`) that is not complete in the ledger (:mod:`.ledger`);
:func:`work` claims and runs jobs (:func:`.executors.run_job`) in this process, :func:`spawn_workers` in others;
:func:`execute` does all of it and merges the per-job outputs (:func:`.merge.finalize`).

Every job is deterministic given the study seed and its name, so a job that is retried after a crash gives the
same result as one that ran once.

Faults: a new run reads its data before the run folder is made, and ``--resume`` checks the folder (format, config,
ledger, the checkpoints and weights its unfinished jobs will read) before it writes anything, so bad input fails
with one line and leaves what is on disk as it was. Every result file is written atomically (:mod:`hyperrecon.io`,
:func:`hyperrecon.checkpoints.save_checkpoint`): a run killed at any moment resumes from complete files.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..config import PROFILES, Study, study_from_dict
from ..errors import CheckpointError, ConfigError, DataError, HyperReconError, RunError, TrainingError
from ..io import NoSpaceError, read_json, write_json
from ..plugins import load_plugins
from ..resolve import resolve, resolve_device, resolve_precision
from .context import Progress, RunContext, load_bundle, load_weights
from .executors import run_job
from .folder import LEDGER_FILE, RUN_FORMAT, RunFolder, RunInfo
from .jobs import study_jobs
from .ledger import JobLedger, find_runs, open_storage
from .merge import finalize
from .provenance import device_name, provenance
from .urls import normalize, public_url, redact

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

Run = RunContext
"""A run is its :class:`.context.RunContext`: the folder, study, ledger, device and threads, in one object."""


# ---------------------------------------------------------------------------------------------------------------
# Run folders


def default_run_dir(study: Study, root: Path = Path("runs")) -> Path:
    return RunFolder.default_path(study.name, study.profile, root)


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
    """:meth:`.folder.RunFolder.claim`: create ``run.json`` exclusively (one winner; ``RunError`` for the loser)."""
    RunFolder(run_dir).claim(info)


def run_threads(info: RunInfo | None = None) -> int:
    """The CPU thread count of a run: ``threads`` of its ``run.json`` (older runs: their provenance), or for a new
    run this process's setting (``OMP_NUM_THREADS`` when set, else torch's default, the number of cores).

    Every job of the run sets it (:func:`.executors.run_job`), whatever ``--workers`` and the machine it runs on:
    results of CPU kernels depend on the thread count (reduction order), so a resumed or parallel run would
    otherwise mix numbers from different settings.
    """
    value = info.threads if info is not None else None
    if value is None:
        import torch

        return int(torch.get_num_threads())
    return value


def latest_run_dir(study: Study, root: Path = Path("runs")) -> Path | None:
    return RunFolder.latest(study.name, root)


def read_run_info(run_dir: Path) -> RunInfo:
    """:meth:`.folder.RunFolder.read_info`, with the ledger's keys (``run_id``, ``storage``) required."""
    info = RunFolder(run_dir).read_info()
    _ = info.run_id  # RunError naming run.json when it lacks them
    return info


def _run(folder: RunFolder, study: Study, info_or_id: Any, storage: str, dev: str, precision: str, threads: int):
    run_id = info_or_id.run_id if isinstance(info_or_id, RunInfo) else info_or_id
    return RunContext(folder.root, study, dev, precision, threads=threads, run_id=run_id, storage=storage)


def prepare_run(study: Study, *, out: Path | None, resume: bool, storage: str | None, device: str) -> Run:
    """Create (or reopen with ``resume``) the run folder, write config and provenance, open the ledger."""
    resolve(study)
    dev = resolve_device(device)
    precision = resolve_precision(study.train.precision, dev)
    if resume:
        run_dir = out if out is not None else latest_run_dir(study)
        if run_dir is None or not RunFolder(run_dir).run_json.exists():
            where = run_dir if run_dir is not None else f"runs/{study.name}/"
            raise RunError(f"{where}: no run to resume (expected a run folder with run.json)")
        folder = RunFolder(run_dir)
        info = read_run_info(folder.root)
        if info.config_hash != study.config_hash():
            raise RunError(
                f"{folder.config_json}: this run was made with a different study config "
                f"(hash {info.config_hash} vs {study.config_hash()}); resume with the same study, "
                "profile and --set values, or start a new run"
            )
        run = _run(folder, study, info, info.ledger_url, dev, precision, run_threads(info))
        if storage is not None:
            if public_url(storage) not in (public_url(run.storage), public_url(info.stored_url)):
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
    folder = RunFolder(run_dir if run_dir is not None else make_default_run_dir(study))
    run_id = f"{study.name}-{folder.root.name}-{os.urandom(3).hex()}"
    storage_url = storage or str(folder.ledger_journal.resolve())
    stored_url = public_url(storage_url) if storage and normalize(storage)[0] == "rdb" else storage_url
    threads = run_threads()
    # run.json first, created exclusively: of two runs started on one folder, one claims it, the other stops.
    folder.claim(
        {
            "format": RUN_FORMAT,
            "run_id": run_id,
            "storage": stored_url,
            **({} if storage else {"ledger": LEDGER_FILE}),
            "threads": threads,
            "study": study.name,
            "profile": study.profile,
            "provenance": provenance(dev, precision),
        }
    )
    write_json(folder.config_json, {"config_hash": study.config_hash(), "study": study.to_dict()})
    if not isinstance(study.loss.scales, str):
        write_json(
            folder.scales_json,
            {"terms": list(study.loss.terms), "scales": list(study.loss.scales), "rule": "given in the study file"},
        )
    run = _run(folder, study, run_id, storage_url, dev, precision, threads)
    run.bundle = bundle  # the data, already read (fills the cached property)
    return run


def check_resumable(run: Run) -> None:
    """Before a resumed run writes anything: its ledger opens, and every file that its unfinished jobs will read
    (training checkpoints, model weights, job records, scales) is intact. ``RunError``/``CheckpointError`` naming
    the file otherwise, with the folder left as it was."""
    from ..checkpoints import load_checkpoint

    url = run.storage
    kind, target = normalize(url)
    if kind == "journal":
        path = Path(target)
        if not path.is_file():  # opening it would create an empty ledger in the run folder
            raise RunError(f"{path}: the job ledger of this run is missing; expected the journal named in run.json")
    status = JobLedger(url, run.run_id).status()

    s = run.study
    models = [m.name for m in run.models]
    for r in range(int(s.replicates)):  # each replicate's folder, its jobs named r<r>/<job> in the ledger
        d, pre = run.folder.replicate(r), ("" if r == 0 else f"r{r}/")

        def unfinished(*jobs: str, pre: str = pre) -> bool:
            return any(status.get(pre + j) not in (None, "COMPLETE") for j in jobs)

        for path in sorted(d.jobs.glob("*.json")) + [d.scales_json]:
            if path.exists():
                read_json(path)
        for name in [*models, "seg"]:
            ckpt = d.checkpoint(name)
            if unfinished(name) and ckpt.exists():
                load_checkpoint(ckpt)  # the job will resume from it (checksums verified, as torch.load does not)
        readers = [j[len(pre) :] for j in status if j.startswith((pre + "eval-", pre + "search-"))]
        for name in [*models, "seg"]:
            consumers = readers + ["scales"] if name == "seg" else [f"eval-{name}", f"search-{name}", "scales"]
            path = d.weights(name)
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
    """The run, ready to run jobs in this process: the study's plugins loaded, the run's thread count set, jobs
    reporting to ``progress``. (A run is its context: the same object is returned.)"""
    load_plugins(
        run.study.plugins,
        source=run.study.source_file,
        search_path=str(Path(run.study.source_file).parent) if run.study.source_file else None,
    )
    run.progress = progress
    if run.threads is not None:  # data and forward model too are computed with the run's thread count
        import torch

        torch.set_num_threads(run.threads)
    return run


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
    info = read_run_info(run_dir)
    study = study_from_dict_resolved(info.study)
    dev = resolve_device(device)
    precision = resolve_precision(study.train.precision, dev)
    return _run(info.folder, study, info, storage or info.ledger_url, dev, precision, run_threads(info))


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
        log = open(run.folder.worker_log(i), "ab")  # noqa: SIM115 - handed to the child
        procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
    return procs


def _first_worker_error(run_dir: Path, n: int, offsets: dict[Path, int]) -> str | None:
    """The first ``error:`` line the workers of this execution logged (a full disk names its file there)."""
    for i in range(n):
        path = RunFolder(run_dir).worker_log(i)
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
        logs = {p: p.stat().st_size for p in (run.folder.worker_log(i) for i in range(workers)) if p.exists()}
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
