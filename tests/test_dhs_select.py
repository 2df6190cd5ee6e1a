"""DHS under λ groups ranks the λ, not the images; the kept-λ uniformity test (issue 15, item 1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from hyperrecon.dhs_check import kept_uniformity
from hyperrecon.errors import ConfigError
from hyperrecon.samplers import DHSSampler


def run_dhs(
    sampler: DHSSampler,
    dc_of_lam,
    *,
    steps: int = 300,
    batch: int = 16,
    k: int = 1,
    image_sd: float = 1.0,
    seed: int = 0,
) -> np.ndarray:
    """Drive ``sampler`` with a hand-made per-sample DC = dc_of_lam(λ) + an image 'difficulty' drawn per sample."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.Generator().manual_seed(seed + 100)
    for step in range(steps):
        lam = sampler.sample(batch, k, gen, step)
        dc = dc_of_lam(lam) + image_sd * torch.randn(batch, generator=noise).abs()
        total = torch.ones(batch, requires_grad=True)
        sampler.reduce(total, dc, step).backward()
    return sampler.kept_lams().numpy()


def favour_high(lam: torch.Tensor) -> torch.Tensor:
    """Data consistency improves as λ1 (the DC weight) grows: lowest near λ1 = 1."""
    return 2.0 * (1.0 - lam[:, 0])


def test_grouped_dhs_ranks_lams_by_group_mean_dc() -> None:
    sampler = DHSSampler(top_k=4, groups=4)
    lam = sampler.sample(16, 1, torch.Generator().manual_seed(3), 0)
    dc = torch.tensor([9.0, 9, 9, 9, 0.1, 5, 5, 5, 1, 1, 1, 1, 0.0, 9, 9, 9])  # group means 9, 3.775, 1, 6.75
    total = torch.arange(16, dtype=torch.float32, requires_grad=True)
    loss = sampler.reduce(total, dc, step=0)
    assert sampler.last_kept.tolist() == [8, 9, 10, 11]  # the whole block of the λ with lowest mean, not samples 4, 12
    assert float(loss.detach()) == pytest.approx((8 + 9 + 10 + 11) / 4)
    loss.backward()
    expected = torch.zeros(16)
    expected[8:12] = 0.25
    torch.testing.assert_close(total.grad, expected)
    torch.testing.assert_close(sampler.kept_lams(), lam[8:9])  # one row per kept λ
    assert sampler.kept_steps().tolist() == [0]


@pytest.mark.parametrize(
    ("batch", "groups", "top_k", "expected"),
    [(16, 4, 4, 1), (32, 8, 8, 2), (16, 4, 8, 2), (16, 8, 1, 1), (16, 2, 16, 2)],
)
def test_groups_kept_is_rounded_share(batch: int, groups: int, top_k: int, expected: int) -> None:
    assert DHSSampler(top_k=top_k, groups=groups).groups_kept(batch) == expected


def test_dhs_rejects_one_group() -> None:
    with pytest.raises(ConfigError, match="groups >= 2"):
        DHSSampler(groups=1).validate(8)


def test_kept_lams_differ_from_uniform_when_the_loss_favours_a_region() -> None:
    """Image difficulty (sd 1) is as large as the λ effect (range 2): group ranking still selects high λ1."""
    kept = run_dhs(DHSSampler(top_k=4, groups=4), favour_high)
    check = kept_uniformity(kept)
    assert check.n == 300 and check.verdict == "selects" and check.p_value < 1e-6
    assert check.mean[0] > 0.65  # the favoured region
    # independent reference: scipy's KS test on the same rows
    assert check.ks[0] == pytest.approx(stats.kstest(kept[:, 0], "uniform").statistic)


def test_flat_loss_is_flagged_as_selecting_nothing() -> None:
    kept = run_dhs(DHSSampler(top_k=4, groups=4), lambda lam: torch.zeros(lam.shape[0]))
    check = kept_uniformity(kept)
    assert check.verdict == "selects nothing" and not check.selects and check.p_value >= 0.01


