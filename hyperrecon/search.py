"""λ search: what it costs to find the λ that optimises a validation objective, per search strategy.

Two settings, one trial table:

- :func:`search_replay` searches over **baselines**: in real life every trial trains a U-Net at the suggested λ.
  Here the trials are replayed from a trained grid of baselines: the suggested λ maps to the NEAREST trained cell
  (L2 in λ space, ties to the first cell of the table), whose objective and measured training cost the trial
  takes (``replay=True``). Every trial pays its cell's training cost, even when it lands on a cell seen before
  (a real search would train again at the new λ).
- :func:`search_model` searches over a trained **λ-conditioned model** (hypernetwork, FiLM): every trial is one
  pass over the validation set, ``objective_fn(λ) -> (objective, device seconds)`` (see
  :func:`make_model_objective`).

Trials come from Optuna studies (in-memory, logging silenced) whose sampler is built from the ``STRATEGIES``
registry with the run's seed, so a (strategy, seed) pair is deterministic. Parameters are named ``lam0 ..
lam{k-1}`` in Optuna and ``lam1, lam2`` in the tables. ``study.optimize(n_trials=budget)``: the grid strategy may
stop earlier once its grid (at most ``budget`` points when budget >= 2^k) is exhausted.

Trial rows (``TRIAL_COLUMNS``): ``target, strategy, seed, trial`` (0-based), ``lam1, lam2`` (the λ evaluated:
the replayed cell for baselines; lam2 NaN for k=1), ``objective`` (NaN for a failed evaluation, which never
becomes the best), ``cost_seconds``, ``cum_cost_seconds``, ``best_so_far``, ``best_lam1, best_lam2`` (first λ
reaching the best), ``replay``, plus ``suggested_lam1, suggested_lam2`` (what the strategy asked for).

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

from .errors import ConfigError
from .strategies import STRATEGIES

TRIAL_COLUMNS = [
    "target", "strategy", "seed", "trial", "lam1", "lam2", "objective", "cost_seconds", "cum_cost_seconds",
    "best_so_far", "best_lam1", "best_lam2", "replay", "suggested_lam1", "suggested_lam2",
]
REPLAY_TARGET = "baselines"

# objective of one λ (k,) -> (objective, cost seconds, λ actually evaluated (k,))
_Evaluate = Callable[[np.ndarray], tuple[float, float, np.ndarray]]


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


def _strategy_items(strategies: Sequence[str] | Mapping[str, Mapping[str, Any]]) -> list[tuple[str, dict]]:
    """Strategy names (or ``{name: params}``), each looked up in ``STRATEGIES`` before any work."""
    if isinstance(strategies, str):
        strategies = [strategies]
    if isinstance(strategies, Mapping):
        items = [(str(k), dict(v or {})) for k, v in strategies.items()]
    else:
        items = [(str(k), {}) for k in strategies]
    if not items:
        raise ConfigError("search strategies: at least one strategy is needed, got none")
    for name, params in items:
        STRATEGIES.check_params(name, params, where="search strategies")
    return items


def _check_run(budget: int, seeds: Sequence[int], n_lams: int) -> list[int]:
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer) or budget < 1:
        raise ConfigError(f"search: `budget >= 1` must hold, but got budget={budget!r}")
    if n_lams not in (1, 2):
        raise ConfigError(f"search: n_lams must be 1 or 2, got {n_lams!r}")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ConfigError("search: at least one seed is needed, got seeds=[]")
    return seeds


def _lam_pair(lam: np.ndarray) -> tuple[float, float]:
    return float(lam[0]), (float(lam[1]) if lam.size > 1 else math.nan)


def _run_searches(
    evaluate: _Evaluate,
    strategies: Sequence[str] | Mapping[str, Mapping[str, Any]],
    *,
    budget: int,
    seeds: Sequence[int],
    n_lams: int,
    maximize: bool,
    target: str,
    replay: bool,
) -> pd.DataFrame:
    items = _strategy_items(strategies)
    seeds = _check_run(budget, seeds, n_lams)
    rows: list[dict[str, Any]] = []
    with _quiet_optuna():
        for name, params in items:
            for seed in seeds:
                run = _one_search(evaluate, name, params, seed, int(budget), n_lams, maximize)
                for row in run:
                    row.update(target=target, strategy=name, seed=seed, replay=replay)
                rows += _with_running_best(run, maximize)
    return pd.DataFrame(rows, columns=TRIAL_COLUMNS)


def _one_search(
    evaluate: _Evaluate, name: str, params: dict, seed: int, budget: int, n_lams: int, maximize: bool
) -> list[dict[str, Any]]:
    """One Optuna study of ``budget`` trials with strategy ``name`` seeded ``seed``: rows in trial order."""
    import optuna

    sampler = STRATEGIES.build(name, params, where="search strategies", n_lams=n_lams, budget=budget, seed=seed)
    study = optuna.create_study(sampler=sampler, direction="maximize" if maximize else "minimize")
    run: list[dict[str, Any]] = []

    def objective(trial: optuna.Trial) -> float:
        asked = np.array([trial.suggest_float(f"lam{i}", 0.0, 1.0) for i in range(n_lams)])
        value, cost, used = evaluate(asked)
        lam1, lam2 = _lam_pair(np.asarray(used, dtype=np.float64))
        s1, s2 = _lam_pair(asked)
        run.append(
            {
                "trial": trial.number, "lam1": lam1, "lam2": lam2, "objective": float(value),
                "cost_seconds": float(cost), "suggested_lam1": s1, "suggested_lam2": s2,
            }
        )
        return float(value)  # NaN: Optuna records a failed trial and goes on

    study.optimize(objective, n_trials=budget)
    return run


def _with_running_best(run: list[dict[str, Any]], maximize: bool) -> list[dict[str, Any]]:
    """Add cumulative cost and the best objective so far (finite values only; ties keep the earlier λ)."""
    best, best_lam = math.nan, (math.nan, math.nan)
    cum = 0.0
    for row in run:
        cum += row["cost_seconds"]
        v = row["objective"]
        if math.isfinite(v) and (math.isnan(best) or (v > best if maximize else v < best)):
            best, best_lam = v, (row["lam1"], row["lam2"])
        row.update(cum_cost_seconds=cum, best_so_far=best, best_lam1=best_lam[0], best_lam2=best_lam[1])
    return run


# ----------------------------------------------------------------------------------------------------------------
# the two settings


def search_replay(
    table: pd.DataFrame,
    strategies: Sequence[str] | Mapping[str, Mapping[str, Any]],
    *,
    budget: int,
    seeds: Sequence[int],
    n_lams: int,
    maximize: bool,
    target: str = REPLAY_TARGET,
) -> pd.DataFrame:
    """Search over baselines by replay: one row per trained cell in ``table`` (columns ``lam1``, [``lam2``],
    ``objective``, ``cost_seconds``); each suggested λ takes the nearest cell's objective and training cost."""
    lam_cols = ["lam1", "lam2"][:n_lams] if n_lams in (1, 2) else []
    missing = [c for c in [*lam_cols, "objective", "cost_seconds"] if c not in table.columns]
    if missing or n_lams not in (1, 2):
        raise ConfigError(
            f"search_replay table: expected columns {[*lam_cols, 'objective', 'cost_seconds']} for n_lams={n_lams}, "
            f"missing {missing}"
        )
    if table.empty:
        raise ConfigError("search_replay table: no trained cells to replay")
    cells = table[lam_cols].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(cells)) or cells.min() < 0.0 or cells.max() > 1.0:
        raise ConfigError(f"search_replay table: λ values must lie in [0, 1], got {cells.tolist()}")
    objective = table["objective"].to_numpy(dtype=np.float64)
    cost = table["cost_seconds"].to_numpy(dtype=np.float64)

    def evaluate(lam: np.ndarray) -> tuple[float, float, np.ndarray]:
        i = int(np.argmin(((cells - lam[None, :]) ** 2).sum(axis=1)))
        return float(objective[i]), float(cost[i]), cells[i]

    return _run_searches(
        evaluate, strategies, budget=budget, seeds=seeds, n_lams=n_lams, maximize=maximize, target=target,
        replay=True,
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
) -> pd.DataFrame:
    """Search over a trained λ-conditioned model: ``objective_fn(λ (k,)) -> (objective, device seconds)``."""

    def evaluate(lam: np.ndarray) -> tuple[float, float, np.ndarray]:
        value, seconds = objective_fn(lam)
        return float(value), float(seconds), lam

    return _run_searches(
        evaluate, strategies, budget=budget, seeds=seeds, n_lams=n_lams, maximize=maximize, target=target,
        replay=False,
    )


