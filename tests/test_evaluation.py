"""Evaluation over λ grids: table layout, metric values against skimage/scipy/numpy, ranges, diverse pair,
landscapes, curves and baseline interpolation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.ndimage import gaussian_laplace
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import nn

from hyperrecon.errors import ConfigError, DataError, UnknownNameError
from hyperrecon.evaluation import (
    TABLE_COLUMNS,
    EvalData,
    curve,
    evaluate_model,
    fraction_above,
    interpolate_baselines,
    lam_grid,
    landscape,
    range_slice_indices,
    reconstruct,
)
from hyperrecon.metrics import diverse_pair, pixel_range, psnr, rpsnr
from hyperrecon.models import HyperUNet, UNet
from hyperrecon.physics import CSMRI, Denoise

METRICS = ["psnr", "rpsnr", "ssim", "mae", "hfen"]


class ScaledMagnitude(nn.Module):
    """A λ-conditioned model with a known output: ``|x| * (0.5 + λ1) + 0.2 λ2`` (λ2 only for k=2)."""

    conditional = True

    def __init__(self, n_lams: int = 1) -> None:
        super().__init__()
        self.n_lams = n_lams
        self.gain = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor, lam: torch.Tensor | None = None) -> torch.Tensor:
        mag = torch.sqrt(x[:, :1] ** 2 + x[:, 1:2] ** 2)
        out = self.gain * mag * (0.5 + lam[:, 0, None, None, None])
        if self.n_lams == 2:
            out = out + 0.2 * lam[:, 1, None, None, None]
        return out


def _images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Smooth blobs in [0, 1] plus texture, ``(n, size, size)`` float32."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        cy, cx = rng.uniform(0.3, 0.7, 2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.05)
        out.append(np.clip(0.8 * blob + 0.1 * rng.random((size, size)), 0, 1))
    return np.stack(out).astype(np.float32)


@pytest.fixture
def data32() -> EvalData:
    return EvalData.from_arrays(_images(3, 32), None, Denoise((32, 32), sigma=0.1), generator_seed=5)


def _unet() -> UNet:
    torch.manual_seed(0)
    return UNet(width=4)


# ---------------------------------------------------------------------------------------------------- grids, data


def test_lam_grid_shapes_and_order() -> None:
    sl = lam_grid(1, 5)
    assert sl.shape == (5, 1)
    np.testing.assert_array_equal(sl[:, 0], np.linspace(0, 1, 5))
    ao = lam_grid(2, 3)
    assert ao.shape == (9, 2)
    # row-major, lam1 varying slowest
    np.testing.assert_array_equal(ao[:4], [[0, 0], [0, 0.5], [0, 1], [0.5, 0]])
    np.testing.assert_array_equal(ao[:, 0].reshape(3, 3), np.repeat(np.linspace(0, 1, 3)[:, None], 3, 1))
    for bad in [(3, 5), (1, 1), (2, 0)]:
        with pytest.raises(ConfigError):
            lam_grid(*bad)


def test_from_arrays_is_deterministic_and_consistent() -> None:
    images = _images(3, 16)
    fm = CSMRI((16, 16), acceleration=4.0, noise_sigma=0.01)
    a = EvalData.from_arrays(images, None, fm, generator_seed=1)
    b = EvalData.from_arrays(images, None, fm, generator_seed=1)
    c = EvalData.from_arrays(images, None, fm, generator_seed=2)
    assert torch.equal(a.inputs, b.inputs) and not torch.equal(a.inputs, c.inputs)
    assert a.inputs.shape == (3, 2, 16, 16) and a.inputs.dtype == torch.float32
    np.testing.assert_array_equal(a.targets[:, 0].numpy(), images)
    torch.testing.assert_close(a.degraded, torch.sqrt(a.inputs[:, :1] ** 2 + a.inputs[:, 1:] ** 2))
    assert a.ids == ["0", "1", "2"]
    labels = np.zeros((3, 16, 16), dtype=np.uint8)
    assert EvalData.from_arrays(images, labels, fm, 1).labels.dtype == torch.int64
    with pytest.raises(DataError, match="labels"):
        EvalData.from_arrays(images, labels[:, :8], fm, 1)
    with pytest.raises(DataError, match="images"):
        EvalData.from_arrays(images[0], None, fm, 1)
    named = EvalData.from_arrays(images, labels, fm, 1, ids=["a", "b", "c"])
    part = named.subset([2, 0])
    assert part.ids == ["c", "a"] and torch.equal(part.inputs, named.inputs[[2, 0]])
    assert named.subset(slice(0, 2)).ids == ["a", "b"] and part.labels.shape == (2, 16, 16)


# ---------------------------------------------------------------------------------------------------- table


def _reference_metrics(recon: np.ndarray, target: np.ndarray, degraded: np.ndarray) -> dict[str, float]:
    """PSNR/SSIM from skimage, HFEN from scipy, MAE from numpy; float64."""
    r, t, d = (a.astype(np.float64) for a in (recon, target, degraded))
    log_t = gaussian_laplace(t, 1.5, truncate=7 / 1.5)
    ssim = structural_similarity(r, t, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    p = peak_signal_noise_ratio(t, r, data_range=1.0)
    return {
        "psnr": p,
        "rpsnr": p - peak_signal_noise_ratio(t, d, data_range=1.0),
        "ssim": ssim,
        "mae": float(np.abs(r - t).mean()),
        "hfen": float(np.linalg.norm(gaussian_laplace(r, 1.5, truncate=7 / 1.5) - log_t) / np.linalg.norm(log_t)),
    }


def test_table_layout_and_values_match_references(data32: EvalData) -> None:
    model = _unet()
    result = evaluate_model(model, "unet-0.25", data32, np.array([0.25]), METRICS, batch_size=2)
    table = result.table
    assert list(table.columns) == TABLE_COLUMNS
    assert len(table) == 1 * 3 * len(METRICS)
    assert (table["model"] == "unet-0.25").all() and (table["lam1"] == 0.25).all() and table["lam2"].isna().all()

    model.eval()
    with torch.no_grad():
        recon = model(data32.inputs).numpy()
    for i in range(3):
        ref = _reference_metrics(recon[i, 0], data32.targets[i, 0].numpy(), data32.degraded[i, 0].numpy())
        rows = table[table["slice"] == str(i)].set_index("metric")["value"]
        for name in METRICS:
            assert rows[name] == pytest.approx(ref[name], rel=1e-4, abs=1e-5), name


def test_table_rows_for_a_grid_and_progress(data32: EvalData) -> None:
    torch.manual_seed(0)
    model = HyperUNet(n_lams=2, hnet_width=2, width=4)
    lams = lam_grid(2, 2)
    calls: list[tuple[int, int]] = []
    result = evaluate_model(
        model, "hyper", data32, lams, ["psnr", "mae"], batch_size=2, progress=lambda d, t: calls.append((d, t))
    )
    table = result.table
    assert len(table) == 4 * 3 * 2
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    # λ-major, then slice, then metric
    assert table["lam1"].tolist()[:6] == [0.0] * 6 and table["lam2"].tolist()[6:12] == [1.0] * 6
    assert table["metric"].tolist()[:4] == ["psnr", "mae", "psnr", "mae"]
    # each λ's psnr equals psnr of reconstruct() at that λ
    for lam in lams:
        recon = reconstruct(model, data32.inputs, lam, batch_size=2)
        expect = psnr(recon, data32.targets).numpy()
        got = table[(table.lam1 == lam[0]) & (table.lam2 == lam[1]) & (table.metric == "psnr")]["value"]
        np.testing.assert_allclose(got.to_numpy(), expect, rtol=1e-5)
    assert result.seconds["inference_seconds_per_slice"] >= 0 and result.seconds["n_forward_slices"] == 12


def test_unet_evaluation_is_deterministic(data32: EvalData) -> None:
    model = _unet()
    a = evaluate_model(model, "u", data32, np.array([[0.5]]), METRICS, batch_size=2)
    b = evaluate_model(model, "u", data32, np.array([[0.5]]), METRICS, batch_size=3)
    pd.testing.assert_frame_equal(a.table, b.table, rtol=1e-6)
    assert model.training  # training flag restored


def test_hypernetwork_generates_weights_once_per_batch(data32: EvalData) -> None:
    torch.manual_seed(0)
    model = HyperUNet(n_lams=1, hnet_width=2, width=4)
    seen: list[int] = []
    hook = model.embed.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape[0]))
    lam = np.array([0.3])
    out = reconstruct(model, data32.inputs, lam, batch_size=2)
    hook.remove()
    assert seen == [1, 1]  # 2 batches, one distinct λ each: the weights are generated for one row
    assert out.shape == (3, 1, 32, 32) and out.dtype == torch.float32
    model.eval()
    with torch.no_grad():
        ref = model(data32.inputs, torch.full((3, 1), 0.3), path="reference")
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    low = reconstruct(model, data32.inputs, lam, batch_size=2, precision="bf16")
    assert low.dtype == torch.float32 and (low - ref).abs().max() < 0.1 * ref.abs().max() + 1e-3


def test_dice_rows_match_numpy(data32: EvalData) -> None:
    rng = np.random.default_rng(3)
    labels = torch.from_numpy(rng.integers(0, 3, (3, 32, 32)))
    data = EvalData(data32.inputs, data32.targets, data32.degraded, labels, data32.ids)
    torch.manual_seed(1)
    seg = UNet(in_channels=1, out_channels=3, width=4)
    model = ScaledMagnitude()
    result = evaluate_model(model, "m", data, np.array([[0.2], [0.9]]), ["psnr", "dice"], seg_model=seg, batch_size=2)
    assert len(result.table) == 2 * 3 * 2
    seg.eval()
    for lam in (0.2, 0.9):
        with torch.no_grad():
            recon = model(data.inputs, torch.full((3, 1), lam)).clamp(0, 1)
            pred = seg(recon).argmax(1).numpy()
        for i in range(3):
            scores = []
            for c in (1, 2):  # background excluded
                p, t = pred[i] == c, labels[i].numpy() == c
                denom = p.sum() + t.sum()
                scores.append(1.0 if denom == 0 else 2 * (p & t).sum() / denom)
            t = result.table
            got = t[(t.lam1 == lam) & (t.slice == str(i)) & (t.metric == "dice")]["value"]
            assert got.item() == pytest.approx(np.mean(scores), abs=1e-6)


def test_metrics_with_parameters_reach_the_table(data32: EvalData) -> None:
    """A built metric (SSIM in the fastMRI convention) is what the table holds: skimage's 7x7 uniform window with
    the target's maximum as data range, not the Wang convention of the plain name."""
    from hyperrecon.metrics import METRICS

    model = ScaledMagnitude()
    fastmri = METRICS.build("ssim", {"convention": "fastmri"})
    lams = np.array([[0.3]])
    table = evaluate_model(model, "m", data32, lams, [fastmri, "psnr"], batch_size=2).table
    plain = evaluate_model(model, "m", data32, lams, ["ssim"], batch_size=2).table
    with torch.no_grad():
        recon = model(data32.inputs, torch.full((3, 1), 0.3)).double().numpy()[:, 0]
    x = data32.targets.double().numpy()[:, 0]
    ref = [structural_similarity(recon[i], x[i], win_size=7, data_range=x[i].max()) for i in range(3)]
    got = table[table.metric == "ssim"]["value"].to_numpy()
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert np.abs(got - plain["value"].to_numpy()).max() > 1e-4
    seg = UNet(in_channels=1, out_channels=3, width=4)
    with pytest.raises(DataError, match="metric 'dice' needs label maps"):  # data32 has no labels
        evaluate_model(model, "m", data32, lams, ["dice"], seg_model=seg, batch_size=2)


