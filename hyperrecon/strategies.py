"""Search strategies: test-time / tuning-time λ search, as Optuna samplers in a registry.

A strategy is a factory ``(n_lams, budget, seed, **params) -> optuna.samplers.BaseSampler``. The search itself
(which objective, over which model, with what cost) lives in :mod:`hyperrecon.search`. Any
``optuna.samplers.BaseSampler`` becomes a strategy by registering a factory in a plugin module::

    from hyperrecon.strategies import STRATEGIES

    @STRATEGIES.register("my-sampler", description="my lab's sampler")
    def my_sampler(n_lams, budget, seed):
        return MySampler(seed=seed)

Words: a *strategy* searches λ for a trained model or a set of baselines; a *sampler* (:mod:`hyperrecon.samplers`)
draws λ during hypernetwork training. The two are never mixed up.
"""

from __future__ import annotations

import math

import numpy as np

from .registry import Registry

STRATEGIES: Registry = Registry("search strategy")


def grid_axis(n_lams: int, budget: int) -> list[float]:
    """Evenly spaced axis values whose product grid has at most ``budget`` points (at least 2 per axis)."""
    per_axis = max(2, int(math.floor(budget ** (1.0 / n_lams) + 1e-9)))
    return [float(v) for v in np.linspace(0.0, 1.0, per_axis)]


@STRATEGIES.register("grid", description="evenly spaced grid over [0,1]^k, visited in random order (Optuna GridSampler)")
def grid(n_lams: int, budget: int, seed: int):
    import optuna

    axis = grid_axis(n_lams, budget)
    space = {f"lam{i}": axis for i in range(n_lams)}
    return optuna.samplers.GridSampler(space, seed=seed)


grid.smoke_params = {}


@STRATEGIES.register("random", description="independent uniform draws (Optuna RandomSampler)")
def random(n_lams: int, budget: int, seed: int):
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


random.smoke_params = {}


@STRATEGIES.register("tpe", description="tree-structured Parzen estimator (Optuna TPESampler)")
def tpe(n_lams: int, budget: int, seed: int, n_startup_trials: int = 5, multivariate: bool = True):
    import optuna

    return optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=min(n_startup_trials, budget), multivariate=multivariate
    )


tpe.smoke_params = {"n_startup_trials": 2}


@STRATEGIES.register("gp", description="Gaussian-process Bayesian optimisation (Optuna GPSampler)")
def gp(n_lams: int, budget: int, seed: int, n_startup_trials: int = 5):
    import optuna

    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=min(n_startup_trials, budget))


gp.smoke_params = {"n_startup_trials": 2}


@STRATEGIES.register("qmc", description="scrambled Sobol quasi-Monte Carlo points (Optuna QMCSampler)")
def qmc(n_lams: int, budget: int, seed: int, qmc_type: str = "sobol"):
    import warnings

    import optuna

    with warnings.catch_warnings():  # "experimental" since Optuna 3.0; stable in behaviour
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.QMCSampler(qmc_type=qmc_type, scramble=True, seed=seed, warn_independent_sampling=False)


qmc.smoke_params = {}
