"""The job ledger: Optuna storage as an exactly-once work queue shared by local and remote workers.

Every unit of work of a run (one baseline U-Net, one hypernetwork, one evaluation ...) is a *job*: an Optuna
trial enqueued in WAITING state with user attributes ``job`` (its name), ``phase`` and ``spec`` (JSON). A worker
claims a job by moving its trial from WAITING to RUNNING through the storage, which succeeds for exactly one
caller (Optuna's own rule for enqueued trials: a row lock in PostgreSQL, the append order of the journal file).
Jobs of phase p are claimed only once every job of the phases before it is complete.

Liveness: a claimed job carries ``worker`` (host:pid:uuid) and a ``heartbeat`` time that a background thread
refreshes. A RUNNING job is *stale* when its heartbeat is older than the grace period, or at once when its worker
ran on this host and that process is gone (a SIGKILLed local worker is reclaimed instantly on ``--resume``).
"This host" is the hostname plus a digest of the kernel boot id and the PID namespace (:func:`host_id`), so that
containers that share a hostname but not a process table never judge each other's process ids;
``HRBENCH_HOST_ID`` overrides it. Reclaiming marks the stale trial FAIL (one caller wins) and enqueues a fresh copy
with ``attempt + 1``, up to ``max_attempts``. A worker whose job was reclaimed while it was in fact still running
(a stalled heartbeat) hands its result to the waiting retry when it finishes first (:meth:`JobLedger.complete`).
A job failed with ``retry=False`` (an error that a retry would repeat) counts as failed for good at once.

Environment: ``HRBENCH_HEARTBEAT_S`` (default 10) and ``HRBENCH_GRACE_S`` (default 60) set the beat period and
the grace period of the ledgers a process opens (checked by :mod:`hyperrecon.settings`).

Storage URLs: a path (or ``journal:PATH``) is an Optuna journal file (the default, ``ledger.journal`` in the run
folder, safe for processes on one machine; :mod:`hyperrecon.runs.journal` repairs a torn last record);
``postgresql://...`` (``mysql://``, ``sqlite:///``; :mod:`hyperrecon.runs.urls`) is Optuna's RDB storage for
workers on many machines.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import settings
from ..errors import ConfigError, RunError
from .urls import normalize, redact, scrub

JOBS_PREFIX = "hrbench-jobs:"


def host_id() -> str:
    """This machine's identity for the same-host dead-process rule: hostname~digest(boot id, PID namespace).

    Two containers with one hostname on different machines (or with separate process tables on one machine) get
    different ids, so neither reclaims the other's live job because a pid is missing from its own table.
    """
    override = settings.host_id_override()
    if override:
        return override
    return f"{socket.gethostname()}~{_machine_digest()}"


@functools.cache
def _machine_digest() -> str:
    parts = []
    for read in (
        lambda: Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
        lambda: os.readlink("/proc/self/ns/pid"),
    ):
        try:
            parts.append(read())
        except OSError:  # not Linux: the hostname alone
            parts.append("")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:8]


def _optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna").setLevel(logging.WARNING)
    return optuna


def open_storage(url: str):
    """An Optuna storage for ``url``: a journal file path, ``journal:PATH``, or a database URL
    (:mod:`hyperrecon.runs.urls`: aliases, "did you mean", the driver each scheme needs). Messages never show
    a password."""
    optuna = _optuna()
    kind, target = normalize(url)
    if kind == "rdb":
        try:
            return optuna.storages.RDBStorage(target, engine_kwargs={"pool_pre_ping": True})
        except ImportError as exc:  # a driver that find_spec saw but that does not import
            raise ConfigError(
                f"--storage {_redact(url)}: the database driver does not import "
                f"({scrub(str(exc), url)}); reinstall it: pip install 'hyperrecon[postgres]'"
            ) from exc
        except Exception as exc:  # sqlalchemy.exc.OperationalError and friends: one line, no traceback
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RunError(f"--storage {_redact(url)}: cannot connect: {scrub(first, url)}") from exc
    path = Path(target)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        from .journal import SafeJournalFileBackend

        backend = SafeJournalFileBackend(str(path))  # cuts a torn last record (backup kept) before reading
        return optuna.storages.JournalStorage(backend)  # replays the file: a damaged one fails here
    except OSError as exc:
        raise RunError(f"{path}: cannot open the job ledger ({exc.strerror})") from exc
    except ValueError as exc:  # json.JSONDecodeError, "Invalid log format." ...
        raise RunError(f"{path}: the job ledger is corrupt ({exc}); expected an Optuna journal file") from exc


def _redact(url: str) -> str:
    """Hide a password in a database URL for messages (:func:`hyperrecon.runs.urls.redact`)."""
    return redact(url)


#: What a job ledger's Optuna study says about itself, for optuna-dashboard and other Optuna tools: its trials are
#: jobs, not λ trials, and each complete trial's value is the device seconds the job used.
JOB_QUEUE_ATTRS = {
    "hrbench_role": "job queue (each trial is one job of the run, not a hyperparameter trial)",
    "hrbench_value": "device_seconds: device time the job used (see docs/run-folder.md)",
}
JOB_VALUE_NAMES = ["device_seconds"]


def _label_job_queue(study: Any) -> None:
    """Name the study's objective ``device_seconds`` and mark it as a job queue (once; a resumed run keeps it)."""
    import warnings

    if study.metric_names != JOB_VALUE_NAMES:
        with warnings.catch_warnings():  # set_metric_names is marked experimental in Optuna
            warnings.simplefilter("ignore")
            study.set_metric_names(JOB_VALUE_NAMES)
    attrs = study.user_attrs
    for key, value in JOB_QUEUE_ATTRS.items():
        if attrs.get(key) != value:
            study.set_user_attr(key, value)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (killed child not yet reaped) still answers kill(0): look at its state.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


