"""The training loop: every model kind learns, exact resume, non-finite stops, checkpoints, settings, callbacks."""

from __future__ import annotations

import os
from dataclasses import asdict, fields, replace
from pathlib import Path

import pytest
import torch

from hyperrecon.checkpoints import load_checkpoint, save_checkpoint
from hyperrecon.config import TrainConfig
from hyperrecon.errors import CheckpointError, ConfigError, DataError, TrainingError
from hyperrecon.losses import CompositeLoss
from hyperrecon.models import FiLMUNet, HyperUNet, UNet
from hyperrecon.physics import CSMRI
from hyperrecon.samplers import DHSSampler, FixedSampler, UniformSampler
from hyperrecon.scales import term_values
from hyperrecon.tasks import ReconTask, SegTask
from hyperrecon.train_state import TrainState
from hyperrecon.training import IndexStream, TrainSettings, train

N, SIZE = 12, 16


def images(seed: int = 0, n: int = N) -> torch.Tensor:
    """Smooth blobs in [0, 1], (n, 1, 16, 16)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(
        torch.arange(SIZE, dtype=torch.float32), torch.arange(SIZE, dtype=torch.float32), indexing="ij"
    )
    c = torch.rand(n, 2, generator=g) * 8 + 4
    r = torch.rand(n, generator=g) * 3 + 2
    d2 = (yy - c[:, 0, None, None]) ** 2 + (xx - c[:, 1, None, None]) ** 2
    return (0.2 + 0.7 * torch.sigmoid(r[:, None, None] ** 2 - d2)).unsqueeze(1)


def sl_task(seed: int = 0, terms: tuple[str, ...] = ("mae", "ssim")) -> ReconTask:
    x = images(seed)
    g = torch.Generator().manual_seed(seed + 100)
    noisy = x + 0.1 * torch.randn(x.shape, generator=g)
    inputs = torch.cat([noisy, torch.zeros_like(noisy)], 1)
    return ReconTask(inputs, x, None, None, CompositeLoss(list(terms)))


def ao_task(seed: int = 0) -> ReconTask:
    """AO on CS-MRI: DC + L1 of weights + TV, no targets."""
    cs = CSMRI((SIZE, SIZE), acceleration=4.0)
    y = cs.measure(images(seed))
    return ReconTask(cs.network_input(y), None, y, cs, CompositeLoss(["dc", "l1_weights", "tv"], [1.0, 100.0, 10.0]))


def mean_loss(model: torch.nn.Module, task: ReconTask, lam: float) -> float:
    values = term_values(model, task, [lam] * task.n_lams, batch_size=N)
    return float(sum(values[t].mean() for t in task.loss.terms))


def params_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


SETTINGS = TrainSettings(steps=30, batch_size=4, lr=3e-3, log_every=10, seed=1)


# ------------------------------------------------------------------------------------------ learning


@pytest.mark.parametrize(
    "make_model, make_sampler",
    [
        (lambda: UNet(width=4), lambda: FixedSampler(0.5)),
        (lambda: HyperUNet(n_lams=1, size="S", width=4), lambda: UniformSampler()),
        (lambda: FiLMUNet(n_lams=1, width=4, hidden=8), lambda: UniformSampler(groups=2)),
    ],
    ids=["unet-baseline", "hyperunet-S", "film"],
)
def test_short_run_lowers_the_loss(make_model, make_sampler) -> None:
    torch.manual_seed(0)
    model, task = make_model(), sl_task()
    before = mean_loss(model, task, 0.5)
    result = train(model, task, make_sampler(), SETTINGS, name="m")
    after = mean_loss(model, task, 0.5)
    assert after < 0.8 * before, (before, after)
    assert result.final_step == 30 and [h["step"] for h in result.history] == [10, 20, 30]
    assert set(result.history[0]) >= {"step", "loss", "lr", "mae", "ssim"}
    assert result.cost.steps == 30 and result.cost.n_params == sum(p.numel() for p in model.parameters())
    assert result.cost.kind == model.registry_name and result.cost.model_name == "m"
    assert result.cost.device_seconds > 0 and result.cost.wall_seconds > 0 and result.cost.peak_memory_mb > 0


def test_segmentation_unet_learns() -> None:
    torch.manual_seed(0)
    x = images(3)
    labels = (x[:, 0] > 0.5).long()  # background / blob
    task = SegTask(x, labels, n_classes=2)
    model = UNet(in_channels=1, out_channels=2, width=4)

    def dice_loss() -> float:
        model.eval()
        with torch.no_grad():
            value = float(task.batch_loss(model, torch.arange(N), None)[0].mean())
        model.train()
        return value

    before = dice_loss()
    result = train(model, task, None, replace(SETTINGS, lr=1e-2))
    assert dice_loss() < 0.8 * before
    assert "soft_dice" in result.history[-1]


def test_bf16_channels_last_cosine_and_clip_run() -> None:
    torch.manual_seed(0)
    model, task = HyperUNet(n_lams=1, hnet_width=2, width=4), sl_task()
    settings = TrainSettings(
        steps=6, batch_size=4, precision="bf16", channels_last=True, lr_schedule="cosine", grad_clip=1.0, log_every=3
    )
    result = train(model, task, UniformSampler(), settings)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert result.history[-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # cosine ends at 0
    assert result.history[0]["lr"] == pytest.approx(1e-3 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi / 2)).item()))
    assert result.cost.dtype == "bf16"


def test_same_seed_same_result_and_global_rng_untouched() -> None:
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = HyperUNet(n_lams=1, hnet_width=2, width=4)
        state = torch.get_rng_state()
        train(model, sl_task(), UniformSampler(), TrainSettings(steps=4, batch_size=4))
        assert torch.equal(torch.get_rng_state(), state)
        runs.append(params_of(model))
    for k in runs[0]:
        assert torch.equal(runs[0][k], runs[1][k]), k


# ------------------------------------------------------------------------------------------ resume


class Crash(Exception):
    pass


def crash_after(step: int):
    def callback(event: str, info: dict) -> None:
        if event == "step" and info["step"] == step:
            raise Crash

    return callback


@pytest.mark.parametrize(
    "schedule, kind", [("constant", "ao-dhs"), ("cosine", "sl-groups")], ids=["ao-dhs", "sl-cosine-groups"]
)
def test_resume_reproduces_an_uninterrupted_run(tmp_path: Path, schedule: str, kind: str) -> None:
    settings = TrainSettings(steps=10, batch_size=4, checkpoint_every=4, log_every=3, lr_schedule=schedule, seed=5)
    # 12 samples, batch 4: epoch boundaries at steps 3, 6, 9; the checkpoint at step 4 falls inside the log window
    # of steps 4-6, so the record at step 6 averages steps run before and after the resume
    task = ao_task() if kind == "ao-dhs" else sl_task()
    n_lams = task.n_lams

    def make_sampler():
        return DHSSampler(top_k=2) if kind == "ao-dhs" else UniformSampler(groups=2)

    torch.manual_seed(0)
    whole = HyperUNet(n_lams=n_lams, hnet_width=2, width=4)
    ref = train(whole, task, make_sampler(), settings)

    torch.manual_seed(0)
    first = HyperUNet(n_lams=n_lams, hnet_width=2, width=4)
    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(Crash):
        train(first, task, make_sampler(), settings, checkpoint_path=ckpt, callbacks=[crash_after(6)])
    assert load_checkpoint(ckpt)["step"] == 4  # the crash at step 6 lost steps 5-6

    torch.manual_seed(123)  # a differently initialised model: everything must come from the checkpoint
    second = HyperUNet(n_lams=n_lams, hnet_width=2, width=4)
    events: list[tuple[str, int]] = []
    resumed = train(
        second,
        task,
        make_sampler(),
        settings,
        checkpoint_path=ckpt,
        callbacks=[lambda e, i: events.append((e, i.get("step", -1)))],
    )
    assert events[0] == ("start", 4) and events[-1] == ("end", 10)
    ref_params, got = params_of(whole), params_of(second)
    for k in ref_params:
        torch.testing.assert_close(got[k], ref_params[k], rtol=1e-6, atol=1e-7, msg=k)
    assert [h["step"] for h in resumed.history] == [3, 6, 9, 10]
    assert resumed.history == ref.history  # exactly: the checkpoint holds the running sums of the open window
    assert resumed.cost.steps == 10
    if kind == "ao-dhs":
        assert ref.extra["kept_lams"].shape == (10 * 2, 2)
        torch.testing.assert_close(resumed.extra["kept_lams"], ref.extra["kept_lams"])

    # A finished checkpoint: resuming trains nothing and returns the stored state.
    again = train(second, task, make_sampler(), settings, checkpoint_path=ckpt)
    assert again.final_step == 10 and again.cost.steps == 10


def same(a: object, b: object, where: str) -> None:
    """Assert a == b for nested dicts, lists and tensors (tensors: equal values, dtype and shape)."""
    assert type(a) is type(b), (where, type(a), type(b))
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b), (where, list(a), list(b))
        for key in a:
            same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def test_state_round_trip_field_by_field(tmp_path: Path) -> None:
    """A checkpoint restored into a fresh, differently initialised state gives back every saved part unchanged."""
    settings = TrainSettings(steps=10, batch_size=4, checkpoint_every=4, log_every=3, seed=5)
    task, ckpt = ao_task(), tmp_path / "ckpt.pt"
    torch.manual_seed(0)
    model = HyperUNet(n_lams=2, hnet_width=2, width=4)
    with pytest.raises(Crash):
        train(model, task, DHSSampler(top_k=2), settings, checkpoint_path=ckpt, callbacks=[crash_after(5)])
    saved = load_checkpoint(ckpt)
    header = {"format_version", "name", "settings"}
    assert saved["step"] == 4 and saved["log_count"] == 1 and set(saved["log_sums"]) >= {"loss", "dc", "tv"}
    assert saved["sampler"] and len(saved["history"]) == 1 and saved["perm_pos"] == 4

    torch.manual_seed(123)
    state = TrainState.start(
        HyperUNet(n_lams=2, hnet_width=2, width=4), task.n_samples, DHSSampler(top_k=2), settings, "cpu", "other"
    )
    fresh = state.state_dict()
    assert set(fresh) == set(saved) - header  # the parts table is the whole payload
    assert any(not torch.equal(fresh["model"][k], v) for k, v in saved["model"].items())
    with torch.random.fork_rng():
        state.restore(ckpt, asdict(settings))
        restored = state.state_dict()
    for key in restored:
        same(restored[key], saved[key], key)
    assert state.step == 4 and state.n_sum == 1 and state.stream.pos == 4 and state.cost.steps == 4


def test_settings_are_the_study_schema_plus_the_job() -> None:
    """One definition per setting: TrainSettings takes [train]'s fields, defaults and ranges from TrainConfig."""
    schema = {f.name: f.default for f in fields(TrainConfig)}
    mine = {f.name: f.default for f in fields(TrainSettings)}
    assert set(mine) - set(schema) == {"seed", "log_every"}
    assert {k: v for k, v in mine.items() if k in schema and k != "precision"} == {
        k: v for k, v in schema.items() if k != "precision"
    }
    assert schema["precision"] == "auto" and mine["precision"] == "fp32"  # the loop runs in a resolved precision
    study = TrainConfig(steps=77, batch_size=6, lr=0.02, lr_schedule="cosine", channels_last=False, grad_clip=2.0)
    made = TrainSettings.from_config(study, steps=5, precision="bf16", seed=9, log_every=2)
    assert (made.steps, made.batch_size, made.lr, made.lr_schedule, made.grad_clip) == (5, 6, 0.02, "cosine", 2.0)
    assert (made.channels_last, made.checkpoint_every, made.precision, made.seed) == (False, 200, "bf16", 9)
    with pytest.raises(ConfigError, match=r"train settings batch_size: `batch_size >= 1` must hold"):
        TrainSettings(batch_size=0)
    with pytest.raises(ConfigError, match="train settings steps: expected integer, got true"):
        TrainSettings(steps=True)
    with pytest.raises(ConfigError, match="train settings checkpoint_every: `checkpoint_every >= 0`"):
        replace(made, checkpoint_every=-1)


