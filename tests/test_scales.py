"""Automatic loss scales: SL from single-term baselines (paper 4.4), AO by the median rule; checked by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from hyperrecon.coefficients import coefficients
from hyperrecon.errors import ConfigError, TrainingError
from hyperrecon.losses import CompositeLoss
from hyperrecon.models import UNet
from hyperrecon.physics import CSMRI
from hyperrecon.scales import (
    ao_auto_scales,
    equal_weight_lam,
    median_scales,
    scales_from_single_term_values,
    sl_auto_scales,
    term_values,
    vertex_lam,
)
from hyperrecon.tasks import ReconTask


def images(n: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed))


def np_fft2c(x: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def test_single_term_values_are_the_scales() -> None:
    assert scales_from_single_term_values([0.0556, 0.322]) == [0.0556, 0.322]
    assert scales_from_single_term_values({"mae": 0.1, "ssim": 0.2}) == [0.1, 0.2]
    with pytest.raises(ConfigError, match="ssim"):
        scales_from_single_term_values({"mae": 0.1, "ssim": 0.0})


@pytest.mark.parametrize("k", [1, 2])
def test_equal_weight_and_vertex_lams(k: int) -> None:
    torch.testing.assert_close(coefficients(equal_weight_lam(k)), torch.full((1, k + 1), 1 / (k + 1)))
    for i in range(k + 1):
        torch.testing.assert_close(coefficients(vertex_lam(i, k)), torch.eye(k + 1)[i : i + 1])


def test_median_rule_hand_case() -> None:
    values = {"dc": torch.tensor([1.0, 2.0, 3.0, 100.0]), "tv": torch.tensor([10.0, 30.0, 20.0])}
    assert median_scales(values, ["dc", "tv"]) == [2.5, 20.0]  # outlier 100 does not move it
    with pytest.raises(TrainingError, match="'tv'"):
        median_scales({"tv": torch.zeros(3)}, ["tv"])


def test_ao_auto_scales_match_independent_medians() -> None:
    cs = CSMRI((16, 16), acceleration=4.0)
    x = images()
    y = cs.measure(x)
    task = ReconTask(cs.network_input(y), None, y, cs, CompositeLoss(["dc", "l1_weights", "tv"]))
    torch.manual_seed(0)
    model = UNet(width=4)
    scales = ao_auto_scales(model, task, batch_size=4)
    assert model.training  # mode restored

    model.eval()
    with torch.no_grad():
        x_hat = model(task.inputs).double().numpy()[:, 0]
    mask = cs.mask_image()
    dc = (np.abs(mask * np_fft2c(x_hat) - mask * np_fft2c(x.double().numpy()[:, 0])) ** 2).sum((1, 2))
    tv = np.abs(np.diff(x_hat, axis=1)).sum((1, 2)) + np.abs(np.diff(x_hat, axis=2)).sum((1, 2))
    l1 = sum(
        float(c.weight.detach().abs().sum() + c.bias.detach().abs().sum())
        for c in model.modules()
        if isinstance(c, torch.nn.Conv2d)
    )
    np.testing.assert_allclose(scales, [np.median(dc), l1, np.median(tv)], rtol=1e-4)

    # Scaled by these, every term has median 1 on the calibration data.
    values = term_values(model, task, equal_weight_lam(2), batch_size=6)
    for name, s in zip(task.loss.terms, scales, strict=True):
        assert float(torch.quantile((values[name] / s).double(), 0.5)) == pytest.approx(1.0, rel=1e-5)


def test_sl_auto_scales_use_the_single_term_baselines() -> None:
    x = images(seed=1)
    noisy = (x + 0.1 * images(seed=2)).clamp(0, 1)
    task = ReconTask(torch.cat([noisy, torch.zeros_like(noisy)], 1), x, None, None, CompositeLoss(["mae", "ssim"]))
    torch.manual_seed(0)
    m0, m_half, m1 = UNet(width=4), UNet(width=4), UNet(width=4)
    scales = sl_auto_scales({0.0: m0, 0.5: m_half, 1.0: m1}, task, batch_size=4)
    with torch.no_grad():
        out0 = m0.eval()(task.inputs).double().numpy()[:, 0]
        out1 = m1.eval()(task.inputs).double().numpy()[:, 0]
    xn = x.double().numpy()[:, 0]
    mae0 = np.abs(out0 - xn).mean()
    ssim1 = np.mean(
        [
            1
            - structural_similarity(
                out1[i], xn[i], data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
            )
            for i in range(len(xn))
        ]
    )
    np.testing.assert_allclose(scales, [mae0, ssim1], rtol=1e-4)
    with pytest.raises(ConfigError, match=r"'ssim' alone \(λ=\[1.0\]\)"):
        sl_auto_scales({0.0: m0}, task)