def test_bad_inputs_raise_project_errors(data32: EvalData) -> None:
    model = _unet()
    with pytest.raises(UnknownNameError, match="psnrr"):
        evaluate_model(model, "u", data32, np.array([[0.5]]), ["psnrr"])
    with pytest.raises(ConfigError, match="dice"):
        evaluate_model(model, "u", data32, np.array([[0.5]]), ["dice"])
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        evaluate_model(model, "u", data32, np.array([[1.5]]), ["psnr"])
    with pytest.raises(ConfigError, match="conditioned"):
        reconstruct(ScaledMagnitude(), data32.inputs, None)
    with pytest.raises(ConfigError, match="precision"):
        reconstruct(model, data32.inputs, None, precision="fp8")
    with pytest.raises(DataError, match="degraded"):
        EvalData(data32.inputs, data32.targets, data32.degraded[:2])


# ---------------------------------------------------------------------------------------------------- range, diverse


def test_ranges_diverse_and_examples_on_a_lambda_dependent_model() -> None:
    data = EvalData.from_arrays(_images(4, 16, seed=2), None, Denoise((16, 16), sigma=0.1), generator_seed=0)
    model = ScaledMagnitude(n_lams=1)
    lams = lam_grid(1, 11)
    ranged = range_slice_indices(4, 2)
    assert ranged == [1, 3]
    # independent reconstructions of the range slices for every λ
    recons = {s: np.stack([(data.degraded[s, 0] * (0.5 + lam[0])).numpy() for lam in lams]) for s in ranged}
    gains = {
        s: rpsnr(
            torch.from_numpy(recons[s][:, None]),
            data.targets[s : s + 1].expand(11, -1, -1, -1),
            data.degraded[s : s + 1].expand(11, -1, -1, -1),
        ).numpy()
        for s in ranged
    }
    threshold = float(np.median(gains[1]))
    result = evaluate_model(
        model, "m", data, lams, ["psnr"], range_slices=2, rpsnr_threshold=threshold, diverse_quantile=0.7
    )
    for _, row in result.ranges.iterrows():
        s = row["slice_index"]
        above = gains[s] > threshold
        assert row["n_above"] == above.sum() and row["n_lams"] == 11
        if above.any():
            ref = pixel_range(recons[s][above])
            assert row["range_sum"] == pytest.approx(ref.sum, rel=1e-5)
            assert row["range_mean_per_pixel"] == pytest.approx(ref.mean_per_pixel, rel=1e-5)
        else:
            assert np.isnan(row["range_sum"])
    assert 0 < result.ranges.iloc[0]["n_above"] < 11

    scores = [float(psnr(torch.from_numpy(r[None, None]), data.targets[1:2])) for r in recons[1]]
    pair = diverse_pair(recons[1], scores, quantile=0.7)
    div = result.diverse
    assert div["slice_index"] == 1 and div["lam_a"] == lams[pair.i].tolist() and div["lam_b"] == lams[pair.j].tolist()
    assert div["distance"] == pytest.approx(pair.distance, rel=1e-5)
    np.testing.assert_allclose(div["image_a"], recons[1][pair.i], rtol=1e-6)
    assert div["metrics_b"]["psnr"] == pytest.approx(scores[pair.j], rel=1e-5)

    ex = result.examples
    np.testing.assert_array_equal(ex["lams"][:, 0], [0.0, 0.2, 0.5, 0.8, 1.0])
    np.testing.assert_allclose(ex["recons"], recons[1][[0, 2, 5, 8, 10]], rtol=1e-6)
    assert ex["target"].shape == (16, 16) and ex["slice_index"] == 1


