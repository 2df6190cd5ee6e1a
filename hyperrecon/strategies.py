"""Search strategies: test-time / tuning-time λ search, as Optuna samplers in a registry.

A strategy is a factory ``(n_lams, budget, seed, **params) -> optuna.samplers.BaseSampler``. The search itself
(which objective, over which model, with what cost) lives in :mod:`hyperrecon.search`. Any
``optuna.samplers.BaseSampler`` becomes a strategy by registering a factory in a plugin module::

    from hyperrecon.strategies import STRATEGIES

    @STRATEGIES.register("my-sampler", description="my lab's sampler", smoke_params={})
    def my_sampler(n_lams, budget, seed):
        return MySampler(seed=seed)

A strategy may name a pruner after a ``+`` (``"tpe+hyperband"``): a multi-fidelity search over the baselines, which
stops unpromising trials early (:data:`PRUNERS`, factories ``(steps, reduction_factor, budget, seed, **params) ->
optuna.pruners.BasePruner``). Any class of ``optuna.samplers`` / ``optuna.pruners`` also works by its class name
(``"CmaEsSampler"``, ``"random+ThresholdPruner"``), with its parameters from the study's ``search.strategy_params``
/ ``search.pruner_params``.

Words: a *strategy* searches λ for a trained model or a set of baselines; a *sampler* (:mod:`hyperrecon.samplers`)
draws λ during hypernetwork training. The two are never mixed up.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import ConfigError
from .registry import Registry

STRATEGIES: Registry = Registry("search strategy")


def grid_axis(n_lams: int, budget: int) -> list[float]:
    """Evenly spaced axis values whose product grid has at most ``budget`` points (at least 2 per axis)."""
    per_axis = max(2, int(math.floor(budget ** (1.0 / n_lams) + 1e-9)))
    return [float(v) for v in np.linspace(0.0, 1.0, per_axis)]


@STRATEGIES.register(
    "grid", description="evenly spaced grid over [0,1]^k, visited in random order (Optuna GridSampler)"
)
def grid(n_lams: int, budget: int, seed: int):
    import optuna

    axis = grid_axis(n_lams, budget)
    space = {f"lam{i}": axis for i in range(n_lams)}
    return optuna.samplers.GridSampler(space, seed=seed)


@STRATEGIES.register("random", description="independent uniform draws (Optuna RandomSampler)")
def random(n_lams: int, budget: int, seed: int):
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


@STRATEGIES.register(
    "tpe", description="tree-structured Parzen estimator (Optuna TPESampler)", smoke_params={"n_startup_trials": 2}
)
def tpe(n_lams: int, budget: int, seed: int, n_startup_trials: int = 5, multivariate: bool = True):
    import optuna

    return optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=min(n_startup_trials, budget), multivariate=multivariate
    )


@STRATEGIES.register(
    "gp", description="Gaussian-process Bayesian optimisation (Optuna GPSampler)", smoke_params={"n_startup_trials": 2}
)
def gp(n_lams: int, budget: int, seed: int, n_startup_trials: int = 5):
    import optuna

    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=min(n_startup_trials, budget))


@STRATEGIES.register("qmc", description="scrambled Sobol quasi-Monte Carlo points (Optuna QMCSampler)")
def qmc(n_lams: int, budget: int, seed: int, qmc_type: str = "sobol"):
    import warnings

    import optuna

    with warnings.catch_warnings():  # "experimental" since Optuna 3.0; stable in behaviour
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.QMCSampler(qmc_type=qmc_type, scramble=True, seed=seed, warn_independent_sampling=False)


@STRATEGIES.register(
    "nsga2",
    description="NSGA-II genetic algorithm, multi-objective (Optuna NSGAIISampler)",
    smoke_params={"population_size": 4},
)
def nsga2(n_lams: int, budget: int, seed: int, population_size: int | None = None):
    import optuna

    # Optuna's default population (50) exceeds the small budgets here: about a third of the budget, at least 4,
    # gives a few generations.
    size = population_size if population_size is not None else max(4, min(50, budget // 3))
    return optuna.samplers.NSGAIISampler(population_size=size, seed=seed)


# ----------------------------------------------------------------------------------------------------------------
# Pruners: early stopping for multi-fidelity search over baselines (hyperrecon.search.replay)

PRUNERS: Registry = Registry("pruner")
"""A pruner is a factory ``(steps, reduction_factor, budget, seed, **params) -> optuna.pruners.BasePruner``:
``steps`` are the fidelity steps (training steps at which a baseline's validation objective is known, ascending,
the last = full training), ``reduction_factor`` the study's η (``search.reduction_factor``)."""


@PRUNERS.register("none", description="no early stopping: every trial trains to the end (Optuna NopPruner)")
def no_pruner(steps, reduction_factor: int, budget: int, seed: int):
    import optuna

    return optuna.pruners.NopPruner()


@PRUNERS.register(
    "median",
    description="stop a trial whose value is worse than the median of earlier trials "
    "at the same step (Optuna MedianPruner)",
)
def median(steps, reduction_factor: int, budget: int, seed: int, n_startup_trials: int = 3, n_warmup_steps: int = 0):
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=min(n_startup_trials, budget), n_warmup_steps=n_warmup_steps)


