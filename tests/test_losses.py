"""Loss terms on hand-computed cases and against numpy/scikit-image; the composite loss (Eq. 9/10, scales)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from hyperrecon.errors import ConfigError, UnknownNameError
from hyperrecon.losses import LOSSES, CompositeLoss, LossContext
from hyperrecon.models import HyperUNet, UNet
from hyperrecon.physics import CSMRI


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def np_fft2c(x: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


@pytest.fixture(scope="module")
def cs() -> CSMRI:
    return CSMRI((16, 16), acceleration=4.0)


def full_context(cs: CSMRI, b: int = 3) -> LossContext:
    x = rand(b, 1, 16, 16, seed=1)
    x_hat = (x + 0.1 * rand(b, 1, 16, 16, seed=2)).requires_grad_(True)
    return LossContext(
        x_hat=x_hat, target=x, y=cs.measure(x), forward_model=cs, model=UNet(width=4), lam=rand(b, 1, seed=3)
    )


# ------------------------------------------------------------------------------------------ registry contract


# The registry contract of every loss: tests/test_contracts.py (hyperrecon.testing.contracts.check_loss).


# ------------------------------------------------------------------------------------------ single terms


def test_mae_mse_hand_case() -> None:
    x_hat = torch.zeros(2, 1, 2, 2)
    target = torch.tensor([[[[1.0, -1.0], [2.0, 0.0]]], [[[0.5, 0.5], [0.5, 0.5]]]])
    ctx = LossContext(x_hat=x_hat, target=target)
    torch.testing.assert_close(LOSSES.build("mae")(ctx), torch.tensor([1.0, 0.5]))
    torch.testing.assert_close(LOSSES.build("mse")(ctx), torch.tensor([1.5, 0.25]))


def test_ssim_is_one_minus_skimage_ssim() -> None:
    x = rand(2, 1, 32, 32, seed=4)
    x_hat = (x + 0.15 * rand(2, 1, 32, 32, seed=5)).clamp(0, 1)
    got = LOSSES.build("ssim")(LossContext(x_hat=x_hat, target=x))
    for i in range(2):
        ref = structural_similarity(
            x_hat[i, 0].double().numpy(),
            x[i, 0].double().numpy(),
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        assert float(got[i]) == pytest.approx(1 - ref, abs=1e-5)
    assert float(LOSSES.build("ssim")(LossContext(x_hat=x, target=x)).abs().max()) < 1e-6


def test_tv_of_known_images() -> None:
    step = torch.zeros(1, 1, 4, 5)
    step[..., :, 3:] = 2.0  # one vertical edge of height 2 over 4 rows: 4 * 2 = 8
    ramp = torch.arange(12, dtype=torch.float32).view(1, 1, 3, 4)  # +1 along W (3*3), +4 along H (2*4*4)
    tv = LOSSES.build("tv")
    assert float(tv(LossContext(x_hat=step))[0]) == pytest.approx(8.0)
    assert float(tv(LossContext(x_hat=ramp))[0]) == pytest.approx(9.0 + 32.0)
    x = rand(3, 1, 9, 7, seed=6)
    ref = np.abs(np.diff(x.numpy(), axis=2)).sum((1, 2, 3)) + np.abs(np.diff(x.numpy(), axis=3)).sum((1, 2, 3))
    np.testing.assert_allclose(tv(LossContext(x_hat=x)).numpy(), ref, rtol=1e-5)


def test_dc_is_zero_for_consistent_image_and_matches_numpy(cs: CSMRI) -> None:
    x = rand(2, 1, 16, 16, seed=7)
    y = cs.measure(x)
    dc = LOSSES.build("dc")
    assert float(dc(LossContext(x_hat=x, y=y, forward_model=cs)).abs().max()) < 1e-10
    x_hat = rand(2, 1, 16, 16, seed=8)
    mask = cs.mask_image().astype(np.float64)
    ref = np.abs(mask * np_fft2c(x_hat.double().numpy()[:, 0]) - mask * np_fft2c(x.double().numpy()[:, 0])) ** 2
    np.testing.assert_allclose(dc(LossContext(x_hat=x_hat, y=y, forward_model=cs)).numpy(), ref.sum((1, 2)), rtol=1e-5)
    with pytest.raises(ConfigError, match="forward model"):
        dc(LossContext(x_hat=x_hat))


def test_l1_weights_is_sum_of_abs_conv_parameters() -> None:
    torch.manual_seed(0)
    unet = UNet(width=4)
    by_hand = sum(
        float(m.weight.detach().abs().sum() + m.bias.detach().abs().sum())
        for m in unet.modules()
        if isinstance(m, torch.nn.Conv2d)
    )
    got = LOSSES.build("l1_weights")(LossContext(x_hat=torch.zeros(3, 1, 8, 8), model=unet, lam=torch.rand(3, 1)))
    torch.testing.assert_close(got, torch.full((3,), by_hand))

    hyper = HyperUNet(n_lams=1, hnet_width=2, width=4)
    lam = torch.tensor([[0.1], [0.9]])
    got = LOSSES.build("l1_weights")(LossContext(x_hat=torch.zeros(2, 1, 8, 8), model=hyper, lam=lam))
    for i in range(2):  # the U-Net the hypernetwork emits for λ_i, summed by hand
        emitted = hyper.to_unet(lam[i : i + 1])
        ref = sum(
            float(c.weight.detach().abs().sum() + c.bias.detach().abs().sum())
            for c in emitted.modules()
            if isinstance(c, torch.nn.Conv2d)
        )
        assert float(got[i].detach()) == pytest.approx(ref, rel=1e-5)


# ------------------------------------------------------------------------------------------ composite


def test_composite_k1_uses_eq9_and_divides_by_scales() -> None:
    x = rand(3, 1, 16, 16, seed=9)
    x_hat = rand(3, 1, 16, 16, seed=10)
    lam = torch.tensor([[0.0], [0.3], [1.0]])
    loss = CompositeLoss(["mae", "mse"], scales=[0.5, 0.25])
    total, parts = loss(LossContext(x_hat=x_hat, target=x, lam=lam))
    mae = (x_hat - x).abs().mean((1, 2, 3))
    mse = (x_hat - x).square().mean((1, 2, 3))
    torch.testing.assert_close(parts["mae"], mae)
    torch.testing.assert_close(parts["mse"], mse)
    lam1 = lam[:, 0]
    torch.testing.assert_close(total, (1 - lam1) * mae / 0.5 + lam1 * mse / 0.25)
    assert loss.n_lams == 1 and loss.supervised and not loss.has_dc


def test_composite_k2_uses_eq10(cs: CSMRI) -> None:
    ctx = full_context(cs, b=4)
    ctx.lam = torch.tensor([[1.0, 0.2], [0.0, 1.0], [0.0, 0.0], [0.25, 0.6]])
    loss = CompositeLoss(["dc", "l1_weights", "tv"], scales=[2.0, 3.0, 5.0])
    total, parts = loss(ctx)
    a, b = ctx.lam[:, 0], ctx.lam[:, 1]
    expected = a * parts["dc"] / 2.0 + (1 - a) * b * parts["l1_weights"] / 3.0 + (1 - a) * (1 - b) * parts["tv"] / 5.0
    torch.testing.assert_close(total, expected)
    torch.testing.assert_close(total[0], parts["dc"][0] / 2.0)  # vertices select one term
    torch.testing.assert_close(total[1], parts["l1_weights"][1] / 3.0)
    torch.testing.assert_close(total[2], parts["tv"][2] / 5.0)
    assert loss.has_dc and loss.needs_measurement and not loss.supervised


def test_composite_rejects_bad_configuration() -> None:
    with pytest.raises(ConfigError, match="2 terms .* or 3 terms"):
        CompositeLoss(["mae"])
    with pytest.raises(ConfigError, match="got 4"):
        CompositeLoss(["mae", "mse", "ssim", "tv"])
    with pytest.raises(ConfigError, match="one scale per term"):
        CompositeLoss(["mae", "ssim"], scales=[1.0])
    with pytest.raises(ConfigError, match="scale > 0"):
        CompositeLoss(["mae", "ssim"], scales=[1.0, 0.0])
    with pytest.raises(ConfigError, match="once"):
        CompositeLoss(["mae", "mae"])
    with pytest.raises(UnknownNameError, match="did you mean 'ssim'"):
        CompositeLoss(["mae", "sim"])
    with pytest.raises(ConfigError, match="has no parameter 'range'"):
        CompositeLoss(["mae", "ssim"], params={"ssim": {"range": 2}})
    loss = CompositeLoss(["mae", "ssim"])
    x = rand(2, 1, 16, 16)
    with pytest.raises(ConfigError, match=r"\(B, 1\)"):
        loss(LossContext(x_hat=x, target=x, lam=torch.rand(2, 2)))


def test_terms_compute_in_float32_under_bf16_autocast(cs: CSMRI) -> None:
    ctx = full_context(cs, b=2)
    ctx.lam = torch.tensor([[0.4, 0.7], [0.9, 0.1]])
    loss = CompositeLoss(["mse", "ssim", "tv"])
    ref_total, ref_parts = loss(LossContext(x_hat=ctx.x_hat.detach(), target=ctx.target, lam=ctx.lam))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x_bf16 = ctx.x_hat.detach().to(torch.bfloat16)
        total, parts = loss(LossContext(x_hat=x_bf16, target=ctx.target, lam=ctx.lam))
    assert total.dtype == torch.float32 and all(p.dtype == torch.float32 for p in parts.values())
    x_round = LossContext(x_hat=x_bf16.float(), target=ctx.target, lam=ctx.lam)
    torch.testing.assert_close(total, loss(x_round)[0])  # only the input rounding differs
    torch.testing.assert_close(total, ref_total, rtol=2e-2, atol=1e-3)
