"""Every registered entry of every registry keeps its contract (hyperrecon.testing.contracts), built from its
smoke_params; the checks themselves fail on entries that break the contract."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hyperrecon.losses import LOSSES, LossTerm
from hyperrecon.models import MODELS
from hyperrecon.plugins import REGISTRIES, registry
from hyperrecon.testing import contracts
from hyperrecon.testing.contracts import ContractError

ENTRIES = contracts.entries()


def test_every_kind_has_a_check_and_entries() -> None:
    assert set(contracts.CHECKS) == set(REGISTRIES)
    kinds = {kind for kind, _ in ENTRIES}
    assert kinds == set(REGISTRIES), "every registry has at least one built-in entry"
    for kind in REGISTRIES:
        assert {n for k, n in ENTRIES if k == kind} == set(registry(kind).names())


@pytest.mark.parametrize(("kind", "name"), ENTRIES, ids=[f"{k}:{n}" for k, n in ENTRIES])
def test_contract(kind: str, name: str, tmp_path: Path) -> None:
    contracts.check(kind, name, tmp_path)


# ---------------------------------------------------------------------------------- the checks can fail


@pytest.fixture
def broken_loss():
    @LOSSES.register("negative-test-loss", description="returns negative values", smoke_params={})
    class NegativeLoss(LossTerm):
        def __call__(self, ctx):
            return -ctx.x_hat.flatten(1).mean(1).abs()

    yield "negative-test-loss"
    LOSSES.unregister("negative-test-loss")


def test_loss_check_rejects_negative_values(broken_loss: str) -> None:
    with pytest.raises(ContractError, match="loss 'negative-test-loss': values must be finite and >= 0"):
        contracts.check("losses", broken_loss)


def test_model_check_rejects_a_wrong_output_shape() -> None:
    @MODELS.register("half-test-model", description="halves the width", smoke_params={})
    class Half(torch.nn.Module):
        conditional = False

        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 1, 1)

        def forward(self, x, lam=None):
            return self.conv(x)[..., ::2]

        def weight_l1(self, lam, batch_size):
            return self.conv.weight.abs().sum().expand(batch_size)

    try:
        with pytest.raises(ContractError, match=r"model 'half-test-model': output \(3, 1, 8, 8\)"):
            contracts.check("models", "half-test-model")
    finally:
        MODELS.unregister("half-test-model")


def test_smoke_params_are_checked_at_registration() -> None:
    from hyperrecon.errors import ConfigError

    with pytest.raises(ConfigError, match="has no parameter 'widht'"):

        @MODELS.register("typo-test-model", smoke_params={"widht": 4})
        class Typo(torch.nn.Module):
            def __init__(self, width: int = 8) -> None:
                super().__init__()

    assert "typo-test-model" not in MODELS


def test_dataset_check_needs_a_folder() -> None:
    with pytest.raises(ValueError, match="needs a folder"):
        contracts.check("datasets", "knee-phantom")


def test_the_readme_plugin_example_keeps_the_contract() -> None:
    """The README's "Adding a loss" example registers a loss that passes its contract check."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Adding a loss") :]
    code = section[section.index("```python") + len("```python") : section.index("```", section.index("```python") + 9)]
    try:
        exec(compile(code, "README.md", "exec"), {})
        assert LOSSES.describe("l2_grad") == "squared image gradient, per sample"
        contracts.check("losses", "l2_grad")
    finally:
        LOSSES.unregister("l2_grad")
