"""λ search: what it costs to find the λ that optimises a validation objective, per search strategy.

Two settings, one trial table:

- :func:`search_fidelity` (and :func:`search_replay`, its one-fidelity form) searches over **baselines**: in real
  life every trial trains a U-Net at the suggested λ. Here the trials are replayed from the trained grid of
  baselines: the suggested λ maps to the NEAREST trained cell (L2 in λ space, ties to the first cell of the
  table), whose validation objective and measured device seconds the trial takes (``replay=True``). Every trial
  pays, even when it lands on a cell seen before (a real search would train again at the new λ). A strategy with
  a pruner (``"tpe+hyperband"``) replays the cell's fidelity table (:mod:`hyperrecon.search.fidelity`) and pays
  only the training steps (and validation passes) it consumed before it was stopped.
- :func:`search_model` searches over a trained **λ-conditioned model** (hypernetwork, FiLM): every trial is one
  pass over the validation set, ``objective_fn(λ) -> (objective, device seconds)`` (see
  :func:`make_model_objective`).

Trials come from Optuna studies (:mod:`hyperrecon.search.engine`; in memory, logging silenced, named as in
:mod:`hyperrecon.search.studies`) whose sampler is built from the ``STRATEGIES`` registry (or any
``optuna.samplers`` class) with the run's seed, so a (strategy, seed) pair is deterministic. Parameters are named
``lam0 .. lam{k-1}`` in Optuna and ``lam1, lam2`` in the tables.

Trial rows (``TRIAL_COLUMNS``), in the order the trials finished: ``target, strategy, seed, trial`` (Optuna's
0-based number), ``lam1, lam2`` (the λ evaluated: the replayed cell for baselines; lam2 NaN for k=1),
``objective`` (the last value reported: at the fidelity reached for a pruned trial; NaN for a failed
evaluation), ``cost_seconds`` (device seconds the trial consumed), ``cum_cost_seconds``, ``best_so_far`` (over
COMPLETE trials only), ``best_lam1, best_lam2`` (first λ reaching the best), ``replay``, ``suggested_lam1,
suggested_lam2`` (what the strategy asked for), ``sampler, pruner``, ``state`` (COMPLETE, PRUNED, FAIL),
``step`` (training steps consumed; 1 for a model), ``full_cost_seconds`` (the same trial without early stopping:
full training plus the final validation pass), ``workers``, ``start_seconds, end_seconds`` (the simulated clock;
with one worker ``end_seconds == cum_cost_seconds``) and ``study`` (its name in the run's storage).

:func:`summarise` condenses the trials per (target, strategy); see its docstring for each column.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .engine import Evaluate, Outcome, Strategy, check_run, run_study, strategy_items, with_running_best
from .fidelity import FidelityTable
from .studies import MEMORY_RUN, study_name

TRIAL_COLUMNS = [
    "target",
    "strategy",
    "seed",
    "trial",
    "lam1",
    "lam2",
    "objective",
    "cost_seconds",
    "cum_cost_seconds",
    "best_so_far",
    "best_lam1",
    "best_lam2",
    "replay",
    "suggested_lam1",
    "suggested_lam2",
    "sampler",
    "pruner",
    "state",
    "step",
    "full_cost_seconds",
    "workers",
    "start_seconds",
    "end_seconds",
    "study",
    "mode",
]
REPLAY_TARGET = "baselines"


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna logging at ERROR (no per-trial lines, no notes about optional speed-ups) and its
    experimental-feature warnings hidden; restored afterwards."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(level)


def study_attrs(
    st: Strategy,
    *,
    run_id: str,
    target: str,
    seed: int,
    workers: int,
    objective: str,
    maximize: bool,
    replay: bool,
    fidelity_steps: Sequence[int],
) -> dict[str, Any]:
    """The user attributes of a search study (:mod:`hyperrecon.search.studies`)."""
    return {
        "hrbench_role": "search",
        "run_id": run_id,
        "target": target,
        "strategy": st.name,
        "sampler": st.sampler,
        "pruner": st.pruner,
        "seed": seed,
        "workers": int(workers),
        "objectives": [objective],
        "directions": ["maximize" if maximize else "minimize"],
        "replay": replay,
        "fidelity_steps": [int(v) for v in fidelity_steps],
        "sampler_params": st.sampler_params,
        "pruner_params": st.pruner_params,
    }


def trial_rows(
    run: list[dict[str, Any]],
    st: Strategy,
    *,
    target: str,
    seed: int,
    mode: str,
    workers: int,
    name: str,
    maximize: bool,
) -> list[dict[str, Any]]:
    """A search's finished trials as trial-table rows (the search's keys added, the running best computed)."""
    for row in run:
        row.update(
            target=target,
            strategy=st.name,
            sampler=st.sampler,
            pruner=st.pruner,
            seed=seed,
            replay=mode == "replay",
            mode=mode,
            workers=int(workers),
            study=name,
        )
    return with_running_best(run, maximize)


def _run(
    evaluate: Evaluate,
    strategies: Sequence[str] | Mapping[str, Mapping[str, Any]],
    *,
    budget: int,
    seeds: Sequence[int],
    n_lams: int,
    maximize: bool,
    target: str,
    replay: bool,
    workers: int = 1,
    fidelity_steps: Sequence[int] = (),
    reduction_factor: int = 3,
    strategy_params: Mapping[str, Mapping[str, Any]] | None = None,
    pruner_params: Mapping[str, Mapping[str, Any]] | None = None,
    run_id: str = "local",
    objective: str = "objective",
    studies_out: list | None = None,
) -> pd.DataFrame:
    items = strategy_items(strategies, strategy_params, pruner_params)
    seeds = check_run(budget, seeds, n_lams, workers)
    rows: list[dict[str, Any]] = []
    with _quiet_optuna():
        for st in items:
            for seed in seeds:
                name = study_name(run_id, target, st.name, seed, workers=workers)
                memory = study_name(MEMORY_RUN, target, st.name, seed, workers=workers)  # run-independent
                attrs = study_attrs(
                    st,
                    run_id=run_id,
                    target=target,
                    seed=seed,
                    workers=workers,
                    objective=objective,
                    maximize=maximize,
                    replay=replay,
                    fidelity_steps=fidelity_steps,
                )
                run, study = run_study(
                    evaluate,
                    st,
                    seed=seed,
                    n_lams=n_lams,
                    budget=int(budget),
                    directions=attrs["directions"],
                    study_name=memory,
                    workers=workers,
                    fidelity_steps=fidelity_steps,
                    reduction_factor=reduction_factor,
                    user_attrs=attrs,
                )
                if studies_out is not None:
                    studies_out.append((study, name))
                mode = "replay" if replay else "model"
                rows += trial_rows(
                    run, st, target=target, seed=seed, mode=mode, workers=workers, name=name, maximize=maximize
                )
    return pd.DataFrame(rows, columns=TRIAL_COLUMNS)


# ----------------------------------------------------------------------------------------------------------------
# the settings


def search_fidelity(
    table: FidelityTable,
    strategies: Sequence[str] | Mapping[str, Mapping[str, Any]],
    *,
    budget: int,
    seeds: Sequence[int],
    maximize: bool,
    metric: str | None = None,
    target: str = REPLAY_TARGET,
    workers: int = 1,
    reduction_factor: int = 3,
    strategy_params: Mapping[str, Mapping[str, Any]] | None = None,
    pruner_params: Mapping[str, Mapping[str, Any]] | None = None,
    run_id: str = "local",
    studies_out: list | None = None,
) -> pd.DataFrame:
    """Search over baselines by replaying a :class:`FidelityTable` (``metric``: its objective column, default the
    first). Each suggested λ takes the nearest trained cell. Without a pruner a trial costs the cell's full
    training plus its final validation pass; with one it reports the validation objective at each fidelity step
    (training seconds since the previous step plus that step's validation pass) and, when pruned, pays only up to
    there. ``workers > 1``: simulated asynchronous parallel search (:mod:`hyperrecon.search.engine`)."""
    cells = table.cells.shape[1]
    m = table.metric_index(metric) if metric is not None else 0
    train = table.train_seconds
    increments = np.diff(train, axis=1, prepend=0.0) + table.eval_seconds

    def evaluate(lam: np.ndarray, multi: bool) -> Outcome:
        i = table.nearest(lam)
        full = float(train[i, -1] + table.eval_seconds[i, -1])
        if not multi:
            return Outcome(table.cells[i], table.steps[-1:], table.values[i, -1:, m : m + 1], np.array([full]), full)
        return Outcome(table.cells[i], table.steps, table.values[i, :, m : m + 1], increments[i], full)

    return _run(
        evaluate,
        strategies,
        budget=budget,
        seeds=seeds,
        n_lams=cells,
        maximize=maximize,
        target=target,
        replay=True,
        workers=workers,
        fidelity_steps=[int(s) for s in table.steps],
        reduction_factor=reduction_factor,
        strategy_params=strategy_params,
        pruner_params=pruner_params,
        run_id=run_id,
        objective=table.metrics[m],
        studies_out=studies_out,
    )


def search_replay(
    table: pd.DataFrame,
    strategies: Sequence[str] | Mapping[str, Mapping[str, Any]],
    *,
    budget: int,
    seeds: Sequence[int],
    n_lams: int,
    maximize: bool,
    target: str = REPLAY_TARGET,
    **kwargs: Any,
) -> pd.DataFrame:
    """Search over baselines by replay: one row per trained cell in ``table`` (columns ``lam1``, [``lam2``],
    ``objective``, ``cost_seconds``); each suggested λ takes the nearest cell's objective and training cost (one
    fidelity: :func:`search_fidelity` of :meth:`FidelityTable.single`)."""
    return search_fidelity(
        FidelityTable.single(table, n_lams),
        strategies,
        budget=budget,
        seeds=seeds,
        maximize=maximize,
        target=target,
        **kwargs,
    )


def search_model(
    objective_fn: Callable[[np.ndarray], tuple[float, float]],
    strategies: Sequence[str] | Mapping[str, Mapping[str, Any]],
    *,
    budget: int,
    seeds: Sequence[int],
    n_lams: int,
    maximize: bool,
    target: str,
    **kwargs: Any,
) -> pd.DataFrame:
    """Search over a trained λ-conditioned model: ``objective_fn(λ (k,)) -> (objective, device seconds)``. A
    pruner in a strategy's name has nothing to stop here (one evaluation per trial) and is ignored."""

    def evaluate(lam: np.ndarray, multi: bool) -> Outcome:
        value, seconds = objective_fn(lam)
        return Outcome(lam, np.array([1]), np.array([[float(value)]]), np.array([float(seconds)]), float(seconds))

    return _run(
        evaluate,
        strategies,
        budget=budget,
        seeds=seeds,
        n_lams=n_lams,
        maximize=maximize,
        target=target,
        replay=False,
        **kwargs,
    )


