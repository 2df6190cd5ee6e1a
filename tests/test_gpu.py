"""The GPU path: precision choice, pinned staging, host copies of λ, device-side finiteness, per-job peak memory.

CPU tests check what runs here against plain references (indexing, a per-step check, capability tables); the
``gpu``-marked tests (skipped without CUDA) check the CUDA-only behaviour: device auto-pick, bf16 autocast chosen on
Ampere+, CUDA-event time, peak memory, no host synchronisation inside a training step, a smoke study on the GPU.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch

from hyperrecon import accel
from hyperrecon.errors import TrainingError
from hyperrecon.finite import FiniteWatch
from hyperrecon.losses import CompositeLoss
from hyperrecon.models import FiLMUNet, HyperUNet, UNet
from hyperrecon.physics import CSMRI
from hyperrecon.resolve import resolve_device, resolve_precision
from hyperrecon.samplers import FixedSampler, UniformSampler
from hyperrecon.tasks import ReconTask, SegTask
from hyperrecon.timing import DeviceTimer, add_job_peaks, peak_memory_mb, reset_peak_memory
from hyperrecon.training import TrainSettings, train

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
SIZE, N = 32, 12


def recon_task(seed: int = 0, terms: tuple[str, ...] = ("mae", "ssim")) -> ReconTask:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(N, 1, SIZE, SIZE, generator=g)
    physics = CSMRI((SIZE, SIZE), acceleration=4.0, mask_seed=seed)
    y = physics.measure(x, generator=g)
    return ReconTask(physics.network_input(y), x, y, physics, CompositeLoss(list(terms)))


# ------------------------------------------------------------------------------------------ CPU


def test_stage_equals_plain_indexing_on_the_cpu() -> None:
    src = torch.arange(60, dtype=torch.float32).reshape(6, 2, 5)
    idx = torch.tensor([4, 0, 4, 2])
    torch.testing.assert_close(accel.stage(src, idx, "cpu"), src[idx], rtol=0, atol=0)
    assert accel.stage(src, None, "cpu") is src


def test_host_copy_is_kept_until_the_tensor_changes() -> None:
    host = torch.tensor([[0.25], [0.75]])
    assert accel.with_host_copy(host, "cpu") is host and accel.host_copy(host) is host
    dev = host.clone()  # stands in for a device copy
    setattr(dev, accel._HOST_ATTR, host)
    assert accel.host_copy(dev) is host
    dev.add_(1.0)  # changed after staging: the host copy no longer describes it
    assert accel.host_copy(dev) is dev


def test_lam_checks_and_grouping_read_the_host_copy() -> None:
    """The model's λ range check and grouping use the host copy (here deliberately different, to see it is read)."""
    host = torch.tensor([[0.2], [0.2], [0.9], [0.2]])
    dev = torch.tensor([[0.1], [0.3], [0.5], [0.7]])
    setattr(dev, accel._HOST_ATTR, host)
    perm, first, sizes, inverse = HyperUNet.group(dev)
    assert sizes == [3, 1] and inverse.tolist() == [0, 0, 1, 0] and perm.tolist() == [0, 1, 3, 2]
    assert first.tolist() == [0, 2]
    bad = torch.tensor([[0.5]])
    setattr(bad, accel._HOST_ATTR, torch.tensor([[1.5]]))
    with pytest.raises(Exception, match=r"lam must lie in \[0, 1\]"):
        FiLMUNet(1, width=4)(torch.zeros(1, 2, 16, 16), bad)


def test_label_range_check_reads_the_host_copy() -> None:
    """The soft Dice loss checks a staged batch's labels on its host copy (here different, to see it is read)."""
    from hyperrecon.metrics import soft_dice_loss

    probs = torch.full((1, 3, 4, 4), 1 / 3)
    labels = torch.zeros(1, 4, 4, dtype=torch.int64)
    setattr(labels, accel._HOST_ATTR, torch.full((1, 4, 4), 7))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\), got min 7, max 7"):
        soft_dice_loss(probs, labels)
    plain = torch.zeros(1, 4, 4, dtype=torch.int64)
    plain[0, 0, 0] = 3
    with pytest.raises(ValueError, match="got min 0, max 3"):  # without a host copy the tensor itself is read
        soft_dice_loss(probs, plain)


