"""Networks: parameter counts, topology against an independent functional U-Net, every HyperUNet fast path against
the per-sample reference (forward and gradients, float64), weight_l1 by hand, precision/memory formats, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hyperrecon.coefficients import coefficients
from hyperrecon.errors import ConfigError, DataError
from hyperrecon.models import MODELS, FiLMUNet, HyperUNet, InputShapeError, UNet, count_parameters
from hyperrecon.models.hyper import PATHS, _TallLinear

FAST_PATHS = [p for p in PATHS if p not in ("auto", "reference")]


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


def mixed_lam(n_lams: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Six samples, three distinct λ in groups of unequal size (3, 2, 1), interleaved."""
    rows = torch.tensor([[0.2, 0.7], [0.9, 0.1], [0.5, 0.5]], dtype=dtype)[:, :n_lams]
    return rows[torch.tensor([0, 1, 0, 2, 1, 0])]


# ----------------------------------------------------------------- parameter counts
def test_unet_parameter_count_matches_paper():
    assert count_parameters(UNet()) == 149_409
    convs = sum(p.numel() for c in UNet().convs for p in c.parameters())
    assert convs == 148_513 and len(UNet().convs) == 15


@pytest.mark.parametrize(("size", "d", "expected"), [("S", 4, 743_533), ("M", 32, 4_905_089), ("L", 128, 19_208_993)])
def test_hyperunet_parameter_counts_match_paper(size, d, expected):
    assert count_parameters(HyperUNet(1, size=size)) == expected
    # (d+1) x main-net conv parameters + BN + the 4-layer MLP with 2 coefficient inputs
    assert expected == (d + 1) * 148_513 + 896 + (2 * d + d) + 3 * (d * d + d)


def test_hyperunet_third_coefficient_adds_d_parameters():
    assert count_parameters(HyperUNet(2, size="S")) == 743_533 + 4


def test_film_parameter_count():
    hidden, w = 64, 32
    mlp = (2 * hidden + hidden) + (hidden * hidden + hidden) + (hidden * 2 * 14 * w + 2 * 14 * w)
    assert count_parameters(FiLMUNet(1)) == 149_409 + mlp


# ----------------------------------------------------------------- U-Net topology vs an independent functional version
def functional_unet(x: torch.Tensor, net: UNet) -> torch.Tensor:
    """The documented topology written out by hand (train-mode BN on batch statistics)."""
    convs, norms = list(net.convs), list(net.skeleton.norms)

    def block(h, i):
        for j in (2 * i, 2 * i + 1):
            h = F.conv2d(h, convs[j].weight, convs[j].bias, padding=1)
            h = F.batch_norm(h, None, None, norms[j].weight, norms[j].bias, training=True, eps=norms[j].eps)
            h = torch.clamp(h, min=0)
        return h

    e0 = block(x, 0)
    e1 = block(F.max_pool2d(e0, 2), 1)
    e2 = block(F.max_pool2d(e1, 2), 2)
    b = block(F.max_pool2d(e2, 2), 3)
    up = lambda t: F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=True)  # noqa: E731
    d2 = block(torch.cat([up(b), e2], 1), 4)
    d1 = block(torch.cat([up(d2), e1], 1), 5)
    d0 = block(torch.cat([up(d1), e0], 1), 6)
    return F.conv2d(d0, convs[14].weight, convs[14].bias)


