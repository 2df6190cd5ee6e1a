"""Live search over baselines: each trial trains a U-Net at the suggested λ and reports its validation objective to
the Optuna pruner as it trains (the real counterpart of the replayed multi-fidelity search of
:func:`hyperrecon.search.core.search_fidelity`).

A live study is created directly in the run's storage (its ``ledger.journal`` or database) under its predictable
name (:func:`hyperrecon.search.studies.study_name`, target :data:`LIVE_TARGET`), and the storage is its state:

- a trial asks the study's sampler for λ and calls ``train_trial(λ, report_steps, report)``
  (:data:`TrainTrial`), which trains and, after each of ``report_steps`` (the fidelity steps with a pruner, only
  the last without one), calls ``report(step, value, train_seconds, eval_seconds)`` with the validation objective,
  the training device seconds since the previous report and the device seconds of that validation pass. The
  trial reports the value (``trial.report``) and, before the last step, asks ``trial.should_prune()``: ``report``
  returns True and the trainer stops; the trial is PRUNED having paid only what it consumed. A non-finite value
  fails the trial.
- each trial's device time is kept as user attributes (module doc of :mod:`hyperrecon.search.studies`, plus
  ``train_seconds``, ``eval_seconds`` and ``mode = "live"``). ``full_cost_seconds`` is what the trial costs
  without early stopping, as for a replayed one: full training plus one validation pass; for a pruned trial the
  training part is extrapolated (its training seconds per step so far x all steps).
- resume: a job that is retried opens the same study. Finished trials stay; a trial left RUNNING by the killed
  attempt is marked FAIL (user attribute ``killed``), its λ is enqueued again (trained from scratch), and the search
  goes on until ``budget`` trials have finished. The sampler of a resumed search is seeded with ``seed + n`` (n:
  trials finished before), so that a random stream does not repeat the λ already tried; an uninterrupted search
  is deterministic in its seed, a resumed one keeps its history but not the random stream of an uninterrupted one.
- Hyperband assigns brackets by a hash of the study name, which for a live study holds the run id.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .engine import Strategy, check_run, strategy_items
from .studies import study_name

LIVE_TARGET = "baselines-live"

# report(step, value, training device seconds since the previous report, validation device seconds) -> stop now
Report = Callable[[int, float, float, float], bool]
# train_trial(λ (k,), report_steps ascending, report): train at λ, report after each report step, stop when told
TrainTrial = Callable[[np.ndarray, Sequence[int], Report], None]


def _attrs(trial) -> dict[str, Any]:
    return dict(trial.user_attrs)


def _finished(trials) -> list:
    """Trials that count towards the budget: complete, pruned, or failed by their evaluation (not killed)."""
    from optuna.trial import TrialState

    done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return [t for t in trials if t.state in done and not t.user_attrs.get("killed")]


def _recover(study) -> None:
    """Mark trials a killed attempt left RUNNING as FAIL (``killed``) and enqueue their λ again."""
    from optuna.trial import TrialState

    storage = study._storage
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.set_trial_user_attr(t._trial_id, "killed", True)
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        if t.params:
            study.enqueue_trial(dict(t.params), skip_if_exists=False)


def run_live_study(
    train_trial: TrainTrial,
    strategy: Strategy,
    *,
    storage: Any,
    name: str,
    seed: int,
    n_lams: int,
    budget: int,
    maximize: bool,
    fidelity_steps: Sequence[int],
    reduction_factor: int = 3,
    user_attrs: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Run (or resume) one live search as the study ``name`` in ``storage`` (an Optuna storage or URL) until
    ``budget`` trials have finished (module doc). Returns one row per finished trial in trial order, keys as
    :func:`hyperrecon.search.engine.run_study`'s rows."""
    import optuna
    from optuna.trial import TrialState

    from ..strategies import build_pruner, build_strategy_sampler

    steps = [int(s) for s in fidelity_steps]
    final = steps[-1]
    multi = strategy.multi_fidelity
    pruner = (
        build_pruner(
            strategy.pruner,
            strategy.pruner_params,
            steps=steps,
            reduction_factor=reduction_factor,
            budget=budget,
            seed=seed,
        )
        if multi
        else optuna.pruners.NopPruner()
    )

    def sampler(s: int):
        return build_strategy_sampler(strategy.sampler, strategy.sampler_params, n_lams=n_lams, budget=budget, seed=s)

    study = optuna.create_study(
        storage=storage,
        study_name=name,
        sampler=sampler(seed),
        pruner=pruner,
        direction="maximize" if maximize else "minimize",
        load_if_exists=True,
    )
    for key, value in (user_attrs or {}).items():
        study.set_user_attr(key, value)
    _recover(study)
    done = _finished(study.get_trials(deepcopy=False))
    if done:  # a resumed search: a fresh random stream (module doc)
        study.sampler = sampler(seed + len(done))
    clock = sum(float(t.user_attrs.get("cost_seconds", 0.0)) for t in done)
    report_steps = steps if multi else [final]
    n, stop = len(done), False
    while n < budget and not stop:
        exhausted = getattr(study.sampler, "is_exhausted", None)  # GridSampler: a resumed search whose grid is done
        if exhausted is not None and exhausted(study):
            break
        trial = study.ask()
        lam = np.array([trial.suggest_float(f"lam{i}", 0.0, 1.0) for i in range(n_lams)])
        st: dict[str, Any] = {"step": 0, "value": math.nan, "cost": 0.0, "eval": 0.0, "train": 0.0, "last_eval": 0.0}
        st["state"] = None

        def report(step: int, value: float, train: float, evals: float, trial=trial, st=st) -> bool:
            st.update(step=int(step), value=float(value), train=st["train"] + float(train))
            st.update(eval=st["eval"] + float(evals), last_eval=float(evals))
            st["cost"] = st["train"] + st["eval"]
            if not math.isfinite(value):
                st["state"] = TrialState.FAIL
                return True
            if multi:
                trial.report(float(value), int(step))
                if int(step) < final and trial.should_prune():
                    st["state"] = TrialState.PRUNED
                    return True
            return False

        train_trial(lam, report_steps, report)
        state = st["state"] or (TrialState.COMPLETE if st["step"] == final else TrialState.FAIL)
        # trained to the end plus its last validation pass (as a replayed trial's); a pruned trial's extrapolated
        full = st["train"] * final / st["step"] + st["last_eval"] if st["step"] else 0.0
        attrs = {
            "cost_seconds": st["cost"],
            "train_seconds": st["train"],
            "eval_seconds": st["eval"],
            "full_cost_seconds": full,
            "steps": st["step"],
            "lam1": float(lam[0]),
            "lam2": float(lam[1]) if n_lams > 1 else math.nan,
            "start_seconds": clock,
            "end_seconds": clock + st["cost"],
            "mode": "live",
        }
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        clock += st["cost"]
        try:
            if state == TrialState.COMPLETE:
                study.tell(trial, st["value"])
            else:
                study.tell(trial, state=state)
        except RuntimeError as exc:  # GridSampler.after_trial calls study.stop() once the grid is exhausted
            if "Study.stop" not in str(exc):
                raise
            stop = True
        n += 1
    return [_row(t) for t in _finished(study.get_trials(deepcopy=False))]