def test_finite_watch_names_the_first_bad_step_and_its_terms() -> None:
    watch = FiniteWatch()
    ok = {"mae": torch.ones(4), "ssim": torch.ones(4)}
    watch.add(1, torch.tensor(1.0), torch.ones(4), ok, torch.arange(4))
    watch.add(
        2,
        torch.tensor(float("nan")),
        torch.ones(4),
        {"mae": torch.ones(4), "ssim": torch.tensor([1, float("nan"), 1, 1])},
        torch.tensor([5, 6, 7, 8]),
    )
    watch.add(
        3,
        torch.tensor(float("inf")),
        torch.ones(4),
        {"mae": torch.full((4,), float("inf")), "ssim": torch.ones(4)},
        torch.arange(4),
    )
    step, terms, idx = watch.first_bad()
    assert (step, terms, idx.tolist()) == (2, ["ssim"], [5, 6, 7, 8])
    assert len(watch) == 0 and watch.first_bad() is None
    watch.add(4, torch.tensor(1.0), torch.ones(4), ok, torch.arange(4))
    watch.check(10, recon_task())  # all finite: no error, record cleared
    assert len(watch) == 0


@pytest.mark.parametrize("log_every", [1, 7, 50])
def test_non_finite_step_is_the_same_whether_checked_every_step_or_per_log(log_every: int) -> None:
    """Checked per log window, the error names the same step as a check after every step (log_every = 1)."""
    task = recon_task()
    task.targets[9, 0, 2, 2] = float("nan")
    with pytest.raises(TrainingError) as every:
        train(UNet(width=4), task, FixedSampler(0.5), TrainSettings(steps=40, batch_size=4, log_every=1))
    with pytest.raises(TrainingError) as windowed:
        train(UNet(width=4), task, FixedSampler(0.5), TrainSettings(steps=40, batch_size=4, log_every=log_every))
    assert str(windowed.value) == str(every.value)
    assert "targets; non-finite loss terms: mae, ssim" in str(every.value)


def test_non_finite_steps_never_reach_a_checkpoint(tmp_path: Path) -> None:
    task = recon_task()
    task.inputs[:, :, 0, 0] = float("nan")  # every batch is bad from step 1
    ckpt = tmp_path / "c.pt"
    with pytest.raises(TrainingError, match=r"^training stopped at step 1 of 20"):
        train(
            UNet(width=4),
            task,
            FixedSampler(0.5),
            TrainSettings(steps=20, batch_size=4, log_every=10, checkpoint_every=5),
            checkpoint_path=ckpt,
        )
    assert not ckpt.exists()


def test_step_event_loss_is_a_device_tensor_equal_to_the_logged_mean() -> None:
    losses: list[torch.Tensor] = []
    logs: list[dict] = []

    def cb(event: str, info: dict) -> None:
        if event == "step":
            losses.append(info["loss"])
        elif event == "log":
            logs.append(info["record"])

    train(
        UNet(width=4),
        recon_task(),
        FixedSampler(0.5),
        TrainSettings(steps=6, batch_size=4, log_every=3),
        callbacks=[cb],
    )
    assert all(isinstance(v, torch.Tensor) and v.ndim == 0 for v in losses)
    assert logs[0]["loss"] == pytest.approx(sum(float(v) for v in losses[:3]) / 3, rel=1e-6)