def test_resume_with_other_batch_size_is_refused(tmp_path: Path) -> None:
    ckpt = tmp_path / "c.pt"
    train(UNet(width=4), sl_task(), FixedSampler(0.0), TrainSettings(steps=2, batch_size=4), checkpoint_path=ckpt)
    with pytest.raises(CheckpointError, match="batch_size"):
        train(UNet(width=4), sl_task(), FixedSampler(0.0), TrainSettings(steps=4, batch_size=2), checkpoint_path=ckpt)
    with pytest.raises(CheckpointError, match=str(ckpt)):  # another architecture
        train(UNet(width=8), sl_task(), FixedSampler(0.0), TrainSettings(steps=4, batch_size=4), checkpoint_path=ckpt)
    train(
        UNet(width=8),
        sl_task(),
        FixedSampler(0.0),
        TrainSettings(steps=1, batch_size=4),
        checkpoint_path=ckpt,
        resume=False,
    )  # start afresh overwrites


# ------------------------------------------------------------------------------------------ checkpoints


def test_checkpoint_is_atomic_and_weights_only(tmp_path: Path) -> None:
    ckpt = tmp_path / "sub" / "model.pt"
    train(
        UNet(width=4),
        sl_task(),
        FixedSampler(1.0),
        TrainSettings(steps=3, batch_size=4, checkpoint_every=1),
        checkpoint_path=ckpt,
    )
    assert os.listdir(ckpt.parent) == ["model.pt"]  # no temporary files left behind
    umask = os.umask(0o022)
    os.umask(umask)
    assert ckpt.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would make it, not mkstemp's 0600
    data = torch.load(ckpt, weights_only=True)
    assert data["format_version"] == 1 and data["step"] == 3
    assert {"model", "optimizer", "scheduler", "data_generator", "lam_generator", "torch_rng"} <= set(data)


