"""Forward models: FFT convention vs numpy, adjointness in double precision, noise, data consistency, contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.transform import downscale_local_mean

from hyperrecon.errors import ConfigError, DataError
from hyperrecon.physics import CSMRI, FORWARD_MODELS, Denoise, SuperResolution, fft2c, ifft2c


def np_fft2c(x: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def np_ifft2c(k: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def inner(a: torch.Tensor, b: torch.Tensor) -> complex:
    """<a, b> = sum conj(a) b over everything."""
    return complex(torch.sum(torch.conj(a.to(torch.complex128)) * b.to(torch.complex128)))


def crandn(shape, gen: torch.Generator) -> torch.Tensor:
    return torch.complex(
        torch.randn(shape, generator=gen, dtype=torch.float64),
        torch.randn(shape, generator=gen, dtype=torch.float64),
    )


@pytest.fixture
def cs(tmp_path: Path) -> CSMRI:
    return CSMRI((37, 31), acceleration=4.0, cache_dir=tmp_path)


def models(tmp_path: Path) -> list:
    return [
        CSMRI((37, 31), acceleration=4.0, cache_dir=tmp_path),
        CSMRI((32, 32), acceleration=8.0, cache_dir=tmp_path),
        Denoise((37, 31), sigma=0.1),
        SuperResolution((36, 32), factor=4),
        SuperResolution((30, 20), factor=5),
    ]


# ------------------------------------------------------------------------------------------------ FFT convention


@pytest.mark.parametrize("shape", [(8, 8), (37, 31), (16, 9)])
def test_fft_matches_numpy(shape: tuple[int, int], rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 1, *shape)) + 1j * rng.standard_normal((2, 1, *shape))
    k = fft2c(torch.from_numpy(x))
    np.testing.assert_allclose(k.numpy(), np_fft2c(x), atol=1e-12)
    np.testing.assert_allclose(ifft2c(torch.from_numpy(x)).numpy(), np_ifft2c(x), atol=1e-12)
    np.testing.assert_allclose(ifft2c(k).numpy(), x, atol=1e-12)  # orthonormal inverse
    # centred: DC at (H//2, W//2) and equal to sum / sqrt(H W)
    dc = k[..., shape[0] // 2, shape[1] // 2].numpy()
    np.testing.assert_allclose(dc, x.sum(axis=(-2, -1)) / np.sqrt(shape[0] * shape[1]), atol=1e-12)
    # Parseval
    np.testing.assert_allclose((np.abs(k.numpy()) ** 2).sum(), (np.abs(x) ** 2).sum(), rtol=1e-12)


def test_cs_operator_matches_numpy(cs: CSMRI, odd_image: np.ndarray) -> None:
    x = torch.from_numpy(odd_image[None, None]).float()
    y = cs.A(x)
    assert y.dtype == torch.complex64 and y.shape == (1, 1, 37, 31)
    mask = cs.mask_image()
    ref = mask * np_fft2c(odd_image)
    np.testing.assert_allclose(y[0, 0].numpy(), ref, atol=1e-5)
    zf = np_ifft2c(ref)
    net = cs.network_input(y)
    assert net.dtype == torch.float32 and net.shape == (1, 2, 37, 31)
    np.testing.assert_allclose(net[0, 0].numpy(), zf.real, atol=1e-5)
    np.testing.assert_allclose(net[0, 1].numpy(), zf.imag, atol=1e-5)
    np.testing.assert_allclose(cs.degraded(y)[0, 0].numpy(), np.abs(zf), atol=1e-5)
    assert not torch.any(y[0, 0][torch.from_numpy(~mask)] != 0)


# ------------------------------------------------------------------------------------------------ adjointness


@pytest.mark.parametrize("which", range(5))
def test_adjointness_double(which: int, tmp_path: Path) -> None:
    model = models(tmp_path)[which]
    gen = torch.Generator().manual_seed(which)
    x = crandn((3, 1, *model.image_shape), gen)
    ax = model.A(x)
    assert ax.dtype == torch.complex128
    y = crandn(tuple(ax.shape), gen)
    aty = model.A_adjoint(y)
    assert aty.shape == x.shape and aty.dtype == torch.complex128
    lhs, rhs = inner(ax, y), inner(x, aty)
    assert abs(lhs - rhs) <= 1e-10 * max(1.0, abs(lhs))
    # real images: the adjoint of the real-input operator is Re(A^H y)
    xr = torch.randn((3, 1, *model.image_shape), generator=gen, dtype=torch.float64)
    lhs_r = inner(model.A(xr), y).real
    rhs_r = float(torch.sum(xr * aty.real))
    assert abs(lhs_r - rhs_r) <= 1e-10 * max(1.0, abs(lhs_r))


def test_two_channel_image_equals_complex(cs: CSMRI) -> None:
    gen = torch.Generator().manual_seed(0)
    z = crandn((2, 1, 37, 31), gen)
    two = torch.cat([z.real, z.imag], dim=1)
    torch.testing.assert_close(cs.A(two), cs.A(z), atol=1e-12, rtol=0)


# ------------------------------------------------------------------------------------------------ noise


def test_denoise_noise_matches_sigma() -> None:
    model = Denoise((64, 64), sigma=0.1)
    x = torch.full((4, 1, 64, 64), 0.5)
    y = model.measure(x, torch.Generator().manual_seed(5))
    noise = (y - x).numpy().ravel()
    assert abs(noise.std() - 0.1) < 0.003  # 16k samples: std error ~0.0006
    assert abs(noise.mean()) < 0.003
    net = model.network_input(y)
    torch.testing.assert_close(net[:, :1], y)
    assert torch.all(net[:, 1:] == 0)
    torch.testing.assert_close(model.degraded(y), y.abs())


def test_cs_noise_only_on_sampled_entries(tmp_path: Path) -> None:
    model = CSMRI((64, 64), acceleration=4.0, noise_sigma=0.05, cache_dir=tmp_path)
    x = torch.rand((8, 1, 64, 64), generator=torch.Generator().manual_seed(0))
    n = model.measure(x, torch.Generator().manual_seed(1)) - model.A(x)
    mask = torch.from_numpy(model.mask_image())
    assert torch.all(n[..., ~mask] == 0)
    sampled = n[..., mask]
    power = float(sampled.abs().square().mean())
    assert abs(power - 0.05**2) < 0.05 * 0.05**2  # E|n|² = sigma², 8k samples
    assert abs(float(sampled.real.std()) - 0.05 / np.sqrt(2)) < 0.002


@pytest.mark.parametrize("name", ["cs-mri", "denoise"])
def test_measure_deterministic_given_generator(name: str, tmp_path: Path) -> None:
    params = {"noise_sigma": 0.1, "cache_dir": tmp_path} if name == "cs-mri" else {"sigma": 0.1}
    model = FORWARD_MODELS.build(name, params, image_shape=(16, 16))
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(99)
    state = torch.get_rng_state()
    a = model.measure(x, torch.Generator().manual_seed(3))
    b = model.measure(x, torch.Generator().manual_seed(3))
    c = model.measure(x, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(state, torch.get_rng_state())  # a given generator leaves the global RNG alone


# ------------------------------------------------------------------------------------------------ super-resolution


def test_super_resolution_vs_skimage(odd_image: np.ndarray) -> None:
    img = odd_image[:36, :28]
    model = SuperResolution((36, 28), factor=4)
    y = model.measure(torch.from_numpy(img[None, None]).float())
    assert y.shape == (1, 1, 9, 7)
    np.testing.assert_allclose(y[0, 0].numpy(), downscale_local_mean(img, (4, 4)), atol=1e-6)
    net = model.network_input(y)
    assert net.shape == (1, 2, 36, 28) and torch.all(net[:, 1] == 0)
    np.testing.assert_allclose(net[0, 0].numpy(), np.kron(y[0, 0].numpy(), np.ones((4, 4))), atol=1e-7)
    footprint = model.mask_image()
    assert footprint.shape == (36, 28) and footprint.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("shape", [(37, 32), (32, 30), (3, 4)])
def test_super_resolution_size_not_divisible(shape) -> None:
    with pytest.raises(ConfigError, match=f"{shape[0]}x{shape[1]}"):
        SuperResolution(shape, factor=4)


# ------------------------------------------------------------------------------------------------ data consistency


@pytest.mark.parametrize("which", range(5))
def test_data_consistency_of_truth_is_zero_and_gradient(which: int, tmp_path: Path) -> None:
    model = models(tmp_path)[which]
    gen = torch.Generator().manual_seed(which)
    x = torch.rand((2, 1, *model.image_shape), generator=gen)
    y = model.A(x)
    dc = model.data_consistency(x, y)
    assert dc.shape == (2,) and dc.dtype == torch.float32
    assert torch.all(dc.abs() < 1e-10)
    # gradient at the truth (zero residual) is finite (zero), and elsewhere equals 2 Re A^H (A x - y)
    xh = x.clone().requires_grad_(True)
    model.data_consistency(xh, y).sum().backward()
    assert torch.isfinite(xh.grad).all() and float(xh.grad.abs().max()) < 1e-6
    xd = torch.rand((2, 1, *model.image_shape), generator=gen, dtype=torch.float64, requires_grad=True)
    yd = model.A(x.double())
    model.data_consistency(xd, yd).sum().backward()
    residual = model.A(xd.detach()) - yd
    expected = 2 * model.A_adjoint(residual)
    expected = expected.real if expected.is_complex() else expected
    torch.testing.assert_close(xd.grad, expected, atol=1e-10, rtol=1e-10)


def test_data_consistency_matches_numpy(cs: CSMRI, odd_image: np.ndarray) -> None:
    x = torch.from_numpy(odd_image[None, None]).float()
    y = cs.measure(x)
    x_hat = x.flip(-1)
    ref = (np.abs(cs.mask_image() * np_fft2c(x_hat[0, 0].double().numpy()) - y[0, 0].numpy()) ** 2).sum()
    assert float(cs.data_consistency(x_hat, y)[0]) == pytest.approx(ref, rel=1e-5)


def test_denoise_data_consistency_of_noisy_measurement() -> None:
    model = Denoise((64, 64), sigma=0.1)
    x = torch.rand((2, 1, 64, 64), generator=torch.Generator().manual_seed(0))
    y = model.measure(x, torch.Generator().manual_seed(1))
    dc = model.data_consistency(x, y)
    np.testing.assert_allclose(dc.numpy(), 0.01 * 64 * 64, rtol=0.05)


def test_data_consistency_float32_under_bf16_autocast(cs: CSMRI) -> None:
    x = torch.rand((2, 1, 37, 31), generator=torch.Generator().manual_seed(0))
    y = cs.A(x)
    x_hat = (x + 0.01).to(torch.bfloat16).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        dc = cs.data_consistency(x_hat, y)
    assert dc.dtype == torch.float32
    ref = cs.data_consistency(x_hat.detach().float(), y)
    torch.testing.assert_close(dc, ref)
    dc.sum().backward()
    assert x_hat.grad is not None and torch.isfinite(x_hat.grad.float()).all()


# ------------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "name,params",
    [
        ("cs-mri", {"acceleration": 20.0}),
        ("cs-mri", {"acceleration": 1.0}),
        ("cs-mri", {"noise_sigma": -0.1}),
        ("denoise", {"sigma": -1}),
        ("denoise", {"sigma": float("nan")}),
        ("super-resolution", {"factor": 0}),
        ("super-resolution", {"factor": 2.5}),
        ("super-resolution", {"factor": 3}),
    ],
)
def test_bad_parameters_raise_config_error(name: str, params: dict, tmp_path: Path) -> None:
    if name == "cs-mri":
        params = {**params, "cache_dir": tmp_path}
    with pytest.raises(ConfigError, match=name) as err:
        FORWARD_MODELS.build(name, params, image_shape=(16, 16))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("shape", [(0, 16), (16,), "16x16", (16.5, 16)])
def test_bad_image_shape(shape) -> None:
    with pytest.raises(ConfigError, match="image_shape"):
        Denoise(shape)


def test_wrong_tensor_shapes_raise_data_error(cs: CSMRI) -> None:
    with pytest.raises(DataError, match="37, 31"):
        cs.A(torch.zeros(1, 1, 31, 37))
    with pytest.raises(DataError, match="measurement"):
        cs.A_adjoint(torch.zeros(1, 3, 37, 31, dtype=torch.complex64))
    with pytest.raises(DataError):
        SuperResolution((16, 16), factor=4).data_consistency(torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 8, 8))


# ------------------------------------------------------------------------------------------------ contract


def test_registry_names() -> None:
    assert FORWARD_MODELS.names() == ["cs-mri", "denoise", "super-resolution"]


# The registry contract of every forward model: tests/test_contracts.py (contracts.check_forward_model).


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", FORWARD_MODELS.names())
def test_cuda_matches_cpu(name: str) -> None:
    model = FORWARD_MODELS.build(name, FORWARD_MODELS.smoke_params(name))
    h, w = model.image_shape
    x = torch.rand((2, 1, h, w), generator=torch.Generator().manual_seed(0))
    y_cpu = model.measure(x, torch.Generator().manual_seed(1))
    model.to("cuda")
    # a CPU generator gives the same noise on any device
    y_gpu = model.measure(x.cuda(), torch.Generator().manual_seed(1))
    torch.testing.assert_close(y_gpu.cpu(), y_cpu, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.network_input(y_gpu).cpu(), model.network_input(y_cpu), atol=1e-5, rtol=1e-5)
    x_hat = (x + 0.1).cuda().requires_grad_(True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        dc = model.data_consistency(x_hat, y_gpu)
    assert dc.dtype == torch.float32
    torch.testing.assert_close(dc.cpu(), model.data_consistency(x + 0.1, y_cpu), atol=1e-4, rtol=1e-4)
    dc.sum().backward()
    assert torch.isfinite(x_hat.grad).all()
