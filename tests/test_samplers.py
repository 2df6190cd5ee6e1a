"""Training-time λ samplers: UHS, DHS (top-K by data consistency), fixed; grouping; registry contract."""

from __future__ import annotations

import io

import pytest
import torch

from hyperrecon.errors import ConfigError
from hyperrecon.samplers import SAMPLERS, DHSSampler, FixedSampler, UniformSampler


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------ registry contract


# The registry contract of every sampler: tests/test_contracts.py (hyperrecon.testing.contracts.check_sampler).


# ------------------------------------------------------------------------------------------ uniform


def test_uniform_is_uniform_and_seeded() -> None:
    lam = UniformSampler().sample(20000, 2, gen(3), 0)
    assert abs(float(lam.mean()) - 0.5) < 0.01
    assert abs(float(lam.var()) - 1 / 12) < 0.003
    assert len(torch.unique(lam, dim=0)) == 20000  # one λ per sample
    torch.testing.assert_close(lam, torch.rand(20000, 2, generator=gen(3)))


def test_uniform_reduce_is_mean() -> None:
    total = torch.tensor([1.0, 2.0, 3.0, 6.0])
    assert float(UniformSampler().reduce(total, None, 0)) == pytest.approx(3.0)


@pytest.mark.parametrize("groups", [1, 2, 4, 8])
def test_groups_give_g_distinct_contiguous_lams(groups: int) -> None:
    lam = UniformSampler(groups=groups).sample(8, 2, gen(5), 0)
    assert len(torch.unique(lam, dim=0)) == groups
    blocks = lam.view(groups, 8 // groups, 2)
    assert torch.equal(blocks, blocks[:, :1].expand_as(blocks)), "each λ covers a contiguous block of B/G samples"


def test_groups_must_divide_batch() -> None:
    with pytest.raises(ConfigError, match="divisible"):
        UniformSampler(groups=3).sample(8, 1, gen(), 0)
    with pytest.raises(ConfigError, match="groups"):
        UniformSampler(groups=0)
    with pytest.raises(ConfigError, match="groups"):
        SAMPLERS.build("dhs", {"groups": 3}).validate(32)


# ------------------------------------------------------------------------------------------ DHS


def test_dhs_keeps_exactly_the_k_lowest_dc_and_only_they_get_gradient() -> None:
    sampler = DHSSampler(top_k=3)
    lam = sampler.sample(8, 2, gen(7), 0)
    dc = torch.tensor([5.0, 0.3, 9.0, 0.1, 4.0, 0.2, 7.0, 8.0])
    total = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], requires_grad=True)
    loss = sampler.reduce(total, dc, step=0)
    assert float(loss.detach()) == pytest.approx((2.0 + 4.0 + 6.0) / 3)
    loss.backward()
    expected = torch.zeros(8)
    expected[[1, 3, 5]] = 1 / 3
    torch.testing.assert_close(total.grad, expected)
    assert sorted(sampler.last_kept.tolist()) == [1, 3, 5]
    torch.testing.assert_close(sampler.kept_lams(), lam[[3, 5, 1]])  # recorded in ascending-DC order


def test_dhs_gradient_reaches_only_kept_inputs() -> None:
    """Through a per-sample computation, inputs of dropped samples get exactly zero gradient."""
    x = torch.randn(8, 1, 4, 4, generator=gen(1), requires_grad=True)
    w = torch.tensor(0.7, requires_grad=True)
    total = (w * x).square().flatten(1).mean(1)
    dc = total.detach().clone()  # rank by the same values: the 2 smallest
    sampler = DHSSampler(top_k=2)
    sampler.sample(8, 1, gen(), 0)
    sampler.reduce(total, dc, step=0).backward()
    kept = set(torch.topk(dc, 2, largest=False).indices.tolist())
    for i in range(8):
        nonzero = bool(x.grad[i].abs().sum() > 0)
        assert nonzero == (i in kept)


def test_dhs_default_k_is_quarter_batch_and_warmup_is_uhs() -> None:
    sampler = DHSSampler(warmup_steps=2)
    assert sampler.k_for(32) == 8 and sampler.k_for(3) == 1
    sampler.sample(32, 1, gen(), 0)
    total = torch.arange(32, dtype=torch.float32)
    dc = torch.arange(32, dtype=torch.float32).flip(0)
    assert float(sampler.reduce(total, dc, step=0)) == pytest.approx(15.5)  # warm-up: batch mean
    assert float(sampler.reduce(total, dc, step=1)) == pytest.approx(15.5)
    assert float(sampler.reduce(total, dc, step=2)) == pytest.approx(sum(range(24, 32)) / 8)  # 8 lowest DC
    assert sampler.kept_lams().shape == (32 + 32 + 8, 1)
    assert sampler.kept_lams(since_step=2).shape == (8, 1)


def test_dhs_rejects_bad_settings() -> None:
    with pytest.raises(ConfigError, match="no 'dc' term"):
        SAMPLERS.build("dhs", {}, has_dc=False)
    with pytest.raises(ConfigError, match="top_k"):
        DHSSampler(top_k=0)
    with pytest.raises(ConfigError, match="top_k=9 with batch_size=8"):
        DHSSampler(top_k=9).validate(8)
    with pytest.raises(ConfigError, match="warmup_steps"):
        DHSSampler(warmup_steps=-1)
    sampler = DHSSampler(top_k=2)
    sampler.sample(4, 1, gen(), 0)
    with pytest.raises(ConfigError, match="data-consistency"):
        sampler.reduce(torch.ones(4), None, step=0)


def test_dhs_history_state_round_trip_and_limit() -> None:
    sampler = DHSSampler(top_k=2, history_limit=5)
    for step in range(4):
        sampler.sample(4, 1, gen(step), step)
        sampler.reduce(torch.rand(4), torch.rand(4), step)
    assert sampler.kept_lams().shape[0] == 6  # trimmed per step: keeps >= limit rows, whole steps only
    assert len(sampler.kept_history) == 3
    buf = io.BytesIO()
    torch.save(sampler.state_dict(), buf)
    buf.seek(0)
    fresh = DHSSampler(top_k=2, history_limit=5)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    torch.testing.assert_close(fresh.kept_lams(), sampler.kept_lams())
    torch.testing.assert_close(fresh.kept_lams(since_step=3), sampler.kept_lams(since_step=3))


# ------------------------------------------------------------------------------------------ fixed


def test_fixed_sampler() -> None:
    assert torch.equal(FixedSampler(0.25).sample(3, 2, gen(), 0), torch.full((3, 2), 0.25))
    assert torch.equal(FixedSampler([0.1, 0.9]).sample(2, 2, gen(), 0), torch.tensor([[0.1, 0.9], [0.1, 0.9]]))
    with pytest.raises(ConfigError, match="k=1"):
        FixedSampler([0.1, 0.9]).sample(2, 1, gen(), 0)
    with pytest.raises(ConfigError, match="0 <= lam <= 1"):
        FixedSampler(1.5)
    with pytest.raises(ConfigError, match="has no parameter 'lamda'"):
        SAMPLERS.build("fixed", {"lamda": 0.5})