def test_corrupt_or_truncated_checkpoint_raises_checkpoint_error(tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    save_checkpoint(good, {"format_version": 1, "x": torch.ones(1000)})
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:-400])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    for path in (truncated, garbage):
        with pytest.raises(CheckpointError, match=str(path)) as info:
            load_checkpoint(path)
        assert "\n" not in str(info.value)
        with pytest.raises(CheckpointError, match=str(path)):
            train(
                UNet(width=4), sl_task(), FixedSampler(0.5), TrainSettings(steps=1, batch_size=4), checkpoint_path=path
            )
    with pytest.raises(CheckpointError, match="lacks"):
        load_checkpoint(good)
    save_checkpoint(good, {"format_version": 99})
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(good)


def test_flipped_bytes_inside_a_tensor_fail_the_checksum(tmp_path: Path) -> None:
    ckpt = tmp_path / "c.pt"
    # NCHW weights, so that their bytes in the archive are those of tensor.numpy()
    settings = TrainSettings(steps=2, batch_size=4, channels_last=False)
    train(UNet(width=4), sl_task(), FixedSampler(0.5), settings, checkpoint_path=ckpt)
    data = bytearray(ckpt.read_bytes())
    name, tensor = max(load_checkpoint(ckpt)["model"].items(), key=lambda kv: kv[1].numel())
    weight = tensor.numpy().tobytes()
    at = bytes(data).find(weight)  # torch.save stores tensors uncompressed
    assert at > 0
    data[at : at + 4] = bytes(b ^ 0xFF for b in data[at : at + 4])
    ckpt.write_bytes(bytes(data))
    loaded = torch.load(ckpt, weights_only=True)  # torch itself takes the damaged tensor silently
    assert loaded["model"][name].numpy().tobytes() != weight
    with pytest.raises(CheckpointError, match=rf"^{ckpt}: corrupt checkpoint \(checksum mismatch in "):
        load_checkpoint(ckpt)
    with pytest.raises(CheckpointError, match="checksum mismatch"):  # and so does a resume
        train(UNet(width=4), sl_task(), FixedSampler(0.5), TrainSettings(steps=4, batch_size=4), checkpoint_path=ckpt)