@dataclass
class Job:
    """One claimed (or listed) unit of work."""

    name: str
    phase: int
    spec: dict[str, Any]
    attempt: int = 1
    number: int = -1
    state: str = "WAITING"
    user_attrs: dict[str, Any] = field(default_factory=dict)
    started: float | None = None  # when the trial went RUNNING (epoch seconds)


class JobLedger:
    """The jobs of one run inside an Optuna storage (study ``hrbench-jobs:<run_id>``)."""

    def __init__(
        self,
        url: str,
        run_id: str,
        *,
        create: bool = False,
        max_attempts: int = 3,
        heartbeat_s: float | None = None,
        grace_s: float | None = None,
    ) -> None:
        optuna = _optuna()
        self.url = url
        self.run_id = run_id
        self.storage = open_storage(url)
        self.study_name = JOBS_PREFIX + run_id
        self.max_attempts = max_attempts
        beat, grace = settings.ledger_timing()
        self.heartbeat_s = beat if heartbeat_s is None else heartbeat_s
        self.grace_s = grace if grace_s is None else grace_s
        self.worker_id = f"{host_id()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        try:
            if create:
                self.study = optuna.create_study(storage=self.storage, study_name=self.study_name, load_if_exists=True)
                _label_job_queue(self.study)
            else:
                self.study = optuna.load_study(storage=self.storage, study_name=self.study_name)
        except KeyError as exc:
            raise RunError(f"{_redact(url)}: no job ledger for run '{run_id}' in this storage") from exc
        self._study_id = self.storage.get_study_id_from_name(self.study_name)

    # -- run-level attributes (config, run folder) shared with remote workers ---------------------------------

    def set_meta(self, key: str, value: Any) -> None:
        self.study.set_user_attr(key, value)

    def meta(self) -> dict[str, Any]:
        return dict(self.storage.get_study_user_attrs(self._study_id))

    # -- listing ------------------------------------------------------------------------------------------

    def _trials(self, states=None):
        return self.storage.get_all_trials(self._study_id, deepcopy=False, states=states)

    @staticmethod
    def _job(t) -> Job | None:
        ua = t.user_attrs
        if "job" not in ua:
            return None
        started = t.datetime_start.timestamp() if t.datetime_start is not None else None
        return Job(
            name=ua["job"],
            phase=int(ua.get("phase", 0)),
            spec=json.loads(ua.get("spec", "{}")),
            attempt=int(ua.get("attempt", 1)),
            number=t.number,
            state=t.state.name,
            user_attrs=dict(ua),
            started=started,
        )

    def jobs(self) -> list[Job]:
        return [j for j in (self._job(t) for t in self._trials()) if j is not None]

    def status(self) -> dict[str, str]:
        """Job name -> best state over its attempts: COMPLETE > RUNNING > WAITING > FAIL."""
        rank = {"COMPLETE": 3, "RUNNING": 2, "WAITING": 1, "FAIL": 0, "PRUNED": -1}
        out: dict[str, str] = {}
        for j in self.jobs():
            if j.name not in out or rank[j.state] > rank[out[j.name]]:
                out[j.name] = j.state
        return out

    def completed(self) -> dict[str, Job]:
        return {j.name: j for j in self.jobs() if j.state == "COMPLETE"}

    # -- enqueue ------------------------------------------------------------------------------------------

    def enqueue(self, name: str, phase: int, spec: dict[str, Any] | None = None, attempt: int = 1) -> None:
        self.study.enqueue_trial(
            params={},
            user_attrs={
                "job": name,
                "phase": phase,
                "spec": json.dumps(spec or {}, sort_keys=True),
                "attempt": attempt,
            },
            skip_if_exists=False,
        )

    def enqueue_missing(self, jobs: list[tuple[str, int, dict[str, Any]]]) -> list[str]:
        """Enqueue the jobs that have no COMPLETE, WAITING or RUNNING attempt. Returns the names enqueued."""
        self.reclaim_stale()
        status = self.status()
        added = []
        for name, phase, spec in jobs:
            if status.get(name) in ("COMPLETE", "WAITING", "RUNNING"):
                continue
            attempts = [j.attempt for j in self.jobs() if j.name == name]
            self.enqueue(name, phase, spec, attempt=(max(attempts) + 1) if attempts else 1)
            added.append(name)
        return added

    # -- claim / finish -----------------------------------------------------------------------------------

    def current_phase(self) -> int | None:
        """Lowest phase with an unfinished job, or None when every job is complete."""
        status = self.status()
        phases = {j.name: j.phase for j in self.jobs()}
        open_phases = [phases[n] for n, s in status.items() if s != "COMPLETE"]
        return min(open_phases) if open_phases else None

    def claim(self) -> Job | None:
        """Move one WAITING job of the current phase to RUNNING for this worker; None if nothing is claimable."""
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        phase = self.current_phase()
        if phase is None:
            return None
        done = set(self.completed())
        for t in sorted(self._trials(states=(TrialState.WAITING,)), key=lambda t: t.number):
            job = self._job(t)
            if job is None or job.phase != phase:
                continue
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(self._study_id, t.number)
            if job.name in done:  # a duplicate of finished work (e.g. re-enqueued twice): retire it
                try:
                    if self.storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                        self.storage.set_trial_state_values(trial_id, state=TrialState.PRUNED)
                except UpdateFinishedTrialError:
                    pass
                continue
            try:
                if not self.storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                    continue  # another worker was first
            except UpdateFinishedTrialError:
                continue
            self.storage.set_trial_user_attr(trial_id, "worker", self.worker_id)
            self.storage.set_trial_user_attr(trial_id, "heartbeat", time.time())
            job.state = "RUNNING"
            return job
        return None

    def _trial_id(self, job: Job) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self._study_id, job.number)

    def complete(self, job: Job, result: dict[str, Any] | None = None) -> bool:
        """Mark a claimed job COMPLETE with its result. Returns False when the job was reclaimed meanwhile and its
        retry is already running elsewhere (that retry then records the same, deterministic result)."""
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        payload = json.dumps(result or {}, default=float)
        value = float((result or {}).get("device_seconds", 0.0))
        tid = self._trial_id(job)
        try:
            self._finish(tid, payload, value)
            return True
        except UpdateFinishedTrialError:
            pass
        # Reclaimed while alive (a stalled heartbeat): claim the waiting retry and finish it with this result.
        for t in self._trials(states=(TrialState.WAITING,)):
            retry = self._job(t)
            if retry is None or retry.name != job.name:
                continue
            rid = self.storage.get_trial_id_from_study_id_trial_number(self._study_id, t.number)
            try:
                if self.storage.set_trial_state_values(rid, state=TrialState.RUNNING):
                    self.storage.set_trial_user_attr(rid, "worker", self.worker_id)
                    self._finish(rid, payload, value)
                    return True
            except UpdateFinishedTrialError:
                continue
        return False

    def _finish(self, tid: int, payload: str, value: float) -> None:
        from optuna.trial import TrialState

        self.storage.set_trial_user_attr(tid, "result", payload)
        self.storage.set_trial_user_attr(tid, "finished", time.time())
        self.storage.set_trial_state_values(tid, state=TrialState.COMPLETE, values=[value])

    def fail(self, job: Job, error: str, *, retry: bool = True, count: bool = True) -> bool:
        """Mark a job failed; re-enqueue it if attempts remain and ``retry``. Returns True if re-enqueued.

        ``retry=False``: the error would recur (bad data, a corrupt checkpoint), so the job is failed for good and
        every worker stops instead of waiting for it. ``count=False``: not the job's fault (an interrupt); the
        re-enqueued copy keeps the attempt number.
        """
        from optuna.trial import TrialState

        tid = self._trial_id(job)
        try:
            self.storage.set_trial_user_attr(tid, "error", error[:2000])
            if not retry:
                self.storage.set_trial_user_attr(tid, "final", True)
            self.storage.set_trial_state_values(tid, state=TrialState.FAIL)
        except Exception:  # already finished by a reclaimer
            return False
        return self._requeue(job, retry, count=count)

    def _requeue(self, job: Job, retry: bool, count: bool = True) -> bool:
        if retry and (job.attempt < self.max_attempts or not count):
            self.enqueue(job.name, job.phase, job.spec, attempt=job.attempt + 1 if count else job.attempt)
            return True
        return False

    def failed_for_good(self) -> dict[str, str]:
        """Jobs whose latest attempt failed and that will not be retried: name -> last error."""
        status = self.status()
        latest: dict[str, Job] = {}
        for j in self.jobs():
            if j.name not in latest or j.number > latest[j.name].number:
                latest[j.name] = j
        return {
            name: j.user_attrs.get("error", "failed")
            for name, j in latest.items()
            if status[name] == "FAIL" and (j.attempt >= self.max_attempts or j.user_attrs.get("final"))
        }

    # -- liveness -----------------------------------------------------------------------------------------

    @contextmanager
    def heartbeat(self, job: Job) -> Iterator[None]:
        """Refresh the job's heartbeat in a daemon thread while the body runs."""
        tid = self._trial_id(job)
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.heartbeat_s):
                try:
                    self.storage.set_trial_user_attr(tid, "heartbeat", time.time())
                except Exception:  # the trial was reclaimed or the database blinked: the job result decides
                    return

        thread = threading.Thread(target=beat, name=f"heartbeat-{job.name}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)

    def is_stale(self, job: Job, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        worker = str(job.user_attrs.get("worker", ""))
        host, _, rest = worker.partition(":")
        if host == host_id() and rest:
            pid = int(rest.split(":")[0])
            if pid != os.getpid() and not _pid_alive(pid):
                return True
        # Between the claim and its first heartbeat the trial has only its start time: a worker is never judged
        # before it had the chance to beat once.
        beat = job.user_attrs.get("heartbeat", job.started if job.started is not None else now)
        return now - float(beat) > self.grace_s

    def reclaim_stale(self) -> list[str]:
        """Fail stale RUNNING jobs and re-enqueue them. Returns the names reclaimed by this caller."""
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        reclaimed = []
        for t in self._trials(states=(TrialState.RUNNING,)):
            job = self._job(t)
            if job is None or not self.is_stale(job):
                continue
            tid = self.storage.get_trial_id_from_study_id_trial_number(self._study_id, t.number)
            try:
                # Note why before finishing it: a finished trial takes no more attributes.
                self.storage.set_trial_user_attr(
                    tid, "error", f"worker {job.user_attrs.get('worker')} stopped (no heartbeat)"
                )
                won = self.storage.set_trial_state_values(tid, state=TrialState.FAIL)
            except UpdateFinishedTrialError:
                continue
            if won:
                self._requeue(job, retry=True)
                reclaimed.append(job.name)
        return reclaimed


def find_runs(url: str) -> list[str]:
    """Run ids with a job ledger in the storage at ``url``, oldest first."""
    optuna = _optuna()
    storage = open_storage(url)
    return [
        s.study_name[len(JOBS_PREFIX) :]
        for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
        if s.study_name.startswith(JOBS_PREFIX)
    ]