def test_unet_matches_hand_written_topology(gen):
    net = UNet(width=4).double()
    x = torch.randn(3, 2, 16, 24, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(net(x), functional_unet(x, net))


def test_unet_segmentation_output_and_residual(gen):
    x = torch.randn(2, 2, 8, 16, generator=gen)
    assert UNet(out_channels=5, width=4)(x).shape == (2, 5, 8, 16)
    torch.manual_seed(0)
    plain = UNet(width=4)
    res = UNet(width=4, residual=True)
    res.load_state_dict(plain.state_dict())
    mag = torch.sqrt(x[:, :1] ** 2 + x[:, 1:] ** 2)
    torch.testing.assert_close(res(x) - plain(x), mag, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="residual"):
        UNet(out_channels=3, residual=True)


# ----------------------------------------------------------------- HyperUNet paths vs reference
def _grads(model, x, lam, path, weight):
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    out = model(x, lam, path=path)
    (out * weight).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.detach(), x.grad.clone(), grads


@pytest.mark.parametrize("n_lams", [1, 2])
@pytest.mark.parametrize("path", FAST_PATHS)
def test_fast_paths_equal_reference_forward_and_gradients(path, n_lams, gen):
    torch.manual_seed(0)
    model = HyperUNet(n_lams, hnet_width=3, width=4).double()
    x = torch.randn(6, 2, 16, 24, generator=gen, dtype=torch.float64)
    lam = mixed_lam(n_lams)
    weight = torch.randn(6, 1, 16, 24, generator=gen, dtype=torch.float64)
    ref_out, ref_dx, ref_g = _grads(model, x, lam, "reference", weight)
    out, dx, g = _grads(model, x, lam, path, weight)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(dx, ref_dx)
    assert g.keys() == ref_g.keys() and len(g) == len(list(model.parameters()))
    for name in ref_g:
        torch.testing.assert_close(g[name], ref_g[name], msg=name)


@pytest.mark.parametrize("path", FAST_PATHS)
def test_fast_paths_float32_close_to_reference(path, gen):
    torch.manual_seed(1)
    model = HyperUNet(1, hnet_width=4, width=4)
    x = torch.randn(6, 2, 8, 8, generator=gen)
    lam = mixed_lam(1, torch.float32)
    torch.testing.assert_close(model(x, lam, path=path), model(x, lam, path="reference"), atol=1e-4, rtol=1e-4)


def test_lambda_gradient_agrees_across_paths(gen):
    """∂L/∂λ summed over samples sharing a λ leaf is the same on every path."""
    torch.manual_seed(2)
    model = HyperUNet(1, hnet_width=3, width=4).double()
    x = torch.randn(6, 2, 8, 8, generator=gen, dtype=torch.float64)
    grads = {}
    for path in PATHS[1:]:
        leaf = torch.tensor([[0.3], [0.8]], dtype=torch.float64, requires_grad=True)
        model(x, leaf[torch.tensor([0, 1, 1, 0, 0, 1])], path=path).square().sum().backward()
        grads[path] = leaf.grad
    for path, g in grads.items():
        torch.testing.assert_close(g, grads["reference"], msg=path)


def test_per_sample_lambda_changes_output_and_samples_are_independent_in_eval(gen):
    torch.manual_seed(3)
    model = HyperUNet(1, hnet_width=4, width=4).double().eval()
    x1 = torch.randn(1, 2, 8, 8, generator=gen, dtype=torch.float64)
    x = x1.expand(4, -1, -1, -1)
    lam = torch.tensor([[0.0], [0.5], [1.0], [0.5]], dtype=torch.float64)
    out = model(x, lam)
    assert (out[0] - out[1]).abs().max() > 1e-6 and (out[1] - out[2]).abs().max() > 1e-6
    torch.testing.assert_close(out[1], out[3])  # same image, same λ
    for s in range(4):  # eval mode: sample s in a mixed batch == sample s alone
        torch.testing.assert_close(out[s : s + 1], model(x1, lam[s : s + 1]))


def test_auto_path_rule():
    small = HyperUNet(1, hnet_width=4, width=4)
    big = HyperUNet(1, hnet_width=32, width=4)
    one = torch.full((32, 1), 0.3)
    few = torch.rand(4, 1).repeat_interleave(8, 0)
    half = torch.linspace(0, 1, 16)[:, None].repeat(2, 1)
    every = torch.linspace(0, 1, 32)[:, None]
    for model in (small, big):
        assert model.select_path(one) == model.select_path(few) == model.select_path(half) == "grouped"
        assert model.select_path(every) == "per-sample-grouped-conv"
        assert model.select_path(every[:8]) == "grouped"  # small batches: dense convs per sample
    assert HyperUNet(1, hnet_width=4, width=4, path="reference").select_path(one) == "reference"


def test_to_unet_equals_hypernetwork_in_eval(gen):
    torch.manual_seed(4)
    model = HyperUNet(2, hnet_width=4, width=4).eval()
    x = torch.randn(3, 2, 8, 16, generator=gen)
    lam = torch.tensor([0.25, 0.6])
    torch.testing.assert_close(model.to_unet(lam).eval()(x), model(x, lam.expand(3, -1)), atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------- weight_l1
def test_hyper_weight_l1_equals_hand_computation_and_is_differentiable():
    torch.manual_seed(5)
    model = HyperUNet(1, hnet_width=3, width=4).double()
    lam = mixed_lam(1)
    l1 = model.weight_l1(lam, 6)
    assert l1.shape == (6,)
    for s in range(6):
        e = model.embed(coefficients(lam[s : s + 1]))[0]
        expected = sum(
            (kh.weight @ e + kh.bias).abs().sum() + (bh.weight @ e + bh.bias).abs().sum()
            for kh, bh in zip(model.kernel_heads, model.bias_heads, strict=True)
        )
        torch.testing.assert_close(l1[s], expected)
    l1.sum().backward()
    assert model.kernel_heads[0].weight.grad.abs().sum() > 0 and model.embed[0].weight.grad.abs().sum() > 0


def _count_head_calls(model: HyperUNet) -> list[int]:
    calls = [0]
    model.kernel_heads[0].register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_weight_l1_after_forward_reuses_generated_weights_with_identical_values_and_gradients(gen):
    """The AO step runs forward then weight_l1 on the same λ: one weight generation, the same loss and gradients."""
    x = torch.randn(6, 2, 16, 16, generator=gen, dtype=torch.float64)
    lam = mixed_lam(2)
    grads, losses = [], []
    for reuse in (True, False):
        torch.manual_seed(3)
        model = HyperUNet(2, hnet_width=3, width=4).double().train()
        model.reuse_weights_for_l1 = reuse
        calls = _count_head_calls(model)
        loss = model(x, lam, path="grouped").square().mean() + 1e-3 * model.weight_l1(lam, 6).sum()
        loss.backward()
        assert calls[0] == (1 if reuse else 2)
        losses.append(loss.detach())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=0)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-12, atol=1e-15)


