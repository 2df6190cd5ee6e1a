"""Search strategies: every registered name builds an Optuna sampler that proposes λ in [0,1]^k."""

from __future__ import annotations

import optuna
import pytest

from hyperrecon.strategies import STRATEGIES, grid_axis


@pytest.mark.parametrize("name", STRATEGIES.names())
@pytest.mark.parametrize("n_lams", [1, 2])
def test_strategy_contract(name: str, n_lams: int) -> None:
    factory = STRATEGIES.get(name)
    sampler = factory(n_lams=n_lams, budget=6, seed=0, **getattr(factory, "smoke_params", {}))
    assert isinstance(sampler, optuna.samplers.BaseSampler)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=sampler, direction="maximize")
    # A smooth objective with its optimum at λ = 0.3 (each axis).
    study.optimize(lambda t: -sum((t.suggest_float(f"lam{i}", 0.0, 1.0) - 0.3) ** 2 for i in range(n_lams)), n_trials=6)
    values = [t.params[f"lam{i}"] for t in study.trials for i in range(n_lams)]
    assert all(0.0 <= v <= 1.0 for v in values)


def test_grid_axis_respects_budget() -> None:
    assert grid_axis(1, 5) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert len(grid_axis(2, 16)) == 4 and len(grid_axis(2, 15)) == 3
    assert len(grid_axis(2, 1)) == 2
