"""The hypernetwork must start λ-dependent (issue 15, item 2): the embedding's initialisation."""

from __future__ import annotations

import pytest
import torch

from hyperrecon.models import HyperUNet, UNet


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


# ----------------------------------------------------------------- normalisation options (HyperUNet(norm=...))
def _plain_copy(model: HyperUNet, lam: torch.Tensor, norm_layer) -> torch.nn.Module:
    """A plain U-Net with the weights generated for one λ and ``norm_layer(j)`` in place of BatchNorm j."""
    plain = UNet(model.skeleton.in_channels, model.skeleton.out_channels, model.skeleton.width).double()
    with torch.no_grad():
        for conv, (w, b) in zip(plain.convs, model.weights_for(lam), strict=True):
            conv.weight.copy_(w[0])
            conv.bias.copy_(b[0])
    plain.skeleton.norms = torch.nn.ModuleList(norm_layer(j) for j in range(len(model.skeleton.norms)))
    return plain


def test_instance_norm_equals_torch_instance_norm_per_sample() -> None:
    torch.manual_seed(0)
    model = HyperUNet(1, hnet_width=3, width=4, norm="instance").double()
    with torch.no_grad():
        for n in model.skeleton.norms:  # non-trivial affine parameters
            n.weight.uniform_(0.5, 1.5)
            n.bias.uniform_(-0.2, 0.2)
    x = torch.randn(4, 2, 16, 16, dtype=torch.float64)
    lam = torch.tensor([[0.1], [0.9], [0.1], [0.5]], dtype=torch.float64)

    def inst(j: int) -> torch.nn.Module:
        ref = torch.nn.InstanceNorm2d(4, affine=True, eps=model.skeleton.norms[j].eps).double()
        ref.load_state_dict({k: model.skeleton.norms[j].state_dict()[k] for k in ("weight", "bias")})
        return ref

    for mode in ("train", "eval"):  # no running statistics: the same function in both modes
        getattr(model, mode)()
        out = model(x, lam)
        for s in range(4):
            plain = _plain_copy(model, lam[s : s + 1], inst).eval()
            torch.testing.assert_close(out[s : s + 1], plain(x[s : s + 1]), msg=f"{mode} sample {s}")


def test_lam_affine_starts_as_the_batch_model_and_modulates_after_batchnorm() -> None:
    x = torch.randn(6, 2, 16, 16, dtype=torch.float64)
    lam = torch.tensor([[0.2], [0.7], [0.2], [0.5], [0.7], [0.2]], dtype=torch.float64)
    torch.manual_seed(0)
    batch = HyperUNet(1, hnet_width=3, width=4).double()
    torch.manual_seed(0)
    affine = HyperUNet(1, hnet_width=3, width=4, norm="lam-affine").double()
    torch.testing.assert_close(affine(x, lam), batch(x, lam))  # zero heads: exactly the paper's model
    with torch.no_grad():
        affine.norm_heads.weight.normal_(0, 0.3)
    affine.eval()  # BN on running statistics, then (1 + γ(λ)) · BN(h) + β(λ) per channel
    gb = affine.norm_heads(affine.embedding(lam[:1])).view(14, 2, 4)

    class Mod(torch.nn.Module):
        def __init__(self, j: int) -> None:
            super().__init__()
            self.bn, self.j = affine.skeleton.norms[j], j

        def forward(self, h: torch.Tensor) -> torch.Tensor:
            return self.bn(h) * (1 + gb[self.j, 0])[:, None, None] + gb[self.j, 1][:, None, None]

    plain = _plain_copy(affine, lam[:1], Mod).eval()
    torch.testing.assert_close(affine(x, lam)[:1], plain(x[:1]))
    with pytest.raises(ValueError, match="norm"):
        HyperUNet(1, size="S", norm="layer")
    with pytest.raises(ValueError, match="BatchNorm only"):
        affine.to_unet(lam[0])


@pytest.mark.parametrize("norm", ["instance", "lam-affine"])
@pytest.mark.parametrize("path", ["grouped", "factorised", "per-sample-grouped-conv"])
def test_norm_options_take_the_same_function_on_every_path(norm: str, path: str) -> None:
    torch.manual_seed(0)
    model = HyperUNet(1, hnet_width=3, width=4, norm=norm).double()
    if norm == "lam-affine":
        with torch.no_grad():
            model.norm_heads.weight.normal_(0, 0.3)
    x = torch.randn(6, 2, 16, 16, dtype=torch.float64)
    lam = torch.tensor([[0.2], [0.7], [0.2], [0.5], [0.7], [0.2]], dtype=torch.float64)
    torch.testing.assert_close(model(x, lam, path=path), model(x, lam, path="reference"))


def test_hyper_norm_config_reaches_the_model_and_bad_values_name_the_key() -> None:
    from hyperrecon.config import load_study
    from hyperrecon.errors import ConfigError
    from hyperrecon.resolve import build_recon_model

    assert build_recon_model("hyperunet", load_study("sl-knee-cs", "smoke"), "S").norm == "batch"
    study = load_study("sl-knee-cs", "smoke", overrides=['hyper.model_params={ norm = "instance" }'])
    assert build_recon_model("hyperunet", study, "S").norm == "instance"
    bad = load_study("sl-knee-cs", "smoke", overrides=['hyper.model_params={ norm = "layer" }'])
    with pytest.raises(ConfigError, match="norm"):
        build_recon_model("hyperunet", bad, "S")


def test_bn_stats_benchmark_evaluates_on_batch_statistics_and_leaves_the_running_ones() -> None:
    """benchmark/bn_stats.py: batch-statistics PSNR is the model in train mode (no dropout, BatchNorm on the batch),
    running-statistics PSNR the model in eval mode, and neither touches the running statistics or the mode."""
    import sys
    from pathlib import Path
    from types import SimpleNamespace

    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmark"))
    from bn_stats import mean_psnr

    from hyperrecon.metrics import psnr

    torch.manual_seed(0)
    model = HyperUNet(1, size="S", width=8)
    model.train()
    x = torch.rand(6, 2, 16, 16)
    with torch.no_grad():  # running statistics that differ from a test batch's own
        for _ in range(3):
            model(torch.rand(6, 2, 16, 16) * 3, torch.rand(6, 1))
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = SimpleNamespace(inputs=x, targets=torch.rand(6, 1, 16, 16))
    lam = np.array([0.3])
    batch = mean_psnr(model, data, lam, batch_stats=True)
    running = mean_psnr(model, data, lam, batch_stats=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training and not any(m.training for m in model.modules())
    row = torch.full((6, 1), 0.3)
    with torch.no_grad():  # eval first: the train-mode forward updates the running statistics
        want_running = float(psnr(model(x, row), data.targets).mean())
        model.train()
        want_batch = float(psnr(model(x, row), data.targets).mean())
    assert batch == pytest.approx(want_batch, rel=1e-6) and running == pytest.approx(want_running, rel=1e-6)
    assert abs(batch - running) > 1e-3  # the two modes differ on these statistics