def test_weight_l1_regenerates_for_another_or_modified_lambda(gen):
    torch.manual_seed(4)
    model = HyperUNet(1, hnet_width=3, width=4).double().train()
    x = torch.randn(6, 2, 16, 16, generator=gen, dtype=torch.float64)
    lam = mixed_lam(1)
    calls = _count_head_calls(model)
    model(x, lam, path="grouped")
    other = torch.full_like(lam, 0.3)
    fresh = HyperUNet.weight_l1(model, other.clone(), 6)  # a different tensor: its own weights
    assert calls[0] == 2
    torch.testing.assert_close(model.weight_l1(other, 6), fresh)  # the stored weights were handed out once only
    model(x, lam, path="grouped")
    lam.fill_(0.3)  # modified in place after the forward: the stored weights no longer belong to it
    torch.testing.assert_close(model.weight_l1(lam, 6), fresh)
    with torch.no_grad():  # inference never stores or reuses
        model(x, lam, path="grouped")
        before = calls[0]
        model.weight_l1(lam, 6)
        assert calls[0] == before + 1


@pytest.mark.parametrize("cls", [UNet, FiLMUNet])
def test_shared_weight_l1_is_sum_of_conv_parameters(cls):
    model = cls(width=4)
    expected = sum(c.weight.abs().sum() + c.bias.abs().sum() for c in model.convs)
    l1 = model.weight_l1(torch.rand(5, 1), 5)
    assert l1.shape == (5,)
    torch.testing.assert_close(l1, expected.expand(5))
    assert model.weight_l1(None, 3).shape == (3,)