# ------------------------------------------------------------------------------------------ failures


def test_nan_input_stops_with_training_error() -> None:
    task = sl_task()
    task.inputs[7, 0, 3, 3] = float("nan")
    with pytest.raises(TrainingError, match=r"step \d+ of 20.*inputs.*mae, ssim"):
        train(UNet(width=4), task, FixedSampler(0.5), TrainSettings(steps=20, batch_size=4))


def test_nan_in_one_term_is_named() -> None:
    task = sl_task(terms=("mae", "tv"))
    task.targets[2, 0, 0, 0] = float("inf")
    with pytest.raises(TrainingError, match=r"targets; non-finite loss terms: mae$"):
        train(UNet(width=4), task, FixedSampler(0.5), TrainSettings(steps=20, batch_size=4))


def test_settings_and_task_validation() -> None:
    with pytest.raises(ConfigError, match="steps >= 1"):
        TrainSettings(steps=0)
    with pytest.raises(ConfigError, match="precision"):
        TrainSettings(precision="fp16")
    with pytest.raises(ConfigError, match="lr_schedule"):
        TrainSettings(lr_schedule="step")
    with pytest.raises(ConfigError, match="grad_clip"):
        TrainSettings(grad_clip=-1.0)
    x = images()
    with pytest.raises(ConfigError, match="supervised"):
        ReconTask(torch.cat([x, x], 1), None, None, None, CompositeLoss(["mae", "tv"]))
    with pytest.raises(DataError, match="targets"):
        ReconTask(torch.cat([x, x], 1), x[:3], None, None, CompositeLoss(["mae", "tv"]))
    with pytest.raises(DataError, match="labels"):
        SegTask(x, torch.full((N, SIZE, SIZE), 3), n_classes=3)
    with pytest.raises(ConfigError, match="sampler is needed"):
        train(UNet(width=4), sl_task(), None, TrainSettings(steps=1, batch_size=4))
    with pytest.raises(ConfigError, match="top_k"):
        train(UNet(width=4), sl_task(), DHSSampler(top_k=5), TrainSettings(steps=1, batch_size=4))
    with pytest.raises(ConfigError, match="k=2 hyperparameters, but the loss has k=1"):
        train(HyperUNet(n_lams=2, hnet_width=2, width=4), sl_task(), UniformSampler(), TrainSettings(steps=1))


def test_callbacks_see_every_event_in_order(tmp_path: Path) -> None:
    events: list[tuple[str, int]] = []
    settings = TrainSettings(steps=4, batch_size=4, log_every=2, checkpoint_every=3)
    train(
        UNet(width=4),
        sl_task(),
        FixedSampler(0.5),
        settings,
        checkpoint_path=tmp_path / "c.pt",
        callbacks=[lambda event, info: events.append((event, info["step"]))],
    )
    assert events == [
        ("start", 0),
        ("step", 1),
        ("log", 2),
        ("step", 2),
        ("step", 3),
        ("checkpoint", 3),
        ("log", 4),
        ("step", 4),
        ("checkpoint", 4),
        ("end", 4),
    ]


def test_index_stream_is_epochwise_permutation() -> None:
    stream = IndexStream(5, 3, torch.Generator().manual_seed(0))
    drawn = torch.cat([stream.next() for _ in range(5)])  # 15 = 3 epochs of 5
    for epoch in drawn.view(3, 5):
        assert sorted(epoch.tolist()) == [0, 1, 2, 3, 4]
    small = IndexStream(2, 5, torch.Generator().manual_seed(0)).next()  # N < B works
    assert small.shape == (5,)