def test_examples_follow_the_diagonal_of_a_square_grid() -> None:
    data = EvalData.from_arrays(_images(1, 16), None, Denoise((16, 16)), generator_seed=0)
    result = evaluate_model(ScaledMagnitude(n_lams=2), "m", data, lam_grid(2, 9), ["mae"], rpsnr_threshold=1e9)
    np.testing.assert_allclose(result.examples["lams"], [[v, v] for v in (0, 0.25, 0.5, 0.75, 1.0)])
    assert result.ranges.iloc[0]["n_above"] == 0 and np.isnan(result.ranges.iloc[0]["range_sum"])


def test_single_lambda_has_no_diverse_pair(data32: EvalData) -> None:
    result = evaluate_model(_unet(), "u", data32, np.array([0.5]), ["psnr"])
    assert result.diverse == {} and result.examples["recons"].shape == (1, 32, 32)


# ---------------------------------------------------------------------------------------------------- landscapes


def _synthetic_table(model: str, lams: np.ndarray, fn, n_slices: int = 3) -> pd.DataFrame:
    rows = []
    for lam in lams:
        for s in range(n_slices):
            value = fn(lam) + (s - (n_slices - 1) / 2) * 0.1  # slice offsets average to 0
            lam2 = lam[1] if lam.size > 1 else np.nan
            rows.append(
                {"model": model, "lam1": lam[0], "lam2": lam2, "slice": str(s), "metric": "psnr", "value": value}
            )
            rows.append(
                {"model": model, "lam1": lam[0], "lam2": lam2, "slice": str(s), "metric": "mae", "value": -value}
            )
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def test_landscape_and_curve_equal_groupby_means() -> None:
    torch.manual_seed(0)
    data = EvalData.from_arrays(_images(3, 16), None, Denoise((16, 16)), generator_seed=0)
    ao = evaluate_model(HyperUNet(n_lams=2, hnet_width=2, width=4), "h", data, lam_grid(2, 3), ["psnr"]).table
    axis, grid = landscape(ao, "h", "psnr")
    np.testing.assert_array_equal(axis, [0, 0.5, 1])
    means = ao.groupby(["lam1", "lam2"])["value"].mean()
    for i, a in enumerate(axis):
        for j, b in enumerate(axis):
            assert grid[i, j] == pytest.approx(means[(a, b)], rel=1e-12)

    sl = evaluate_model(ScaledMagnitude(), "m", data, lam_grid(1, 4), ["psnr", "mae"]).table
    lam, mean, std = curve(sl, "m", "mae")
    ref = sl[sl.metric == "mae"].groupby("lam1")["value"]
    np.testing.assert_allclose(lam, lam_grid(1, 4)[:, 0])
    np.testing.assert_allclose(mean, ref.mean().to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(std, ref.std().to_numpy(), rtol=1e-12)
    with pytest.raises(ConfigError, match="landscape"):
        curve(ao, "h", "psnr")
    with pytest.raises(ConfigError, match="no rows"):
        landscape(ao, "other", "psnr")


def test_interpolate_baselines_is_exact_for_linear_functions() -> None:
    def linear(lam: np.ndarray) -> float:
        return 2.0 + 3.0 * lam[0] - lam[-1] * (lam.size > 1)

    axis = np.array([0.0, 0.1, 0.3, 0.7, 1.0])  # non-uniform, like the paper's baseline grid
    grid2 = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    table = pd.concat([_synthetic_table(f"unet-{i}", lam[None], linear) for i, lam in enumerate(grid2)])
    eval_axis = np.linspace(0, 1, 13)
    got = interpolate_baselines(table, "psnr", eval_axis)
    assert got.shape == (13, 13)
    np.testing.assert_allclose(got, 2 + 3 * eval_axis[:, None] - eval_axis[None, :], atol=1e-12)

    table1 = pd.concat([_synthetic_table(f"unet-{v}", np.array([[v]]), linear) for v in axis])
    np.testing.assert_allclose(interpolate_baselines(table1, "psnr", eval_axis), 2 + 3 * eval_axis, atol=1e-12)
    with pytest.raises(ConfigError, match="full product grid"):
        interpolate_baselines(table.iloc[6:], "psnr", eval_axis)


def test_fraction_above_on_a_hand_made_grid() -> None:
    grid = np.array([[0.0, 1.0], [2.0, np.nan]])
    assert fraction_above(grid, [0.5, 1.5, -1.0, 2.0]) == {0.5: 2 / 3, 1.5: 1 / 3, -1.0: 1.0, 2.0: 0.0}
