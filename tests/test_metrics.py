"""Metrics against scikit-image, scipy, numpy and hand-computed cases (hyperrecon/metrics.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_laplace
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from hyperrecon import metrics as M
from hyperrecon.errors import ConfigError, DataError, UnknownNameError

H, W = 37, 31  # odd, non-square


def mixed_batch(seed: int = 0, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Targets and reconstructions (B=5, 1, 37, 31) in [0, 1] of mixed content; sample 3 is an exact copy."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W] / np.array([H, W])[:, None, None]
    smooth = 0.5 + 0.4 * np.sin(6 * xx) * np.cos(4 * yy)
    disc = ((yy - 0.5) ** 2 + (xx - 0.4) ** 2 < 0.1).astype(float)
    noise = rng.random((H, W))
    x = np.stack([smooth, disc, noise, smooth, 0.3 * disc + 0.5 * smooth])[:, None]
    x_hat = np.clip(
        x + rng.normal(0, [0.02, 0.1, 0.2, 0.0, 0.05])[:, None, None, None] * rng.standard_normal(x.shape),
        0,
        1,
    )
    x_hat[3] = x[3]
    return x_hat.astype(dtype), x.astype(dtype)


def t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


# ---------------------------------------------------------------------------------------------------------------
# pixel-wise metrics


def test_psnr_mse_mae_nmse_match_references():
    x_hat, x = mixed_batch()
    b = x.shape[0]
    for rng_ in (1.0, 2.0):
        got = M.psnr(t(x_hat), t(x), data_range=rng_)
        ref = [peak_signal_noise_ratio(x[i, 0], x_hat[i, 0], data_range=rng_) if i != 3 else np.inf for i in range(b)]
        np.testing.assert_allclose(got[[0, 1, 2, 4]].numpy(), np.asarray(ref)[[0, 1, 2, 4]], rtol=0, atol=1e-10)
    np.testing.assert_allclose(
        M.mse(t(x_hat), t(x)).numpy(), [mean_squared_error(x[i], x_hat[i]) for i in range(b)], atol=1e-15
    )
    np.testing.assert_allclose(M.mae(t(x_hat), t(x)).numpy(), np.abs(x_hat - x).mean(axis=(1, 2, 3)), atol=1e-15)
    nmse_ref = [np.linalg.norm(x[i] - x_hat[i]) ** 2 / np.linalg.norm(x[i]) ** 2 for i in range(b)]
    np.testing.assert_allclose(M.nmse(t(x_hat), t(x)).numpy(), nmse_ref, rtol=1e-12)


def test_psnr_of_uniform_offset_is_known():
    x = torch.rand(3, 1, H, W, dtype=torch.float64) * 0.5
    for c in (0.1, 0.03):
        np.testing.assert_allclose(M.psnr(x + c, x).numpy(), 10 * math.log10(1 / c**2), atol=1e-9)
        np.testing.assert_allclose(M.psnr(x - c, x, data_range=2.0).numpy(), 10 * math.log10(4 / c**2), atol=1e-9)


def test_psnr_identical_and_constant_images_are_finite_and_capped():
    x = torch.rand(2, 1, H, W)
    assert torch.equal(M.psnr(x, x), torch.full((2,), M.PSNR_CAP_DB))
    zeros = torch.zeros(2, 1, H, W)
    assert torch.equal(M.psnr(zeros, zeros), torch.full((2,), M.PSNR_CAP_DB))
    np.testing.assert_allclose(M.psnr(zeros + 0.5, zeros).numpy(), 10 * math.log10(4), atol=1e-5)
    assert torch.equal(M.nmse(zeros, zeros), torch.zeros(2))
    assert torch.isfinite(M.nmse(zeros + 1, zeros)).all()


def test_psnr_per_sample_data_range_tensor():
    x_hat, x = mixed_batch()
    r = torch.tensor([1.0, 2.0, 1.0, 1.0, 0.5], dtype=torch.float64)
    got = M.psnr(t(x_hat), t(x), data_range=r)
    for i in (0, 1, 4):
        assert got[i].item() == pytest.approx(peak_signal_noise_ratio(x[i], x_hat[i], data_range=r[i].item()))


def test_rpsnr_is_difference_of_psnrs():
    x_hat, x = mixed_batch()
    degraded = np.clip(x + 0.3, 0, 1)
    got = M.rpsnr(t(x_hat), t(x), t(degraded))
    ref = M.psnr(t(x_hat), t(x)) - M.psnr(t(degraded), t(x))
    torch.testing.assert_close(got, ref)
    assert got.shape == (5,)
    with pytest.raises(ValueError, match="degraded"):
        M.rpsnr(t(x_hat), t(x), None)
    with pytest.raises(ValueError, match=r"\(5, 1, 36, 31\)"):
        M.rpsnr(t(x_hat), t(x), t(degraded[:, :, 1:]))


@pytest.mark.parametrize("fn", [M.psnr, M.mse, M.mae, M.nmse, M.ssim, M.hfen])
def test_bad_shapes_raise_value_error_naming_shapes(fn):
    a = torch.rand(2, 1, 16, 16)
    with pytest.raises(ValueError, match=r"\(2, 1, 16, 16\).*\(2, 1, 16, 15\)"):
        fn(a, a[..., :15])
    with pytest.raises(ValueError, match=r"\(2, 16, 16\)"):
        fn(a[:, 0], a[:, 0])


def test_bad_data_range_is_config_error():
    a = torch.rand(2, 1, 16, 16)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ConfigError, match="data_range"):
            M.psnr(a, a, data_range=bad)


# ---------------------------------------------------------------------------------------------------------------
# SSIM


def skimage_ssim(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    return structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=data_range
    )


def test_ssim_wang_matches_skimage_float64():
    x_hat, x = mixed_batch()
    got = M.ssim(t(x_hat), t(x))
    assert got.shape == (5,) and got.dtype == torch.float64
    ref = [skimage_ssim(x_hat[i, 0], x[i, 0], 1.0) for i in range(5)]
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-10)
    assert got[3].item() == pytest.approx(1.0, abs=1e-12)
    # other data range, and the smallest size the 11x11 window fits
    got2 = M.ssim(t(2 * x_hat[:, :, :11, :11]), t(2 * x[:, :, :11, :11]), data_range=2.0)
    ref2 = [skimage_ssim(2 * x_hat[i, 0, :11, :11], 2 * x[i, 0, :11, :11], 2.0) for i in range(5)]
    np.testing.assert_allclose(got2.numpy(), ref2, atol=1e-10)


def test_ssim_fastmri_matches_skimage_sample_covariance_uniform7_target_max():
    x_hat, x = mixed_batch()
    x_hat, x = 3 * x_hat, 3 * x  # the data range must come from the target, not the argument
    got = M.ssim(t(x_hat), t(x), data_range=1.0, convention="fastmri")
    ref = [structural_similarity(x_hat[i, 0], x[i, 0], win_size=7, data_range=x[i, 0].max()) for i in range(5)]
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-10)
    assert set(M.SSIM_CONVENTIONS) == {"wang", "fastmri"}
    assert all(isinstance(v, str) and v and "\n" not in v for v in M.SSIM_CONVENTIONS.values())


def test_ssim_multichannel_is_channel_mean():
    rng = np.random.default_rng(1)
    x = rng.random((2, 3, 20, 17))
    x_hat = np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1)
    got = M.ssim(t(x_hat), t(x))
    ref = [np.mean([skimage_ssim(x_hat[i, c], x[i, c], 1.0) for c in range(3)]) for i in range(2)]
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-10)


def test_ssim_constant_and_identical_images():
    for conv in M.SSIM_CONVENTIONS:
        for value in (0.0, 0.7):
            c = torch.full((2, 1, 12, 13), value)
            np.testing.assert_allclose(M.ssim(c, c, convention=conv).numpy(), 1.0, atol=1e-6)
    # constant target vs constant reconstruction: only the luminance term remains
    a, b = (
        torch.full((1, 1, 12, 12), 0.2, dtype=torch.float64),
        torch.full((1, 1, 12, 12), 0.6, dtype=torch.float64),
    )
    c1 = 0.01**2
    assert M.ssim(a, b).item() == pytest.approx((2 * 0.12 + c1) / (0.04 + 0.36 + c1), abs=1e-10)


def test_ssim_float32_close_to_float64_and_autocast_computes_in_float32():
    x_hat, x = mixed_batch()
    ref = M.ssim(t(x_hat), t(x))
    a, b = t(x_hat).float(), t(x).float()
    f32 = M.ssim(a, b)
    assert f32.dtype == torch.float32
    np.testing.assert_allclose(f32.numpy(), ref.numpy(), atol=1e-4)  # float32 cancellation in E[x²] - E[x]²
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        under = M.ssim(a, b)
        under_bf16_inputs = M.ssim(a.bfloat16(), b.bfloat16())
        hf = M.hfen(a, b)
    assert under.dtype == torch.float32 and torch.equal(under, f32)
    assert under_bf16_inputs.dtype == torch.float32
    torch.testing.assert_close(hf, M.hfen(a, b))


def test_ssim_rejects_small_images_and_unknown_convention():
    a = torch.rand(1, 1, 10, 30)
    with pytest.raises(ValueError, match="11x11.*10x30"):
        M.ssim(a, a)
    assert M.ssim(a[..., :7, :7], a[..., :7, :7], convention="fastmri").shape == (1,)
    b = torch.rand(1, 1, 12, 12)
    with pytest.raises(ConfigError, match="did you mean 'fastmri'"):
        M.ssim(b, b, convention="fastmr")
    with pytest.raises(ValueError):
        M.ssim(b, b, convention="nope")


# ---------------------------------------------------------------------------------------------------------------
# HFEN


def scipy_log(img: np.ndarray) -> np.ndarray:
    return gaussian_laplace(img, sigma=1.5, truncate=7 / 1.5)


@pytest.mark.parametrize("shape", [(H, W), (16, 16), (5, 4), (1, 9)])
def test_laplacian_of_gaussian_matches_scipy_reflect(shape):
    img = np.random.default_rng(2).random(shape)
    got = M.laplacian_of_gaussian(t(img)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(got, scipy_log(img), atol=1e-12)


def test_hfen_matches_scipy_reference_normalised_by_target():
    x_hat, x = mixed_batch()
    got = M.hfen(t(x_hat), t(x))
    ref = [
        np.linalg.norm(scipy_log(x_hat[i, 0]) - scipy_log(x[i, 0])) / np.linalg.norm(scipy_log(x[i, 0]))
        for i in range(5)
    ]
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-10)
    assert got[3].item() == 0.0
    swapped = M.hfen(t(x), t(x_hat))
    assert not torch.allclose(got[[0, 1, 2, 4]], swapped[[0, 1, 2, 4]])
    f32 = M.hfen(t(x_hat).float(), t(x).float())
    np.testing.assert_allclose(f32.numpy(), ref, atol=1e-4)
    const = torch.full((1, 1, 20, 20), 0.5)
    assert torch.isfinite(M.hfen(const * 0.9, const)).all()


# ---------------------------------------------------------------------------------------------------------------
# gradients


@pytest.mark.parametrize("fn", [M.ssim, M.mae, M.mse, M.psnr, M.hfen])
def test_loss_forms_have_finite_gradients(fn):
    x_hat, x = mixed_batch(dtype=np.float32)
    for pred in (t(x).clone(), t(x_hat).clone()):
        pred.requires_grad_(True)
        fn(pred, t(x)).sum().backward()
        assert torch.isfinite(pred.grad).all()
    assert pred.grad.abs().sum() > 0  # different inputs: a non-trivial gradient


def test_ssim_gradient_matches_finite_difference():
    torch.manual_seed(0)
    x = torch.rand(1, 1, 13, 12, dtype=torch.float64)
    x_hat = (x + 0.1 * torch.randn_like(x)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: M.ssim(a, x), (x_hat,))


# ---------------------------------------------------------------------------------------------------------------
# Dice


def test_dice_hand_built_label_maps():
    pred = torch.tensor([[[0, 1, 1], [2, 2, 2]], [[1, 1, 0], [0, 0, 0]]])
    true = torch.tensor([[[0, 1, 0], [2, 0, 0]], [[1, 0, 0], [0, 0, 0]]])
    got = M.dice(pred, true, n_classes=3)
    assert got.shape == (2, 2) and got.dtype == torch.float32
    torch.testing.assert_close(got, torch.tensor([[2 / 3, 1 / 2], [2 / 3, 1.0]]))  # class 2 absent in both: 1
    with_bg = M.dice(pred[:, None], true[:, None], n_classes=3, include_background=True)
    torch.testing.assert_close(with_bg, torch.tensor([[2 / 5, 2 / 3, 1 / 2], [8 / 9, 2 / 3, 1.0]]))
    torch.testing.assert_close(M.mean_dice(pred, true, 3), torch.tensor([7 / 12, 5 / 6]))
    empty = torch.zeros(1, 4, 4, dtype=torch.long)
    torch.testing.assert_close(M.dice(empty, empty, 3), torch.ones(1, 2))
    torch.testing.assert_close(M.dice(empty, empty + 1, 2), torch.zeros(1, 1))


def test_dice_rejects_bad_labels():
    a = torch.zeros(1, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"\[0, 3\).*max 3"):
        M.dice(a + 3, a, 3)
    with pytest.raises(ValueError, match="integer"):
        M.dice(a.float(), a, 3)
    with pytest.raises(ValueError, match=r"\(1, 4, 4\).*\(1, 4, 3\)"):
        M.dice(a, a[..., :3], 3)
    with pytest.raises(ConfigError, match="n_classes"):
        M.dice(a, a, 1)


def test_soft_dice_loss_hand_computed_and_differentiable():
    # labels [0, 0, 1]; P(class 1) = [0, .5, .5]; Sudre weights 1/n²: (1/4, 1) -> normalised (0.2, 0.8)
    p1 = torch.tensor([0.0, 0.5, 0.5], dtype=torch.float64)
    probs = torch.stack([1 - p1, p1]).view(1, 2, 1, 3).requires_grad_(True)
    labels = torch.tensor([[[0, 0, 1]]])
    loss = M.soft_dice_loss(probs, labels, smooth=0.0)
    assert loss.shape == (1,) and loss.item() == pytest.approx(5 / 12)
    uniform = M.soft_dice_loss(probs, labels, weighting="uniform", smooth=0.0)
    # I = (1.5, 0.5), D = (4, 2): 1 - 2 * 2 / 6
    assert uniform.item() == pytest.approx(1 - 4 / 6)
    no_bg = M.soft_dice_loss(probs, labels, include_background=False, smooth=0.0)
    assert no_bg.item() == pytest.approx(1 - 2 * 0.5 / 2)
    loss.sum().backward()
    assert torch.isfinite(probs.grad).all() and probs.grad.abs().sum() > 0
    # perfect prediction -> 0; absent classes get the largest present weight (here: uniform over 3)
    onehot = torch.nn.functional.one_hot(torch.tensor([[0, 2, 2, 0]]), 3).permute(0, 2, 1)[..., None].double()
    assert M.soft_dice_loss(onehot, torch.tensor([[[0], [2], [2], [0]]])).item() == pytest.approx(0.0, abs=1e-12)
    soft = torch.softmax(torch.randn(2, 3, 5, 4, dtype=torch.float64), dim=1)
    zeros = torch.zeros(2, 5, 4, dtype=torch.long)
    torch.testing.assert_close(M.soft_dice_loss(soft, zeros), M.soft_dice_loss(soft, zeros, weighting="uniform"))
    with pytest.raises(ConfigError, match="weighting"):
        M.soft_dice_loss(soft, zeros, weighting="square")


# ---------------------------------------------------------------------------------------------------------------
# set-level


def test_pixel_range_hand_computed_numpy_and_torch():
    recons = np.array([[[0, 1], [2, 3]], [[1, 1], [0, 3]], [[0.5, 2], [2, 3]]], dtype=np.float32)
    out = M.pixel_range(recons)
    assert isinstance(out.map, np.ndarray)
    np.testing.assert_array_equal(out.map, [[1, 1], [2, 0]])
    assert (out.sum, out.mean_per_pixel) == (4.0, 1.0)
    out_t = M.pixel_range(torch.from_numpy(recons)[:, None])
    assert isinstance(out_t.map, torch.Tensor) and out_t.map.shape == (2, 2)
    assert (out_t.sum, out_t.mean_per_pixel) == (4.0, 1.0)
    assert M.pixel_range(recons[:1]).sum == 0.0
    with pytest.raises(ValueError, match=r"\(0, 2, 2\)"):
        M.pixel_range(recons[:0])


def test_diverse_pair_hand_computed():
    recons = np.array([[0, 0], [10, 0], [1, 0], [0, 3], [4, 4]], dtype=float)[:, None, :]  # (5, 1, 2)
    scores = np.array([1.0, 0.0, 5.0, 6.0, 7.0])
    # median 5 keeps {2, 3, 4}; the far-away recon 1 scores too low
    assert M.diverse_pair(recons, scores, quantile=0.5) == (2, 4, 5.0)
    i, j, d = M.diverse_pair(torch.from_numpy(recons), torch.from_numpy(scores), quantile=1.0)  # top 2 kept
    assert (i, j) == (3, 4) and d == pytest.approx(math.sqrt(17))
    assert M.diverse_pair(recons, [1.0, 9.0, 5.0, 6.0, 7.0], quantile=0.0) == (
        1,
        3,
        pytest.approx(math.sqrt(109)),
    )
    with_nan = np.array([np.nan, np.nan, 5.0, 6.0, 7.0])
    assert M.diverse_pair(recons, with_nan, quantile=0.0).i == 2
    with pytest.raises(ValueError, match="5 reconstructions but 4 scores"):
        M.diverse_pair(recons, scores[:4])
    with pytest.raises(ConfigError, match="quantile"):
        M.diverse_pair(recons, scores, quantile=90)


# ---------------------------------------------------------------------------------------------------------------
# registry contract


class ThresholdSeg(torch.nn.Module):
    """A real segmentation net with known output: class 1 where the image exceeds 0.5 (logits ``0.5 - x, x - 0.5``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([0.5 - x[:, :1], x[:, :1] - 0.5], dim=1)


def _built(name: str) -> M.Metric:
    return M.METRICS.build(name, M.METRICS.smoke_params(name))


@pytest.mark.parametrize("name", M.METRICS.names())
def test_registry_contract(name):
    metric = _built(name)
    assert callable(metric) and metric.name == name and isinstance(metric, M.Metric)
    assert isinstance(metric.higher_is_better, bool) and metric.needs <= set(M.INPUTS)
    assert metric.unit and metric.short and metric.label
    assert M.METRICS.describe(name)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 16, 13, generator=gen)
    x_hat = (x + 0.1 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    degraded = (x + 0.3 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    inputs = dict(degraded=degraded, data_range=1.0, labels=(x[:, 0] > 0.5).long(), seg_model=ThresholdSeg())
    out = metric(x_hat, x, **inputs, n_classes=2)
    assert out.shape == (3,) and torch.isfinite(out).all()
    # better reconstruction scores better in the metric's own direction
    worse = metric(degraded, x, **inputs, n_classes=2)
    assert ((out > worse) if metric.higher_is_better else (out < worse)).all()
    for key in metric.needs:  # every declared input is needed: leaving it out is a clear error
        with pytest.raises(M.MissingInputError, match=f"metric '{name}' needs .*{key}=None"):
            metric(x_hat, x, **{**inputs, key: None}, n_classes=2)


def test_registry_names_and_compute_metrics():
    assert set(M.METRICS.names()) == {"psnr", "rpsnr", "ssim", "mae", "mse", "nmse", "hfen", "dice"}
    x = torch.rand(2, 1, 12, 12)
    out = M.compute_metrics(["psnr", "ssim", "rpsnr"], x * 0.9, x, degraded=x * 0.5)
    assert list(out) == ["psnr", "ssim", "rpsnr"] and all(v.shape == (2,) for v in out.values())
    torch.testing.assert_close(out["ssim"], M.ssim(x * 0.9, x))
    with pytest.raises(UnknownNameError, match="did you mean 'psnr'"):
        M.compute_metrics(["ssim", "psnrr"], x, x)
    with pytest.raises(ValueError, match="rpsnr"):
        M.compute_metrics(["rpsnr"], x, x)


def test_ssim_plugin_takes_its_convention_and_matches_skimage():
    """``METRICS.build("ssim", {"convention": ...})``: Wang et al. 2004 = skimage's Gaussian-window setting,
    fastMRI = skimage's defaults (7x7 uniform, sample covariance) with the target's maximum as data range."""
    x_hat, x = mixed_batch()
    wang = M.METRICS.build("ssim", {"convention": "wang"})
    fastmri = M.METRICS.build("ssim", {"convention": "fastmri"})
    assert M.METRICS.build("ssim").convention == "wang" and fastmri.convention == "fastmri"
    ref_wang = [skimage_ssim(x_hat[i, 0], x[i, 0], 1.0) for i in range(5)]
    ref_fastmri = [structural_similarity(x_hat[i, 0], x[i, 0], win_size=7, data_range=x[i, 0].max()) for i in range(5)]
    np.testing.assert_allclose(wang(t(x_hat), t(x)).numpy(), ref_wang, atol=1e-10)
    np.testing.assert_allclose(fastmri(t(x_hat), t(x)).numpy(), ref_fastmri, atol=1e-10)
    assert np.abs(np.subtract(ref_wang, ref_fastmri)).max() > 1e-3  # the two conventions differ on these images
    with pytest.raises(
        ConfigError, match="cannot build metric 'ssim'.*expected one of wang, fastmri.*did you mean 'wang'"
    ):
        M.METRICS.build("ssim", {"convention": "wnag"})
    with pytest.raises(ConfigError, match="metric 'ssim' has no parameter 'conventon'.*did you mean 'convention'"):
        M.METRICS.build("ssim", {"conventon": "wang"})
    with pytest.raises(ConfigError, match="metric 'psnr' has no parameter 'convention'"):
        M.build_metrics(["psnr", "ssim"], {"psnr": {"convention": "wang"}})
    with pytest.raises(ConfigError, match="unique"):
        M.build_metrics(["ssim", fastmri])
    out = M.compute_metrics([fastmri, "psnr"], t(x_hat), t(x))
    np.testing.assert_allclose(out["ssim"].numpy(), ref_fastmri, atol=1e-10)


def test_dice_metric_matches_numpy_and_declares_its_needs():
    x = torch.rand(2, 1, 20, 20, generator=torch.Generator().manual_seed(4))
    labels = (torch.rand(2, 20, 20, generator=torch.Generator().manual_seed(5)) > 0.5).long()
    dice = M.METRICS.build("dice")
    assert dice.needs == {"labels", "seg_model"} and M.needs_seg("dice") and not M.needs_seg("ssim")
    got = dice(x * 1.5, x, labels=labels, seg_model=ThresholdSeg(), n_classes=2)
    pred = (np.clip(x.numpy()[:, 0] * 1.5, 0, 1) > 0.5).astype(int)
    lab = labels.numpy()
    ref = [2 * ((pred[i] == 1) & (lab[i] == 1)).sum() / ((pred[i] == 1).sum() + (lab[i] == 1).sum()) for i in range(2)]
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-6)
    both = M.METRICS.build("dice", {"include_background": True})(
        x, x, labels=labels, seg_model=ThresholdSeg(), n_classes=2
    )
    pred0 = (x.numpy()[:, 0] > 0.5).astype(int)
    ref0 = [
        np.mean(
            [
                2 * ((pred0[i] == c) & (lab[i] == c)).sum() / ((pred0[i] == c).sum() + (lab[i] == c).sum())
                for c in (0, 1)
            ]
        )
        for i in range(2)
    ]
    np.testing.assert_allclose(both.numpy(), ref0, rtol=1e-6)
    with pytest.raises(DataError, match="metric 'dice' needs label maps"):
        dice(x, x, seg_model=ThresholdSeg(), n_classes=2)
    with pytest.raises(ConfigError, match="n_classes"):  # no U-Net skeleton to read the class count from
        dice(x, x, labels=labels, seg_model=ThresholdSeg())


def test_directions_units_and_labels_have_one_source():
    from hyperrecon.reporting import style
    from hyperrecon.runfiles import metric_info

    expected = {"psnr": True, "rpsnr": True, "ssim": True, "dice": True, "mae": False, "mse": False, "hfen": False}
    for name, higher in expected.items():
        assert M.higher_is_better(name) is higher and style.higher_is_better(name) is higher
        info = metric_info(name)
        assert info["better"] == ("higher" if higher else "lower") and info["unit"] == M.METRICS.get(name).unit
        assert info["description"] == M.METRICS.describe(name)
    assert metric_info("psnr")["unit"] == "dB" and metric_info("ssim")["unit"] == "1"
    assert style.metric_label("psnr") == "PSNR (dB)" and style.metric_short("dice") == "Dice"
    assert style.metric_label("not-a-metric") == "not-a-metric"
    assert not hasattr(style, "METRIC_UNITS")
    with pytest.raises(UnknownNameError, match="did you mean 'psnr'"):
        M.higher_is_better("psnrr")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    x_hat, x = mixed_batch()
    for fn in (M.psnr, M.ssim, M.hfen, M.nmse):
        torch.testing.assert_close(fn(t(x_hat).cuda(), t(x).cuda()).cpu(), fn(t(x_hat), t(x)))
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
        got = M.ssim(t(x_hat).float().cuda(), t(x).float().cuda())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.cpu().double(), M.ssim(t(x_hat), t(x)), atol=1e-5, rtol=0)
    labels = torch.randint(0, 3, (2, 8, 8))
    torch.testing.assert_close(M.dice(labels.cuda(), labels.cuda().flip(1), 3).cpu(), M.dice(labels, labels.flip(1), 3))
