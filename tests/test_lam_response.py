"""The hypernetwork must start λ-dependent (issue 15, item 2): the embedding's initialisation."""

from __future__ import annotations

import pytest
import torch

from hyperrecon.models import HyperUNet


def weight_gap(model: HyperUNet) -> float:
    """||W(λ=0) - W(λ=1)||² / ||mean||² over all generated kernels."""
    with torch.no_grad():
        w = [k for k, _ in model.weights_for(torch.tensor([[0.0], [1.0]]))]
    diff = sum(float((x[0] - x[1]).square().sum()) for x in w)
    mean = sum(float(((x[0] + x[1]) / 2).square().sum()) for x in w)
    return diff / mean


@pytest.mark.parametrize("size", ["S", "M", "L"])
def test_he_embedding_makes_generated_weights_depend_on_lambda(size: str) -> None:
    gaps_he, gaps_default = [], []
    for seed in range(3):
        torch.manual_seed(seed)
        gaps_he.append(weight_gap(HyperUNet(1, size=size, width=8)))
        torch.manual_seed(seed)
        gaps_default.append(weight_gap(HyperUNet(1, size=size, width=8, embed_init="default")))
    # PyTorch's defaults: the 4-layer MLP's biases swamp the coefficients, λ = 0 and 1 give nearly one weight set
    assert max(gaps_default) < 0.06
    assert min(gaps_he) > 0.03 and sum(gaps_he) > 4 * sum(gaps_default)


def test_he_embedding_is_he_scaled_with_zero_bias() -> None:
    torch.manual_seed(0)
    model = HyperUNet(1, size="L", width=8)
    linears = [m for m in model.embed if isinstance(m, torch.nn.Linear)]
    assert all(float(lin.bias.detach().abs().max()) == 0.0 for lin in linears)
    gain2 = 2.0 / (1 + 0.01**2)
    for lin in linears[1:-1]:  # the last layer is rescaled so that E|e|² = 1 over the λ grid
        ratio = float(lin.weight.detach().var()) / (gain2 / lin.in_features)
        assert 0.7 < ratio < 1.3, ratio
    with torch.no_grad():
        e = model.embedding(torch.linspace(0, 1, 11)[:, None])
    assert float(e.square().sum(1).mean()) == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(ValueError, match="embed_init"):
        HyperUNet(1, size="S", embed_init="xavier")