def test_per_sample_ranking_under_groups_would_keep_easy_images_not_lams() -> None:
    """The issue's failure, reproduced by hand: ranking single samples when their λ is shared by 4 images with
    large difficulty spread keeps λ almost uniformly; ranking the λ (group means) does not."""
    gen = torch.Generator().manual_seed(0)
    noise = torch.Generator().manual_seed(1)
    per_sample = []
    for _ in range(300):
        lam = torch.rand(4, 1, generator=gen).repeat_interleave(4, 0)
        dc = 0.3 * (1 - lam[:, 0]) + 3.0 * torch.randn(16, generator=noise).abs()
        per_sample.append(torch.unique(lam[torch.topk(dc, 4, largest=False).indices]))
    flat = kept_uniformity(torch.cat(per_sample).numpy()[:, None])
    grouped = kept_uniformity(
        run_dhs(DHSSampler(top_k=4, groups=4), lambda lam: 0.3 * (1 - lam[:, 0]), image_sd=3.0, steps=600)
    )
    assert grouped.statistic > flat.statistic


def test_warmup_rows_are_not_tested() -> None:
    sampler = DHSSampler(top_k=4, groups=4, warmup_steps=100)
    kept = run_dhs(sampler, favour_high, steps=200)
    steps = sampler.kept_steps().numpy()
    assert len(kept) == 100 * 4 + 100 * 1  # warm-up keeps every λ of the batch
    after = kept_uniformity(kept, steps, warmup_steps=100)
    assert after.n == 100 and after.selects
    diluted = kept_uniformity(kept)
    assert diluted.statistic < after.statistic


def test_joint_histogram_catches_what_the_marginals_miss() -> None:
    """λ on the anti-diagonal band λ2 ≈ 1 - λ1: both marginals uniform, the joint distribution far from it."""
    rng = np.random.default_rng(0)
    a = rng.uniform(size=400)
    lams = np.stack([a, np.clip(1 - a + rng.uniform(-0.02, 0.02, size=400), 0, 1)], 1)
    check = kept_uniformity(lams)
    assert max(check.ks_p) > 0.01 or min(check.ks) < 0.1  # the marginals look uniform
    assert check.chi2_p is not None and check.chi2_p < 1e-6 and check.selects
    # hand check of the χ² statistic on the 5 x 5 grid
    counts, _, _ = np.histogram2d(lams[:, 0], lams[:, 1], bins=5, range=[[0, 1], [0, 1]])
    assert check.chi2 == pytest.approx(((counts - 16) ** 2 / 16).sum())


def test_uniform_draws_pass_and_small_samples_are_too_few() -> None:
    rng = np.random.default_rng(5)
    assert kept_uniformity(rng.uniform(size=(500, 2))).verdict == "selects nothing"
    assert kept_uniformity(rng.uniform(size=(10, 1))).verdict == "too few"
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        kept_uniformity(np.array([[1.5]] * 30))


class _KeptOnly:
    """The two things the report's DHS analysis reads from a run: kept λ rows and their steps."""

    def __init__(self, lams: np.ndarray, steps: np.ndarray, warmup: int) -> None:
        self.conditional = ["hyper-S-dhs"]
        self._lams, self._steps, self._warmup = lams, steps, warmup

    def dhs_kept(self, model: str) -> np.ndarray:
        return self._lams

    def dhs_kept_steps(self, model: str) -> tuple[np.ndarray, int]:
        return self._steps, self._warmup


def test_the_report_table_and_figure_leave_out_the_warmup_rows() -> None:
    """The standard AO profiles warm DHS up with 200 UHS steps (4 λ a step) before 600 DHS steps (1 λ a step):
    the table's mean / std / count and the histogram must describe the 600 DHS rows the test judges, not a
    mixture in which the 800 uniform rows dominate."""
    from hyperrecon.reporting.analysis import dhs_analysis

    sampler = DHSSampler(top_k=4, groups=4, warmup_steps=200)
    kept = run_dhs(sampler, favour_high, steps=800)
    steps = sampler.kept_steps().numpy()
    result = dhs_analysis(_KeptOnly(kept, steps, 200))  # type: ignore[arg-type]
    assert result is not None
    stats_ = result["stats"]["hyper-S-dhs"]
    after = kept[steps >= 200]
    assert stats_["n"] == len(after) == 600 and stats_["warmup_steps"] == 200
    assert stats_["mean"] == pytest.approx(after.mean(0).tolist())
    assert stats_["std"] == pytest.approx(after.std(0).tolist())
    assert len(result["kept"]["hyper-S-dhs"]) == 600  # what the histogram draws
    assert stats_["mean"][0] > kept.mean(0)[0] + 0.05  # the warm-up rows would have pulled it towards 0.5