def make_model_objective(
    model: Any,
    val_data: Any,
    metric: str,
    *,
    device: str = "cpu",
    precision: str = "fp32",
    batch_size: int = 32,
    seg_model: Any = None,
    n_classes: int | None = None,
    ssim_convention: str = "wang",
) -> Callable[[np.ndarray], tuple[float, float]]:
    """``objective_fn(λ) -> (mean of metric over the validation slices, device seconds)`` for :func:`search_model`.

    One pass: reconstruct every validation slice at λ (:func:`hyperrecon.evaluation.reconstruct`'s settings)
    and compute ``metric`` (a registered image metric, or ``"dice"`` with ``seg_model``). The timed span
    (:class:`hyperrecon.timing.DeviceTimer`) covers the forward passes and the metric, i.e. one trial's work.
    """
    import torch

    from .evaluation import _forward, _inference, _lam_row, _staged, batch_metrics, check_metric_names
    from .timing import DeviceTimer

    names = check_metric_names([metric], seg_model)
    dev = torch.device(device) if isinstance(device, str) else device
    staged = _staged(val_data, dev)
    n = len(val_data)

    def objective_fn(lam: np.ndarray) -> tuple[float, float]:
        timer = DeviceTimer(dev)
        total = torch.zeros((), dtype=torch.float64, device=dev)
        with timer, _inference([model, seg_model], dev, precision):
            row = _lam_row(model, lam, dev)
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)
                x_hat = _forward(model, staged.inputs[start:stop].to(dev), row)
                labels = None if staged.labels is None else staged.labels[start:stop].to(dev)
                vals = batch_metrics(
                    names, x_hat, staged.targets[start:stop].to(dev), staged.degraded[start:stop].to(dev),
                    labels=labels, seg_model=seg_model, n_classes=n_classes, ssim_convention=ssim_convention,
                )
                total += vals[metric].double().sum()
            value = float(total) / n  # synchronises inside the timed span
        return value, timer.device_seconds

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
    - ``total_cost_mean``: for replayed baselines the search cost itself (its trials ARE the trainings); for a
      model ``training_cost[target]`` (once) + the search cost (NaN when the target has no training cost);
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
                    "seed": seed, "best": float(last["best_so_far"]), "lam": (last["best_lam1"], last["best_lam2"]),
                    "n_trials": len(run), "cost": float(run["cost_seconds"].sum()),
                    "to_within": float(hit[0] + 1) if hit.size else math.nan,
                    "cost_within": float(run["cum_cost_seconds"].iloc[hit[0]]) if hit.size else math.nan,
                    "replay": bool(run["replay"].iloc[0]),
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
        train = 0.0 if replay else float(training_cost.get(target, math.nan))
        within = np.array([s["to_within"] for s in per_seed])
        out.append(
            {
                "target": target, "strategy": strategy, "n_seeds": len(per_seed),
                "n_trials": float(np.mean([s["n_trials"] for s in per_seed])),
                "best_mean": float(best.mean()), "best_std": _std(best),
                "grid_optimum": optimum, "regret_mean": float(regret.mean()), "regret_std": _std(regret),
                "abs_regret_mean": float(np.abs(regret).mean()),
                "chosen_seed": chosen["seed"], "chosen_lam1": chosen["lam"][0], "chosen_lam2": chosen["lam"][1],
                "test_metric": float(test_metric_fn(target, lam)) if test_metric_fn is not None and lam.size else math.nan,
                "search_cost_mean": search_cost, "total_cost_mean": train + search_cost,
                "eps": float(eps), "trials_to_within_mean": float(within.mean()),
                "frac_within": float(np.mean(~np.isnan(within))),
                "cost_to_within_mean": float(np.mean([s["cost_within"] for s in per_seed])),
                "replay": replay,
            }
        )
    return pd.DataFrame(out)


def _std(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if values.size > 1 else math.nan