# ----------------------------------------------------------------- FiLM
def test_film_starts_as_plain_unet_and_learns_lambda_dependence(gen):
    torch.manual_seed(6)
    film = FiLMUNet(1, width=4, hidden=8)
    plain = UNet(width=4)
    plain.convs.load_state_dict(film.convs.state_dict())
    x = torch.randn(2, 2, 8, 8, generator=gen)
    lam = torch.tensor([[0.1], [0.9]])
    torch.testing.assert_close(film(x, lam), plain(x), atol=1e-6, rtol=1e-6)
    torch.nn.init.normal_(film.film[-1].weight, std=0.5)
    xx = x[:1].expand(2, -1, -1, -1)
    out = film.eval()(xx, lam)
    assert (out[0] - out[1]).abs().max() > 1e-4


# ----------------------------------------------------------------- precision and memory format
@pytest.mark.parametrize("name", ["unet", "hyperunet", "film-unet"])
def test_bf16_autocast_and_channels_last(name, gen):
    torch.manual_seed(7)
    model = MODELS.build(name, {"width": 8})
    x = torch.randn(4, 2, 16, 16, generator=gen)
    lam = torch.tensor([[0.1], [0.1], [0.7], [0.4]])
    ref = model(x, lam)
    model_cl = model.to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(model_cl(x_cl, lam), ref, atol=1e-4, rtol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model_cl(x_cl, lam)
    assert out.shape == ref.shape and torch.isfinite(out).all()
    rel = (out.float() - ref).norm() / ref.norm()
    assert rel < 0.05, f"bf16 relative error {rel:.3g}"
    out.float().square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("path", FAST_PATHS)
def test_hyper_paths_run_under_bf16(path, gen):
    model = HyperUNet(1, hnet_width=4, width=8).to(memory_format=torch.channels_last)
    x = torch.randn(6, 2, 16, 16, generator=gen).contiguous(memory_format=torch.channels_last)
    lam = mixed_lam(1, torch.float32)
    ref = model(x, lam, path="reference")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, lam, path=path)
    assert (out.float() - ref).norm() / ref.norm() < 0.05


def test_kaiming_init_gives_he_scaled_kernels():
    torch.manual_seed(8)
    model = HyperUNet(1, hnet_width=32, width=32, init="kaiming")
    lam = torch.linspace(0, 1, 5)[:, None]
    for (w, _), (cin, _, k) in zip(model.weights_for(lam), model.skeleton.specs, strict=True):
        ratio = w.var().item() / (2.0 / (cin * k * k))
        assert 0.5 < ratio < 2.0, ratio
    # PyTorch's Linear defaults give Var(W) = (1 + |e|^2) / (3 d): far above He scale for small d
    default = HyperUNet(1, hnet_width=4, width=32, init="default")
    w = default.weights_for(lam)[1][0]
    assert w.var().item() > 4 * 2.0 / (32 * 9)


def test_auto_init_follows_measurement():
    torch.manual_seed(9)
    # PyTorch-default embedding (the MELBA code): E|e|^2 < 1
    assert HyperUNet(1, size="S", embed_init="default").init_used == "kaiming"  # defaults ~13x He: rescale
    assert HyperUNet(1, size="M", embed_init="default").init_used == "default"  # ~1.7x He: keep PyTorch defaults
    assert HyperUNet(1, size="S", init="default").init_used == "default"
    # He embedding rescaled to E|e|^2 = 1: PyTorch-default heads give Var(W) = 2 / (3d): 24x He for S, 3x for
    # M (above the 2x-He switch: 2/96 = 0.021 > 2 * 2/288 = 0.014), 0.75x for L
    for size, expected in (("S", "kaiming"), ("M", "kaiming"), ("L", "default")):
        model = HyperUNet(1, size=size)
        assert model._embedding_mean_square() == pytest.approx(1.0, rel=1e-5)
        assert model.init_used == expected


