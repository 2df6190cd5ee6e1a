"""Search studies in a run's storage: predictable names, saving, listing.

Every search (one target x strategy x seed, and per worker count or objective pair where those vary) runs as an
in-memory Optuna study named as in the storage but with the run id :data:`MEMORY_RUN` (Hyperband assigns brackets by
a hash of the study name: a name without the run id keeps a search the same in every run and after a resume),
and is then copied into the run's own storage (its ``ledger.journal`` or database) under its own name with
:func:`save_studies`. ``optuna-dashboard <storage>`` and ``optuna.load_study`` open them there.

Name: ``hrbench-search:<run_id>:<target>:<strategy>:seed=<seed>``, with ``:workers=<N>`` for simulated parallel
searches (N > 1) and ``:mo=<metric1>,<metric2>`` for multi-objective ones. Study user attributes: ``run_id``,
``target``, ``strategy``, ``sampler``, ``pruner``, ``seed``, ``workers``, ``objectives``, ``directions``,
``fidelity_steps``, ``sampler_params``, ``pruner_params``, ``replay``, ``hrbench_role`` (``"search"``). Trial user
attributes: ``cost_seconds``
(device seconds the trial consumed), ``full_cost_seconds`` (the same trial trained to the end), ``steps``
(training steps consumed; replayed baselines), ``lam1``/``lam2`` (λ evaluated: the replayed cell),
``start_seconds``/``end_seconds`` (the search's simulated clock). Live searches (:mod:`hyperrecon.search.live`)
are created in the storage directly (their study attribute ``mode`` is ``"live"``) and add ``train_seconds``,
``eval_seconds``, ``mode`` and, on a trial a killed attempt left running, ``killed``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..errors import RunError

SEARCH_PREFIX = "hrbench-search:"
MEMORY_RUN = "search"


def study_name(
    run_id: str, target: str, strategy: str, seed: int, *, workers: int = 1, objectives: Sequence[str] | None = None
) -> str:
    """The predictable name of one search study (see the module doc)."""
    name = f"{SEARCH_PREFIX}{run_id}:{target}:{strategy}:seed={int(seed)}"
    if workers > 1:
        name += f":workers={int(workers)}"
    if objectives is not None and len(objectives) > 1:
        name += ":mo=" + ",".join(objectives)
    return name


def save_studies(studies: Iterable, url: str, *, chunk: int = 20) -> list[str]:
    """Copy finished in-memory studies, each a ``(study, name)`` pair (or a study, kept under its own name), into
    the storage at ``url``, replacing a study of the same name (a retried job). Returns the names written.

    A journal file takes every operation as one locked, fsynced append (some 20 per study); here each chunk of
    studies is copied under the journal's own lock into a buffer that goes to the file in one append, so a run's
    hundreds of searches cost one fsync per chunk, and the journal is read once. Chunks are small so that the lock
    is held for well under the 30 s after which other processes' Optuna journal backends would take it as stale.
    A database takes the studies one by one (:func:`optuna.copy_study`).
    """
    from ..runs.ledger import _redact, open_storage

    studies = [item if isinstance(item, tuple) else (item, item.study_name) for item in studies]
    names = []
    journal = not ("://" in url and not url.startswith("journal:"))
    target = _journal_copier(url.removeprefix("journal:")) if journal else None
    for start in range(0, len(studies), chunk):
        part = studies[start : start + chunk]
        try:
            if target is not None:
                target.copy(part)
            else:
                _copy(part, open_storage(url))
        except Exception as exc:  # a database that went away, a full disk: one line naming the storage
            raise RunError(f"{_redact(url)}: cannot save search studies ({type(exc).__name__}: {exc})") from exc
        names += [name for _, name in part]
    return names


def _copy(studies: list, storage) -> None:
    import optuna

    # The names only: get_all_study_summaries deep-copies every trial in the storage (8.5 of a 40 s search job
    # with a quick run's journal, growing with each job), get_all_studies reads no trials.
    existing = {s.study_name for s in storage.get_all_studies()}
    for study, name in studies:
        if name in existing:
            optuna.delete_study(study_name=name, storage=storage)
        optuna.copy_study(
            from_study_name=study.study_name, from_storage=study._storage, to_storage=storage, to_study_name=name
        )


class _NoLock:
    """For a journal backend whose file this process has already locked."""

    def acquire(self) -> bool:
        return True

    def release(self) -> None:
        pass


def _journal_copier(path: str):
    """A journal backend over the file at ``path`` whose appends wait in a buffer; ``copy(part)`` copies studies
    under the file's lock and appends their operations at once."""
    from optuna.storages.journal import (
        BaseJournalBackend,
        JournalFileBackend,
        JournalFileSymlinkLock,
        JournalStorage,
    )

    class Copier(BaseJournalBackend):
        def __init__(self) -> None:
            self.file = JournalFileBackend(path, lock_obj=_NoLock())  # type: ignore[arg-type]  # duck-typed: only acquire/release are called
            self.n_file = 0  # lines of the file known to this copier
            self.buffer: list = []
            self.storage: JournalStorage | None = None

        def read_logs(self, log_number_from: int):
            if log_number_from < self.n_file:
                for i, log in enumerate(self.file.read_logs(log_number_from), start=log_number_from):
                    if i >= self.n_file:
                        break
                    yield log
            yield from self.buffer[max(0, log_number_from - self.n_file) :]

        def append_logs(self, logs) -> None:
            self.buffer.extend(logs)

        def copy(self, part: list) -> None:
            # The lock of the run's journal backend (hyperrecon.runs.ledger.open_storage): nobody appends meanwhile,
            # so the ids in the buffered operations are those the file gives them.
            lock = JournalFileSymlinkLock(path)
            lock.acquire()
            try:
                self.n_file += sum(1 for _ in self.file.read_logs(self.n_file))  # others' appends since
                self.buffer = []
                if self.storage is None:
                    self.storage = JournalStorage(self)  # replays the file once
                _copy(part, self.storage)
                if self.buffer:
                    self.file.append_logs(self.buffer)
                    self.n_file += len(self.buffer)
                    self.buffer = []
            finally:
                lock.release()

    return Copier()


def list_search_studies(url: str, run_id: str | None = None) -> list[str]:
    """Names of the search studies in the storage at ``url`` (of one run when ``run_id`` is given), sorted."""

    from ..runs.ledger import open_storage

    prefix = SEARCH_PREFIX + (f"{run_id}:" if run_id else "")
    return sorted(s.study_name for s in open_storage(url).get_all_studies() if s.study_name.startswith(prefix))