def _row(t) -> dict[str, Any]:
    from optuna.trial import TrialState

    a = t.user_attrs
    if t.state == TrialState.COMPLETE:
        value = float(t.value)
    elif t.state == TrialState.PRUNED and t.intermediate_values:
        value = float(t.intermediate_values[max(t.intermediate_values)])
    else:
        value = math.nan
    lam1, lam2 = float(a.get("lam1", math.nan)), float(a.get("lam2", math.nan))
    return {
        "trial": t.number,
        "lam1": lam1,
        "lam2": lam2,
        "suggested_lam1": lam1,
        "suggested_lam2": lam2,
        "values": [value],
        "objective": value,
        "state": t.state.name,
        "cost_seconds": float(a.get("cost_seconds", 0.0)),
        "full_cost_seconds": float(a.get("full_cost_seconds", math.nan)),
        "steps": int(a.get("steps", 0)),
        "step": int(a.get("steps", 0)),
        "start_seconds": float(a.get("start_seconds", math.nan)),
        "end_seconds": float(a.get("end_seconds", math.nan)),
    }


def search_live(
    train_trial: TrainTrial,
    strategies: Sequence[str] | Mapping[str, Mapping[str, Any]],
    *,
    storage: Any,
    budget: int,
    seeds: Sequence[int],
    n_lams: int,
    maximize: bool,
    fidelity_steps: Sequence[int],
    metric: str = "objective",
    reduction_factor: int = 3,
    strategy_params: Mapping[str, Mapping[str, Any]] | None = None,
    pruner_params: Mapping[str, Mapping[str, Any]] | None = None,
    run_id: str = "local",
    target: str = LIVE_TARGET,
) -> pd.DataFrame:
    """Every live search (strategy x seed) as a study in ``storage``, run or resumed (:func:`run_live_study`).
    Returns the trial table (:data:`hyperrecon.search.core.TRIAL_COLUMNS`, ``mode = "live"``, ``replay`` False)."""
    from .core import TRIAL_COLUMNS, _quiet_optuna, study_attrs, trial_rows

    items = strategy_items(strategies, strategy_params, pruner_params, where="search live strategies")
    seeds = check_run(budget, seeds, n_lams)
    rows: list[dict[str, Any]] = []
    with _quiet_optuna():
        for st in items:
            for seed in seeds:
                name = study_name(run_id, target, st.name, seed)
                attrs = study_attrs(
                    st,
                    run_id=run_id,
                    target=target,
                    seed=seed,
                    workers=1,
                    objective=metric,
                    maximize=maximize,
                    replay=False,
                    fidelity_steps=fidelity_steps,
                )
                run = run_live_study(
                    train_trial,
                    st,
                    storage=storage,
                    name=name,
                    seed=seed,
                    n_lams=n_lams,
                    budget=int(budget),
                    maximize=maximize,
                    fidelity_steps=fidelity_steps,
                    reduction_factor=reduction_factor,
                    user_attrs={**attrs, "mode": "live"},
                )
                rows += trial_rows(
                    run, st, target=target, seed=seed, mode="live", workers=1, name=name, maximize=maximize
                )
    return pd.DataFrame(rows, columns=TRIAL_COLUMNS)
