"""Per-λ BatchNorm statistics at evaluation (hyperrecon.models.bn_calibration; issue 15, item 2).

References: the statistics of each BatchNorm's input, captured with forward hooks in a train-mode pass and
computed with torch.mean / torch.var (unbiased, as BatchNorm stores it); the wrapped model's output equals a
model whose buffers were set by hand.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from hyperrecon.cli import app
from hyperrecon.metrics import psnr
from hyperrecon.models import FiLMUNet, HyperUNet, UNet
from hyperrecon.models.bn_calibration import PerLamBatchNorm, batch_norms, needs_calibration

runner = CliRunner()


def _trained_like(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BatchNorm running statistics that differ from the defaults, as training would."""
    g = torch.Generator().manual_seed(seed)
    for bn in batch_norms(model):
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=g) * 0.1)
        bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
        bn.num_batches_tracked.fill_(500)
    return model.eval()


def _inputs(n: int, size: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 2, size, size, generator=torch.Generator().manual_seed(seed)).double()


def _bn_input_stats(model: torch.nn.Module, x: torch.Tensor, lam: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
    """Mean and unbiased variance per channel of every BatchNorm's input in one train-mode pass (batch stats)."""
    seen: list[torch.Tensor] = []
    hooks = [bn.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach())) for bn in batch_norms(model)]
    model.train()
    with torch.no_grad():
        model(x, lam.view(1, -1).expand(x.shape[0], -1))
    model.eval()
    for h in hooks:
        h.remove()
    return [(h.mean(dim=(0, 2, 3)), h.var(dim=(0, 2, 3), unbiased=True)) for h in seen]