def make_model_objectives(
    model: Any, val_data: Any, metrics: Sequence[Any], **kwargs: Any
) -> Callable[[np.ndarray | None], tuple[dict[str, float], float]]:
    """:func:`hyperrecon.evaluation.model_objectives` (the model objective evaluation exposes; same arguments)."""
    from ..evaluation import model_objectives

    return model_objectives(model, val_data, metrics, **kwargs)


def make_model_objective(
    model: Any, val_data: Any, metric: Any, **kwargs: Any
) -> Callable[[np.ndarray], tuple[float, float]]:
    """``objective_fn(λ) -> (mean of metric over the validation slices, device seconds)`` for :func:`search_model`
    (:func:`make_model_objectives` with one metric; same keyword arguments)."""
    fn = make_model_objectives(model, val_data, [metric], **kwargs)
    name = getattr(metric, "name", metric)  # a name or a built metric

    def objective_fn(lam: np.ndarray) -> tuple[float, float]:
        values, seconds = fn(lam)
        return values[name], seconds

    return objective_fn


# ----------------------------------------------------------------------------------------------------------------
# summary


def _gap(best: float, optimum: float, maximize: bool) -> float:
    """Signed regret: how much worse than the grid optimum (> 0 worse, < 0 better than any grid point)."""
    return optimum - best if maximize else best - optimum


