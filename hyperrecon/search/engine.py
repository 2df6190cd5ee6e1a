"""The search engine: Optuna ask/tell studies on a simulated clock, with N asynchronous workers and pruners.

A search asks its sampler for λ, evaluates it and tells the result, ``budget`` times. Each evaluation is an
:class:`Outcome`: the λ actually evaluated, and per reported fidelity (training step) the objective value(s) and
the device seconds it took to get there from the previous report. With a pruner other than ``"none"`` the trial
reports each fidelity in turn (``trial.report(value, step)``) and stops as soon as ``trial.should_prune()`` says
so, having paid only the seconds up to that report; without one it reports nothing and pays the full cost.

Time: ``workers`` simulated workers start trials as soon as they are free (asynchronous; no waiting for the
others). Reports happen in the order of their simulated times (ties: the earlier-scheduled first), so a pruner sees
exactly the intermediate values that had been reported by then, as in a real asynchronous search. With one worker
this is the plain sequential search. A trial's ``start_seconds``/``end_seconds`` are on that clock (wall-clock
time of the parallel search); ``cost_seconds`` is its device time. The grid strategy may stop before ``budget``
once its grid is exhausted (Optuna's GridSampler stops the study).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..errors import ConfigError
from ..strategies import build_pruner, build_strategy_sampler, check_strategy, split_strategy


@dataclass
class Outcome:
    """One evaluated λ: ``lam`` (k,) evaluated, ``steps`` (F,) fidelity steps it reports at (F = 1: only the
    final result), ``values`` (F, M) objective values, ``seconds`` (F,) device seconds from the previous report to
    this one, ``full_seconds`` what the trial costs without early stopping."""

    lam: np.ndarray
    steps: np.ndarray
    values: np.ndarray
    seconds: np.ndarray
    full_seconds: float


# evaluate(λ asked (k,), multi_fidelity) -> Outcome
Evaluate = Callable[[np.ndarray, bool], Outcome]


@dataclass(frozen=True)
class Strategy:
    """A search strategy: ``name`` as written in the study (``"tpe"``, ``"random+hyperband"``), its sampler and
    pruner names and their parameters."""

    name: str
    sampler: str
    pruner: str = "none"
    sampler_params: dict[str, Any] = field(default_factory=dict)
    pruner_params: dict[str, Any] = field(default_factory=dict)

    @property
    def multi_fidelity(self) -> bool:
        return self.pruner != "none"


def strategy_items(
    strategies: str | Sequence[str] | Mapping[str, Mapping[str, Any]],
    strategy_params: Mapping[str, Mapping[str, Any]] | None = None,
    pruner_params: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    where: str = "search strategies",
) -> list[Strategy]:
    """Strategy names (``sampler`` or ``sampler+pruner``), or ``{name: sampler params}``, each checked against
    the registries (or Optuna's own classes) before any work. ``strategy_params``/``pruner_params``: parameters
    per sampler/pruner name (the study's ``search.strategy_params``/``search.pruner_params``)."""
    if isinstance(strategies, str):
        strategies = [strategies]
    if isinstance(strategies, Mapping):
        given: list[tuple[str, dict[str, Any] | None]] = [(str(k), dict(v or {})) for k, v in strategies.items()]
    else:
        given = [(str(k), None) for k in strategies]
    if not given:
        raise ConfigError(f"{where}: at least one strategy is needed, got none")
    out = []
    for name, params in given:
        sampler, pruner = split_strategy(name)
        sp = params if params is not None else dict((strategy_params or {}).get(sampler, {}))
        pp = dict((pruner_params or {}).get(pruner, {}))
        check_strategy(name, sp, pp, where=where)
        out.append(Strategy(name, sampler, pruner, sp, pp))
    return out


def check_run(budget: int, seeds: Sequence[int], n_lams: int, workers: int = 1) -> list[int]:
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer) or budget < 1:
        raise ConfigError(f"search: `budget >= 1` must hold, but got budget={budget!r}")
    if n_lams not in (1, 2):
        raise ConfigError(f"search: n_lams must be 1 or 2, got {n_lams!r}")
    if isinstance(workers, bool) or not isinstance(workers, int | np.integer) or workers < 1:
        raise ConfigError(f"search: `workers >= 1` must hold, but got workers={workers!r}")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ConfigError("search: at least one seed is needed, got seeds=[]")
    return seeds


def _lam_pair(lam: np.ndarray) -> tuple[float, float]:
    return float(lam[0]), (float(lam[1]) if lam.size > 1 else math.nan)


def run_study(
    evaluate: Evaluate,
    strategy: Strategy,
    *,
    seed: int,
    n_lams: int,
    budget: int,
    directions: Sequence[Literal["minimize", "maximize"]],
    study_name: str,
    workers: int = 1,
    fidelity_steps: Sequence[int] = (),
    reduction_factor: int = 3,
    user_attrs: Mapping[str, Any] | None = None,
):
    """One search as an in-memory Optuna study named ``study_name``. Returns ``(rows, study)``: one dict per
    finished trial in the order they finished (keys ``trial, lam1, lam2, suggested_lam1, suggested_lam2, values,
    objective, state, step, cost_seconds, full_cost_seconds, start_seconds, end_seconds``)."""
    import optuna
    from optuna.trial import TrialState

    sampler = build_strategy_sampler(strategy.sampler, strategy.sampler_params, n_lams=n_lams, budget=budget, seed=seed)
    multi = strategy.multi_fidelity and len(directions) == 1
    pruner = (
        build_pruner(
            strategy.pruner,
            strategy.pruner_params,
            steps=list(fidelity_steps) or [1],
            reduction_factor=reduction_factor,
            budget=budget,
            seed=seed,
        )
        if strategy.multi_fidelity
        else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(study_name=study_name, sampler=sampler, pruner=pruner, directions=list(directions))
    for key, value in (user_attrs or {}).items():
        study.set_user_attr(key, value)

    order = itertools.count()
    events: list[tuple[float, int, dict[str, Any]]] = []
    rows: list[dict[str, Any]] = []
    asked, free, now, stop = 0, int(workers), 0.0, False

    def start() -> None:
        trial = study.ask()
        asked_lam = np.array([trial.suggest_float(f"lam{i}", 0.0, 1.0) for i in range(n_lams)])
        out = evaluate(asked_lam, multi)
        st = {"trial": trial, "asked": asked_lam, "out": out, "f": 0, "cost": 0.0, "start": now}
        heapq.heappush(events, (now + float(out.seconds[0]), next(order), st))

    def finish(st: dict[str, Any], state: TrialState) -> None:
        nonlocal stop, free
        trial, out, f = st["trial"], st["out"], st["f"]
        values = [float(v) for v in out.values[f]]
        lam1, lam2 = _lam_pair(np.asarray(out.lam, dtype=np.float64))
        attrs = {
            "cost_seconds": st["cost"],
            "full_cost_seconds": float(out.full_seconds),
            "steps": int(out.steps[f]),
            "lam1": lam1,
            "lam2": lam2,
            "start_seconds": st["start"],
            "end_seconds": now,
        }
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        if state == TrialState.COMPLETE and not all(math.isfinite(v) for v in values):
            state = TrialState.FAIL  # a failed evaluation: Optuna records it and goes on; never the best
        try:
            if state == TrialState.COMPLETE:
                study.tell(trial, values if len(values) > 1 else values[0])
            else:
                study.tell(trial, state=state)
        except RuntimeError as exc:  # GridSampler.after_trial calls study.stop() once the grid is exhausted
            if "Study.stop" not in str(exc):
                raise
            stop = True
        free += 1
        s1, s2 = _lam_pair(st["asked"])
        rows.append(
            {
                "trial": trial.number,
                "lam1": lam1,
                "lam2": lam2,
                "suggested_lam1": s1,
                "suggested_lam2": s2,
                "values": values,
                "objective": values[0],
                "state": state.name,
                **attrs,
                "step": attrs["steps"],
            }
        )

    while True:
        while not stop and asked < budget and free > 0:
            start()
            asked += 1
            free -= 1
        if not events:
            break
        now, _, st = heapq.heappop(events)
        out, f = st["out"], st["f"]
        st["cost"] += float(out.seconds[f])
        last = f == len(out.steps) - 1
        if multi:
            value = float(out.values[f][0])
            if not math.isfinite(value):
                finish(st, TrialState.FAIL)
                continue
            st["trial"].report(value, int(out.steps[f]))
            if not last and st["trial"].should_prune():
                finish(st, TrialState.PRUNED)
                continue
        if last:
            finish(st, TrialState.COMPLETE)
        else:
            st["f"] = f + 1
            heapq.heappush(events, (now + float(out.seconds[f + 1]), next(order), st))
    return rows, study


def with_running_best(rows: list[dict[str, Any]], maximize: bool) -> list[dict[str, Any]]:
    """Add cumulative cost and the best objective so far, in the given (finishing) order. Only COMPLETE trials
    with a finite objective count (a pruned trial's value is at a lower fidelity); ties keep the earlier λ."""
    best, best_lam = math.nan, (math.nan, math.nan)
    cum = 0.0
    for row in rows:
        cum += row["cost_seconds"]
        v = row["objective"]
        if (
            row.get("state", "COMPLETE") == "COMPLETE"
            and math.isfinite(v)
            and (math.isnan(best) or (v > best if maximize else v < best))
        ):
            best, best_lam = v, (row["lam1"], row["lam2"])
        row.update(cum_cost_seconds=cum, best_so_far=best, best_lam1=best_lam[0], best_lam2=best_lam[1])
    return rows
