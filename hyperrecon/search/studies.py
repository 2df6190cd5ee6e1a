"""Search studies in a run's storage: predictable names, saving, listing.

Every search (one target x strategy x seed, and per worker count or objective pair where those vary) runs as an
in-memory Optuna study that already bears its final name (Hyperband assigns brackets by a hash of the study name,
so the name is part of the result), and is then copied into the run's own storage (its ``ledger.journal`` or
database) with :func:`save_studies`. ``optuna-dashboard <storage>`` and ``optuna.load_study`` open them there.

Name: ``hrbench-search:<run_id>:<target>:<strategy>:seed=<seed>``, with ``:workers=<N>`` for simulated parallel
searches (N > 1) and ``:mo=<metric1>,<metric2>`` for multi-objective ones. Study user attributes: ``run_id``,
``target``, ``strategy``, ``sampler``, ``pruner``, ``seed``, ``workers``, ``objectives``, ``directions``,
``fidelity_steps``, ``sampler_params``, ``pruner_params``, ``replay``. Trial user attributes: ``cost_seconds``
(device seconds the trial consumed), ``full_cost_seconds`` (the same trial trained to the end), ``steps``
(training steps consumed; replayed baselines), ``lam1``/``lam2`` (λ evaluated: the replayed cell),
``start_seconds``/``end_seconds`` (the search's simulated clock).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..errors import RunError

SEARCH_PREFIX = "hrbench-search:"


def study_name(run_id: str, target: str, strategy: str, seed: int, *, workers: int = 1,
               objectives: Sequence[str] | None = None) -> str:
    """The predictable name of one search study (see the module doc)."""
    name = f"{SEARCH_PREFIX}{run_id}:{target}:{strategy}:seed={int(seed)}"
    if workers > 1:
        name += f":workers={int(workers)}"
    if objectives is not None and len(objectives) > 1:
        name += ":mo=" + ",".join(objectives)
    return name


def save_studies(studies: Iterable, url: str) -> list[str]:
    """Copy finished in-memory studies into the storage at ``url`` under their own names, replacing a study of
    the same name (a retried job). Returns the names written."""
    import optuna

    from ..storage import _redact, open_storage

    storage = open_storage(url)
    existing = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    names = []
    for study in studies:
        name = study.study_name
        try:
            if name in existing:
                optuna.delete_study(study_name=name, storage=storage)
            optuna.copy_study(from_study_name=name, from_storage=study._storage, to_storage=storage,
                              to_study_name=name)
        except Exception as exc:  # a database that went away: one line naming the storage
            raise RunError(f"{_redact(url)}: cannot save search study '{name}' ({type(exc).__name__}: {exc})") from exc
        names.append(name)
    return names


def list_search_studies(url: str, run_id: str | None = None) -> list[str]:
    """Names of the search studies in the storage at ``url`` (of one run when ``run_id`` is given), sorted."""
    import optuna

    from ..storage import open_storage

    prefix = SEARCH_PREFIX + (f"{run_id}:" if run_id else "")
    summaries = optuna.get_all_study_summaries(open_storage(url), include_best_trial=False)
    return sorted(s.study_name for s in summaries if s.study_name.startswith(prefix))