# ----------------------------------------------------------------- registry contract and errors
# The registry contract of every model: tests/test_contracts.py (hyperrecon.testing.contracts.check_model).
@pytest.mark.parametrize("name", MODELS.names())
def test_count_parameters(name):
    model = MODELS.build(name, MODELS.smoke_params(name))
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", MODELS.names())
def test_invalid_image_shapes_raise(name):
    model = MODELS.build(name, MODELS.smoke_params(name))
    lam = torch.rand(2, 1)
    for shape in [(2, 2, 12, 16), (2, 2, 16, 20), (2, 3, 16, 16), (2, 16, 16)]:
        with pytest.raises(InputShapeError, match=r"H and W|expected shape") as info:
            model(torch.randn(*shape), lam)
        assert isinstance(info.value, ValueError) and isinstance(info.value, DataError)
        assert str(tuple(shape)) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["hyperunet", "film-unet"])
def test_invalid_lambda_raises(name):
    model = MODELS.build(name, MODELS.smoke_params(name))
    x = torch.randn(2, 2, 8, 8)
    for lam, match in [
        (None, "conditioned"),
        (torch.rand(3, 1), "shape"),
        (torch.rand(2, 2), "shape"),
        (torch.tensor([[0.5], [1.5]]), r"\[0, 1\]"),
        (torch.tensor([[0.5], [math.nan]]), r"\[0, 1\]"),
    ]:
        with pytest.raises(InputShapeError, match=match):
            model(x, lam)


def test_bad_constructor_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="size must be one of S, M, L"):
        MODELS.build("hyperunet", {"size": "XL"})
    with pytest.raises(ConfigError, match="path must be one of"):
        MODELS.build("hyperunet", {"path": "fast"})
    with pytest.raises(ConfigError, match="width >= 1"):
        MODELS.build("unet", {"width": 0})
    with pytest.raises(ConfigError, match="n_lams must be 1 or 2"):
        MODELS.build("film-unet", {"n_lams": 3})
    with pytest.raises(ConfigError, match="did you mean 'width'"):
        MODELS.build("unet", {"widht": 8})


def test_film_inference_fold_equals_bn_then_modulation(gen):
    torch.manual_seed(11)
    film = FiLMUNet(2, width=4, hidden=8)
    torch.nn.init.normal_(film.film[-1].weight, std=0.3)
    for n in film.skeleton.norms:  # non-trivial running statistics and affine parameters
        n.running_mean.uniform_(-0.5, 0.5)
        n.running_var.uniform_(0.5, 2.0)
        torch.nn.init.normal_(n.weight, 1.0, 0.2)
        torch.nn.init.normal_(n.bias, 0.0, 0.2)
    film.eval()
    x = torch.randn(3, 2, 8, 8, generator=gen)
    lam = torch.rand(3, 2, generator=gen)
    scale, shift = film.modulation(lam)
    unfolded = film.skeleton.run(
        x,
        lambda i, h: film.convs[i](h),
        lambda j, h: h * scale[:, j, :, None, None] + shift[:, j, :, None, None],
    )
    torch.testing.assert_close(film(x, lam), unfolded, atol=1e-5, rtol=1e-5)


def test_tall_linear_matches_linear_and_its_gradients(gen):
    e = torch.randn(4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(30, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(30, generator=gen, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(_TallLinear.apply(e, w, b), F.linear(e, w, b))
    assert torch.autograd.gradcheck(_TallLinear.apply, (e, w, b))


def test_inference_under_autocast_tracks_parameter_updates(gen):
    torch.manual_seed(12)
    model = HyperUNet(1, hnet_width=4, width=8).eval()
    x = torch.randn(2, 2, 8, 8, generator=gen)
    lam = torch.full((2, 1), 0.4)
    with torch.no_grad():
        ref = model(x, lam)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            first = model(x, lam).float()
            again = model(x, lam).float()  # cached cast of the head weights
        torch.testing.assert_close(again, first)
        assert (first - ref).norm() / ref.norm() < 0.05
        model.kernel_heads[14].bias.add_(1.0)  # in-place update, as an optimiser step: the cast copy is stale
        ref2 = model(x, lam)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            upd = model(x, lam).float()
    assert (ref2 - ref).abs().max() > 0.5
    assert (upd - ref2).norm() / ref2.norm() < 0.05
