"""Search strategies: every registered name builds an Optuna sampler that proposes λ in [0,1]^k."""

from __future__ import annotations

from hyperrecon.strategies import grid_axis

# The registry contract of every strategy: tests/test_contracts.py (hyperrecon.testing.contracts.check_strategy).


def test_grid_axis_respects_budget() -> None:
    assert grid_axis(1, 5) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert len(grid_axis(2, 16)) == 4 and len(grid_axis(2, 15)) == 3
    assert len(grid_axis(2, 1)) == 2