@pytest.mark.parametrize(
    "make",
    [lambda: HyperUNet(1, hnet_width=3, width=4), lambda: FiLMUNet(2, width=4, hidden=8)],
    ids=["hyper", "film"],
)
def test_statistics_at_a_lam_are_those_of_the_calibration_batch(make) -> None:
    torch.manual_seed(0)
    model = _trained_like(make().double())
    x = _inputs(6)
    lam = torch.full((model.n_lams,), 0.8, dtype=torch.float64)
    # reference on an independent copy: the wrapper must not depend on what the pass does to the buffers
    ref_model = _trained_like(make().double())
    ref_model.load_state_dict(model.state_dict())
    reference = _bn_input_stats(ref_model, x, lam)
    wrapped = PerLamBatchNorm(model, x, batch_size=64)
    stats = wrapped.stats_for(lam)
    assert len(stats) == len(reference) == 14
    for (mean, var, count), (ref_mean, ref_var) in zip(stats, reference, strict=True):
        torch.testing.assert_close(mean, ref_mean, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(var, ref_var, rtol=1e-9, atol=1e-12)
        assert int(count) == 1


def test_chunks_average_their_statistics() -> None:
    """Two calibration passes: the recorded mean is the average of the two passes' means (momentum None)."""
    torch.manual_seed(0)
    model = _trained_like(HyperUNet(1, hnet_width=3, width=4).double())
    x = _inputs(8)
    lam = torch.tensor([0.3], dtype=torch.float64)
    first = _bn_input_stats(model, x[:4], lam)
    second = _bn_input_stats(model, x[4:], lam)
    _trained_like(model)
    stats = PerLamBatchNorm(model, x, batch_size=4).stats_for(lam)
    for (mean, var, count), (m1, v1), (m2, v2) in zip(stats, first, second, strict=True):
        torch.testing.assert_close(mean, (m1 + m2) / 2, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(var, (v1 + v2) / 2, rtol=1e-9, atol=1e-12)
        assert int(count) == 2


def test_output_is_the_model_in_eval_mode_with_the_lam_statistics() -> None:
    torch.manual_seed(0)
    model = _trained_like(HyperUNet(1, hnet_width=3, width=4).double())
    x, test = _inputs(6), _inputs(3, seed=5)
    lam = torch.tensor([[0.1]], dtype=torch.float64).expand(3, -1)
    wrapped = PerLamBatchNorm(model, x).eval()
    out = wrapped(test, lam)
    stats = wrapped.stats_for(lam[0])
    manual = HyperUNet(1, hnet_width=3, width=4).double()
    manual.load_state_dict(model.state_dict())
    wrapped.restore()
    for bn, (mean, var, _count) in zip(batch_norms(manual), stats, strict=True):
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
    torch.testing.assert_close(out, manual.eval()(test, lam))


def test_a_mixed_batch_gives_each_row_its_own_lam() -> None:
    torch.manual_seed(0)
    model = _trained_like(HyperUNet(1, hnet_width=3, width=4).double())
    wrapped = PerLamBatchNorm(model, _inputs(6)).eval()
    test = _inputs(4, seed=7)
    lam = torch.tensor([[0.0], [1.0], [0.0], [0.5]], dtype=torch.float64)
    mixed = wrapped(test, lam)
    for i in range(4):
        torch.testing.assert_close(mixed[i : i + 1], wrapped(test[i : i + 1], lam[i : i + 1]))


def test_statistics_are_cached_per_lam_and_restore_puts_the_trained_ones_back() -> None:
    torch.manual_seed(0)
    model = _trained_like(HyperUNet(1, hnet_width=3, width=4).double())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    wrapped = PerLamBatchNorm(model, _inputs(5), batch_size=2).eval()
    passes = []
    model.register_forward_hook(lambda m, args, out: passes.append(m.training))
    lam = torch.tensor([[0.25]], dtype=torch.float64)
    wrapped(_inputs(1, seed=3), lam)
    assert passes == [True, True, True, False]  # 3 calibration passes of <= 2 slices, then the evaluation
    wrapped(_inputs(1, seed=4), lam)
    assert passes[4:] == [False]  # a λ seen before costs one pass
    assert not model.training and all(not bn.training for bn in batch_norms(model))
    wrapped.restore()
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_the_calibration_helps_a_model_whose_running_statistics_do_not_fit_its_lam() -> None:
    """A model trained on λ = 0 only: its statistics at λ = 1 are those of another network; re-estimating them
    at λ = 1 on the same distribution as the test slices brings the output closer to the train-mode one (what is
    left is the sampling noise of 32 slices of 16 x 16 in a 4-channel net: about half of the error here)."""
    torch.manual_seed(0)
    model = HyperUNet(1, hnet_width=3, width=4).double()
    x = _inputs(32)
    model.train()
    with torch.no_grad():
        for _ in range(30):  # running statistics at λ = 0
            model(x, torch.zeros(32, 1, dtype=torch.float64))
    model.eval()
    test = _inputs(32, seed=9)
    ones = torch.ones(32, 1, dtype=torch.float64)
    model.train()
    with torch.no_grad():
        batch_mode = model(test, ones)  # BatchNorm on the test batch's own statistics at λ = 1
    model.eval()
    running = model(test, ones)
    calibrated = PerLamBatchNorm(model, x).eval()(test, ones)
    assert (calibrated - batch_mode).abs().mean() < 0.6 * (running - batch_mode).abs().mean()


def test_which_models_need_it() -> None:
    assert needs_calibration(HyperUNet(1, hnet_width=3, width=4))
    assert needs_calibration(HyperUNet(1, hnet_width=3, width=4, norm="lam-affine"))
    assert not needs_calibration(HyperUNet(1, hnet_width=3, width=4, norm="instance"))  # no running statistics used
    assert needs_calibration(FiLMUNet(1, width=4, hidden=8))
    assert not needs_calibration(UNet(width=4))  # one λ: its running statistics are its own
    with pytest.raises(ValueError, match="not λ-conditioned"):
        PerLamBatchNorm(UNet(width=4), _inputs(2))
    with pytest.raises(ValueError, match="inputs must be"):
        PerLamBatchNorm(HyperUNet(1, hnet_width=3, width=4), torch.zeros(0, 2, 8, 8))


def test_a_run_with_bn_calibration_evaluates_with_it(tmp_path: Path) -> None:
    """The results of a run with ``evaluation.bn_calibration`` are those of the calibrated model (recomputed here
    from the saved weights), not those of its running statistics."""
    out = tmp_path / "run"
    args = ["run", "--study", "sl-knee-cs", "--profile", "smoke", "--out", str(out), "--device", "cpu", "--no-report"]
    small = [
        "train.precision=fp32",  # exact comparison
        "hyper.film=false",
        "segmentation.enabled=false",
        "baselines.grid=[0.0, 1.0]",
        'search.strategies=["grid"]',
        "search.objective_pairs=[]",
    ]
    sets = [v for s in ["evaluation.bn_calibration=3", *small] for v in ("--set", s)]
    result = runner.invoke(app, [*args, *sets])
    assert result.exit_code == 0, result.output
    from hyperrecon.runs.context import RunContext
    from hyperrecon.runs.folder import RunFolder
    from hyperrecon.runs.orchestrate import study_from_dict_resolved

    info = RunFolder(out).read_info()
    study = study_from_dict_resolved(info.study)
    ctx = RunContext(info.folder.root, study, "cpu", "fp32")
    model = ctx.load_model("hyper-S-uniform")
    assert isinstance(model, PerLamBatchNorm) and model.calibration_inputs.shape[0] == 3
    assert not isinstance(ctx.load_model("baseline-0"), PerLamBatchNorm)
    res = pd.read_csv(out / "results.csv")
    res = res[(res.model == "hyper-S-uniform") & (res.metric == "psnr") & (res.replicate == 0)]
    data = ctx.eval_data("test", study.evaluation.n_test)
    saved, calibrated, running = [], [], []
    with torch.no_grad():
        for lam in sorted(res.lam1.unique()):
            by_slice = res[res.lam1 == lam].set_index("slice").value
            saved.extend(by_slice[data.ids])
            lam_rows = torch.full((len(data), 1), float(lam))
            calibrated.extend(psnr(model(data.inputs, lam_rows), data.targets).tolist())
            model.restore()
            running.extend(psnr(model.model(data.inputs, lam_rows), data.targets).tolist())
    assert len(saved) == len(calibrated) >= 3 * len(data)
    np.testing.assert_allclose(saved, calibrated, atol=1e-3)  # dB
    assert np.max(np.abs(np.subtract(saved, running))) > 0.3


@pytest.mark.parametrize(
    "make",
    [lambda: HyperUNet(1, hnet_width=3, width=4), lambda: FiLMUNet(1, width=4, hidden=8)],
    ids=["hyper", "film"],
)
def test_batch_statistics_normalise_with_the_batch_and_leave_the_model_as_it_was(make) -> None:
    """FiLM folds BatchNorm into its modulation whenever the model is in eval mode: switching only the BatchNorm
    layers to train mode would leave it on the running statistics (the fault this helper replaced)."""
    from hyperrecon.models.bn_calibration import batch_statistics

    torch.manual_seed(0)
    model = _trained_like(make().double())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, lam = _inputs(4), torch.full((4, 1), 0.7, dtype=torch.float64)
    reference = make().double()
    reference.load_state_dict(model.state_dict())
    with torch.no_grad():
        expected = reference.train()(x, lam)  # train mode: every BatchNorm on the batch's statistics
        with batch_statistics(model):
            got = model(x, lam)
        running = model(x, lam)
    torch.testing.assert_close(got, expected)
    assert (got - running).abs().max() > 1e-3  # the running statistics give another output
    assert not any(m.training for m in model.modules())
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