def summarise(
    trials: pd.DataFrame,
    *,
    grid_optimum: float | Mapping[str, float],
    maximize: bool,
    test_metric_fn: Callable[[str, np.ndarray], float] | None,
    training_cost: Mapping[str, float],
    eps: float = 0.0,
) -> pd.DataFrame:
    """One row per (target, strategy) of a trial table.

    Per seed the final ``best`` is the last ``best_so_far``. Columns:

    - ``n_seeds``, ``n_trials`` (mean trials per seed);
    - ``best_mean``, ``best_std`` (sample std over seeds, ddof=1; NaN for one seed);
    - ``regret_mean``, ``regret_std``: signed regret ``optimum - best`` (maximise) or ``best - optimum``
      (minimise): 0 when the optimum is hit, > 0 when worse, < 0 when the search beat every grid point (possible
      over a model's continuous λ). ``abs_regret_mean``: mean of ``|best - optimum|``. ``grid_optimum`` is one
      number or one per target;
    - ``chosen_seed``, ``chosen_lam1``, ``chosen_lam2``: the λ of the MEDIAN seed (seeds ranked by final best,
      better first; rank ``(n - 1) // 2``, i.e. the lower-middle one of an even count);
    - ``test_metric``: ``test_metric_fn(target, chosen λ (k,))``, NaN without a function;
    - ``search_cost_mean``: mean over seeds of the summed trial costs (device seconds);
    - ``total_cost_mean``: for replayed and live baselines the search cost itself (its trials ARE the
      trainings); for a model ``training_cost[target]`` (once) + the search cost (NaN when it has none);
    - ``trials_to_within_mean``: mean over seeds of the first trial count (1-based) whose best is within ``eps``
      (signed regret <= eps); NaN when any seed never gets there. ``frac_within``: the fraction of seeds that
      do; ``cost_to_within_mean``: cumulative cost at that trial (NaN like the trial count).
    """
    missing = [c for c in TRIAL_COLUMNS[:13] if c not in trials.columns]
    if missing:
        raise ConfigError(f"summarise: trial table misses columns {missing}")
    out = []
    for (target, strategy), runs in trials.groupby(["target", "strategy"], sort=False):
        optimum = float(grid_optimum[target] if isinstance(grid_optimum, Mapping) else grid_optimum)
        per_seed = []
        for seed, run in runs.groupby("seed", sort=False):
            run = run.sort_values("trial")
            last = run.iloc[-1]
            gaps = np.array([_gap(b, optimum, maximize) for b in run["best_so_far"]])
            hit = np.flatnonzero(gaps <= eps)  # NaN gaps compare False
            per_seed.append(
                {
                    "seed": seed,
                    "best": float(last["best_so_far"]),
                    "lam": (last["best_lam1"], last["best_lam2"]),
                    "n_trials": len(run),
                    "cost": float(run["cost_seconds"].sum()),
                    "to_within": float(hit[0] + 1) if hit.size else math.nan,
                    "cost_within": float(run["cum_cost_seconds"].iloc[hit[0]]) if hit.size else math.nan,
                    "replay": bool(run["replay"].iloc[0]),
                    "live": "mode" in run and run["mode"].iloc[0] == "live",
                }
            )
        best = np.array([s["best"] for s in per_seed])
        regret = np.array([_gap(b, optimum, maximize) for b in best])
        # better first, seeds whose every trial failed (NaN best) last
        order = sorted(range(len(per_seed)), key=lambda i: (math.isnan(best[i]), -best[i] if maximize else best[i]))
        chosen = per_seed[order[(len(order) - 1) // 2]]
        lam = np.array([v for v in chosen["lam"] if not math.isnan(v)])
        search_cost = float(np.mean([s["cost"] for s in per_seed]))
        replay = all(s["replay"] for s in per_seed)
        trained = replay or all(s["live"] for s in per_seed)  # the trials are the trainings
        train = 0.0 if trained else float(training_cost.get(target, math.nan))
        within = np.array([s["to_within"] for s in per_seed])
        out.append(
            {
                "target": target,
                "strategy": strategy,
                "n_seeds": len(per_seed),
                "n_trials": float(np.mean([s["n_trials"] for s in per_seed])),
                "best_mean": float(best.mean()),
                "best_std": _std(best),
                "grid_optimum": optimum,
                "regret_mean": float(regret.mean()),
                "regret_std": _std(regret),
                "abs_regret_mean": float(np.abs(regret).mean()),
                "chosen_seed": chosen["seed"],
                "chosen_lam1": chosen["lam"][0],
                "chosen_lam2": chosen["lam"][1],
                "test_metric": float(test_metric_fn(target, lam))
                if test_metric_fn is not None and lam.size
                else math.nan,
                "search_cost_mean": search_cost,
                "total_cost_mean": train + search_cost,
                "eps": float(eps),
                "trials_to_within_mean": float(within.mean()),
                "frac_within": float(np.mean(~np.isnan(within))),
                "cost_to_within_mean": float(np.mean([s["cost_within"] for s in per_seed])),
                "replay": replay,
            }
        )
    return pd.DataFrame(out)


def _std(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if values.size > 1 else math.nan