@PRUNERS.register(
    "successive-halving",
    description="asynchronous successive halving: keep the top 1/η of each rung (Optuna SuccessiveHalvingPruner)",
)
def successive_halving(
    steps, reduction_factor: int, budget: int, seed: int, min_early_stopping_rate: int = 0, bootstrap_count: int = 0
):
    import optuna

    # Rungs at min_resource · η^r: the fidelity steps are that geometric series (hyperrecon.search.fidelity_steps).
    return optuna.pruners.SuccessiveHalvingPruner(
        min_resource=int(steps[0]),
        reduction_factor=reduction_factor,
        min_early_stopping_rate=min_early_stopping_rate,
        bootstrap_count=bootstrap_count,
    )


@PRUNERS.register(
    "hyperband",
    description="Hyperband: successive halving over several brackets of starting budgets (Optuna HyperbandPruner)",
)
def hyperband(steps, reduction_factor: int, budget: int, seed: int, bootstrap_count: int = 0):
    import optuna

    return optuna.pruners.HyperbandPruner(
        min_resource=int(steps[0]),
        max_resource=int(steps[-1]),
        reduction_factor=reduction_factor,
        bootstrap_count=bootstrap_count,
    )


def split_strategy(name: str) -> tuple[str, str]:
    """``"tpe+hyperband"`` -> ``("tpe", "hyperband")``; a plain sampler name has pruner ``"none"``."""
    sampler, _, pruner = str(name).partition("+")
    return sampler, (pruner or "none")


def _optuna_class(module: Any, name: str, base: type) -> type | None:
    """``optuna.samplers.CmaEsSampler`` / ``CmaEsSampler`` -> the class in ``module`` when it subclasses ``base``."""
    short = name.rsplit(".", 1)[-1]
    cls = getattr(module, short, None)
    return cls if isinstance(cls, type) and issubclass(cls, base) and name.startswith(("optuna.", short)) else None


def build_strategy_sampler(
    name: str, params: dict[str, Any] | None, *, n_lams: int, budget: int, seed: int, where: str = "search strategies"
):
    """A sampler from the ``STRATEGIES`` registry, or any class of ``optuna.samplers`` by its name (e.g.
    ``"CmaEsSampler"`` or ``"optuna.samplers.CmaEsSampler"``, given ``seed`` when its constructor takes one)."""
    import optuna

    if name not in STRATEGIES:
        cls = _optuna_class(optuna.samplers, name, optuna.samplers.BaseSampler)
        if cls is not None:
            return _build_class(cls, dict(params or {}), seed, where)
    return STRATEGIES.build(name, params, where=where, n_lams=n_lams, budget=budget, seed=seed)


def build_pruner(
    name: str,
    params: dict[str, Any] | None,
    *,
    steps,
    reduction_factor: int,
    budget: int,
    seed: int,
    where: str = "search pruners",
):
    """A pruner from the ``PRUNERS`` registry, or any class of ``optuna.pruners`` by its name (e.g.
    ``"ThresholdPruner"`` with ``{lower = 20.0}``)."""
    import optuna

    if name not in PRUNERS:
        cls = _optuna_class(optuna.pruners, name, optuna.pruners.BasePruner)
        if cls is not None:
            return _build_class(cls, dict(params or {}), None, where)
    return PRUNERS.build(
        name, params, where=where, steps=list(steps), reduction_factor=int(reduction_factor), budget=budget, seed=seed
    )


#: arguments hrbench passes to every strategy / pruner factory itself (a study's params may not set them)
STRATEGY_ARGS = ("n_lams", "budget", "seed")
PRUNER_ARGS = ("steps", "reduction_factor", "budget", "seed")


def check_strategy(
    name: str,
    params: dict[str, Any] | None,
    pruner_params: dict[str, Any] | None = None,
    *,
    where: str = "search strategies",
    params_where: str | None = None,
    pruner_params_where: str | None = None,
) -> None:
    """Fail early (``UnknownNameError``/``ConfigError``) on an unknown sampler or pruner or a wrong parameter.
    ``where`` prefixes name errors, ``params_where``/``pruner_params_where`` (default ``where``) parameter errors."""
    import optuna

    sampler, pruner = split_strategy(name)
    if sampler not in STRATEGIES and _optuna_class(optuna.samplers, sampler, optuna.samplers.BaseSampler) is None:
        STRATEGIES.get(sampler, where=where)
    elif sampler in STRATEGIES:
        STRATEGIES.check_params(sampler, dict(params or {}), where=params_where or where, supplied=STRATEGY_ARGS)
    if pruner not in PRUNERS and _optuna_class(optuna.pruners, pruner, optuna.pruners.BasePruner) is None:
        PRUNERS.get(pruner, where=where)
    elif pruner in PRUNERS:
        PRUNERS.check_params(
            pruner, dict(pruner_params or {}), where=pruner_params_where or where, supplied=PRUNER_ARGS
        )


def _build_class(cls: type, params: dict[str, Any], seed: int | None, where: str):
    import inspect

    try:
        if seed is not None and "seed" in inspect.signature(cls).parameters and "seed" not in params:
            params["seed"] = seed
        return cls(**params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: cannot build {cls.__module__}.{cls.__name__} with {params}: {exc}") from exc