@pytest.mark.parametrize(
    ("capability", "emulated", "want"),
    [((7, 5), True, "fp32"), ((8, 0), True, "bf16"), ((9, 0), True, "bf16"), ((6, 1), False, "fp32")],
)
def test_auto_precision_on_cuda_needs_native_bf16(monkeypatch, capability, emulated, want) -> None:
    """bf16 autocast only where tensor cores run it natively (capability >= 8.0), not where torch emulates it."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: emulated)
    assert resolve_precision("auto", "cuda") == want
    assert resolve_precision("auto", "cuda:0") == want
    assert resolve_precision("fp32", "cuda") == "fp32"


def test_job_peaks_go_to_the_model_rows(tmp_path: Path) -> None:
    (tmp_path / "eval-m1.json").write_text(json.dumps({"peak_memory_mib": 812.5}))
    (tmp_path / "search-m1.json").write_text(json.dumps({"peak_memory_mib": 90.0}))
    (tmp_path / "eval-m2.json").write_text(json.dumps({}))  # an older run: no figure
    rows = [{"model": "m1"}, {"model": "m2"}]
    add_job_peaks(rows, tmp_path)
    assert rows == [{"model": "m1", "eval_peak_memory_mib": 812.5, "search_peak_memory_mib": 90.0}, {"model": "m2"}]


# ------------------------------------------------------------------------------------------ CUDA


@pytest.mark.gpu
@needs_cuda
def test_auto_picks_cuda_and_native_precision() -> None:
    assert resolve_device("auto") == "cuda"
    want = "bf16" if torch.cuda.get_device_capability() >= (8, 0) else "fp32"
    assert resolve_precision("auto", "cuda") == want


@pytest.mark.gpu
@needs_cuda
def test_stage_on_cuda_equals_cpu_indexing_and_is_pinned() -> None:
    src = torch.randn(64, 2, 32, 32)
    idx = torch.randint(0, 64, (17,))
    out = accel.stage(src, idx, "cuda")
    torch.cuda.synchronize()
    assert out.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), src[idx], rtol=0, atol=0)
    lam = torch.rand(8, 1)
    dev = accel.with_host_copy(lam, "cuda")
    assert dev.device.type == "cuda" and accel.host_copy(dev) is lam


@pytest.mark.gpu
@needs_cuda
def test_cuda_event_time_matches_the_synchronised_wall_clock() -> None:
    a = torch.randn(4096, 4096, device="cuda")
    out = torch.empty_like(a)
    torch.mm(a, a, out=out)  # warm-up (cuBLAS handle, kernels)
    timer = DeviceTimer("cuda")
    torch.cuda.synchronize()
    with timer:
        for _ in range(20):  # ~55 ms of float32 matrix products: launch overhead is noise
            torch.mm(a, a, out=out)
        torch.cuda.synchronize()  # the host clock must wait for the work; the events need not
    assert timer.wall_seconds > 0.005
    assert timer.device_seconds > 0
    assert timer.device_seconds == pytest.approx(timer.wall_seconds, rel=0.3)


@pytest.mark.gpu
@needs_cuda
def test_training_on_cuda_chooses_bf16_and_records_peak_memory() -> None:
    model = HyperUNet(1, size="S", width=8)
    dtypes: list[torch.dtype] = []
    model.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))  # the last conv's output, no residual
    precision = resolve_precision("auto", "cuda")
    reset_peak_memory("cuda")
    result = train(
        model, recon_task(), UniformSampler(), TrainSettings(steps=4, batch_size=4, precision=precision), device="cuda"
    )
    assert result.cost.device == "cuda" and result.cost.dtype == precision
    assert result.cost.peak_memory_mb > 0 and result.cost.device_seconds > 0
    weights = sum(p.numel() * 4 for p in model.parameters()) / 2**20
    assert result.cost.peak_memory_mb >= weights  # at least the float32 parameters were on the device
    if precision == "bf16":
        assert dtypes and all(d == torch.bfloat16 for d in dtypes)
    assert peak_memory_mb("cuda") >= result.cost.peak_memory_mb


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("kind", ["unet", "hyper", "seg"])
def test_no_host_sync_inside_training_steps(kind: str) -> None:
    """Between log points a training step never waits for the device (torch's sync debug mode as the referee)."""
    steps, seen = 12, []
    task = recon_task()
    if kind == "seg":
        labels = (task.targets[:, 0] * 2.99).long()
        task = SegTask(task.targets, labels, n_classes=3)
    model = {
        "unet": lambda: UNet(width=8),
        "hyper": lambda: HyperUNet(1, size="S", width=8),
        "seg": lambda: UNet(in_channels=1, out_channels=3, width=8),
    }[kind]()
    sampler = {"unet": FixedSampler(0.5), "hyper": UniformSampler(), "seg": None}[kind]

    def cb(event: str, info: dict) -> None:
        if event == "step":
            seen.append((info["step"], len(caught)))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            train(
                model,
                task,
                sampler,
                TrainSettings(steps=steps, batch_size=4, log_every=steps),
                device="cuda",
                callbacks=[cb],
            )
        finally:
            torch.cuda.set_sync_debug_mode("default")
    counts = dict(seen)
    syncs = [(s, counts[s] - counts[s - 1]) for s in range(3, steps) if counts[s] != counts[s - 1]]
    where = [f"{w.filename}:{w.lineno}: {str(w.message)[:80]}" for w in caught if "synchroniz" in str(w.message)][:5]
    assert not syncs, f"host syncs in steps (step, count): {syncs}; first: {where}"


@pytest.mark.gpu
@needs_cuda
@pytest.mark.slow
def test_smoke_study_on_cuda(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hyperrecon.cli import app

    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["run", "--study", "sl-brain-cs", "--profile", "smoke", "--device", "auto", "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    costs = pd.read_csv(out / "costs.csv")
    assert set(costs.device) == {"cuda"}
    peak = costs["peak_memory_mib" if "peak_memory_mib" in costs else "peak_memory_mb"]
    assert (peak > 0).all() and (costs["eval_peak_memory_mib"].dropna() > 0).all()
    assert "peak memory: training" in (out / "report.md").read_text()
