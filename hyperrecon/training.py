"""One training loop for every model kind: per-λ baseline U-Net, HyperUNet, FiLM U-Net and the segmentation U-Net.

``train(model, task, sampler, settings)`` runs ``settings.steps`` Adam steps. Each step:

1. the next ``batch_size`` sample indices from a stream of per-epoch random permutations (a ``torch.Generator``
   seeded from ``settings.seed``; batches run across epoch boundaries, so any N works and every batch has B
   samples);
2. λ (B, k) from the sampler with its own generator (seed + 1), nothing for a segmentation task;
3. per-sample losses from the task under optional bf16 autocast (loss terms stay float32), reduced by the sampler
   (batch mean, or DHS top-K);
4. finiteness flags of the loss, the per-sample totals and the loss parts, kept on the device
   (:class:`~hyperrecon.finite.FiniteWatch`) and read at each log record, checkpoint and the end: a non-finite value
   stops training with a ``TrainingError`` naming the first bad step, its non-finite loss terms and whether its
   batch input was non-finite. No step reads a value back from the device (on a GPU the host queues work ahead);
5. backward, optional gradient-norm clipping, Adam and learning-rate schedule steps.

Checkpoints (``checkpoint_path``) are written every ``checkpoint_every`` steps and at the end, atomically (temp file
in the same folder, fsync, ``os.replace``), and hold only tensors and plain containers so that
``torch.load(weights_only=True)`` reads them: model, optimiser, scheduler, step, the data and λ generator states,
the current permutation and position, the global RNG state used inside the loop, the sampler state (DHS history),
history, the running loss sums of the current log window and cost so far. ``resume=True`` continues from an existing
checkpoint and reproduces an uninterrupted run, loss history included. ``load_checkpoint`` verifies the archive's
CRC-32 checksums before loading. Checkpoints get the mode of an ordinary new file (``0o666 & ~umask``).
The loop runs inside ``torch.random.fork_rng`` seeded from ``settings.seed``, so the caller's global RNG is left
alone and any randomness inside the model (dropout) is reproducible too.

Callbacks are callables ``cb(event, info)``: ``("start", {step, total, name, resumed})``,
``("step", {step, total, loss})``, ``("log", {step, total, record})``, ``("checkpoint", {step, path})``,
``("end", {step, total, cost})``; the CLI turns them into progress bars. ``step`` counts completed steps; a step's
``loss`` is a 0-d tensor on the device (``float()`` of it waits for the device).
``probe_steps``: after each of these steps (before the last) ``("probe", {step, total, cost})`` is emitted with
the device timer paused, so that a callback may evaluate the model (e.g. on validation data: the fidelity table of
:mod:`hyperrecon.search.fidelity`) without that time counting as training; the model is put back in training mode
afterwards. ``cost`` is the training cost so far.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .checkpoints import CHECKPOINT_VERSION, load_checkpoint, read_torch_file, save_checkpoint
from .errors import CheckpointError, ConfigError
from .finite import FiniteWatch
from .samplers import LamSampler
from .tasks import ReconTask, SegTask, Task
from .timing import CostRecord, DeviceTimer, peak_memory_mb, reset_peak_memory

LR_SCHEDULES = ("constant", "cosine")
PRECISIONS = ("fp32", "bf16")
# Settings that must match between a checkpoint and a resumed run (others, e.g. steps, may change).
_RESUME_MUST_MATCH = ("batch_size", "seed", "lr", "lr_schedule")

Callback = Callable[[str, dict[str, Any]], Any]

# Tasks and checkpoint I/O live in their own modules; their names stay importable from here.
__all__ = [
    "CHECKPOINT_VERSION",
    "Callback",
    "IndexStream",
    "ReconTask",
    "SegTask",
    "Task",
    "TrainResult",
    "TrainSettings",
    "load_checkpoint",
    "read_torch_file",
    "save_checkpoint",
    "train",
]


# ---------------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class TrainSettings:
    """How to train. ``checkpoint_every``: 0 or None writes only the final checkpoint."""

    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    lr_schedule: str = "constant"
    precision: str = "fp32"
    channels_last: bool = False
    grad_clip: float | None = None
    checkpoint_every: int | None = None
    seed: int = 0
    log_every: int = 10

    def __post_init__(self) -> None:
        def need(ok: bool, rule: str, name: str) -> None:
            if not ok:
                raise ConfigError(f"train settings {name}: `{rule}` must hold, but got {name}={getattr(self, name)!r}")

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        need(is_int(self.steps) and self.steps >= 1, "steps >= 1", "steps")
        need(is_int(self.batch_size) and self.batch_size >= 1, "batch_size >= 1", "batch_size")
        need(isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr > 0, "lr > 0", "lr")
        need(self.lr_schedule in LR_SCHEDULES, f"lr_schedule in {LR_SCHEDULES}", "lr_schedule")
        need(self.precision in PRECISIONS, f"precision in {PRECISIONS}", "precision")
        need(isinstance(self.channels_last, bool), "channels_last is true or false", "channels_last")
        need(
            self.grad_clip is None or (isinstance(self.grad_clip, int | float) and self.grad_clip > 0),
            "grad_clip > 0 or none",
            "grad_clip",
        )
        need(
            self.checkpoint_every is None or (is_int(self.checkpoint_every) and self.checkpoint_every >= 0),
            "checkpoint_every >= 0 or none",
            "checkpoint_every",
        )
        need(is_int(self.seed), "seed is an integer", "seed")
        need(is_int(self.log_every) and self.log_every >= 1, "log_every >= 1", "log_every")


# ---------------------------------------------------------------------------------------------------- data order


class IndexStream:
    """Endless mini-batches of sample indices: consecutive random permutations of range(N), cut into B."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator) -> None:
        self.n, self.batch_size, self.generator = n, batch_size, generator
        self.perm = torch.randperm(n, generator=generator)
        self.pos = 0

    def next(self) -> Tensor:
        chunks, need = [], self.batch_size
        while need > 0:
            if self.pos >= self.n:
                self.perm = torch.randperm(self.n, generator=self.generator)
                self.pos = 0
            take = self.perm[self.pos : self.pos + need]
            chunks.append(take)
            self.pos += take.numel()
            need -= take.numel()
        return torch.cat(chunks)


# ---------------------------------------------------------------------------------------------------- loop


@dataclass
class TrainResult:
    """``history``: one dict per log (step, loss, lr, mean of every loss part); ``final_step``: steps done."""

    history: list[dict[str, float]]
    cost: CostRecord
    final_step: int
    extra: dict[str, Any] = field(default_factory=dict)


def _lr_factor(settings: TrainSettings) -> Callable[[int], float]:
    if settings.lr_schedule == "cosine":
        steps = settings.steps
        return lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, steps) / steps))
    return lambda s: 1.0


def _emit(callbacks: Iterable[Callback], event: str, info: dict[str, Any]) -> None:
    for cb in callbacks:
        cb(event, info)


def _settings_dict(settings: TrainSettings) -> dict[str, Any]:
    return asdict(settings)


def train(
    model: nn.Module,
    task: Task,
    sampler: LamSampler | None,
    settings: TrainSettings,
    *,
    device: str | torch.device = "cpu",
    checkpoint_path: str | os.PathLike[str] | None = None,
    resume: bool = True,
    callbacks: Iterable[Callback] = (),
    name: str = "model",
    probe_steps: Iterable[int] = (),
) -> TrainResult:
    """Train ``model`` in place on ``task`` with λ from ``sampler`` (None for tasks without λ); see module doc."""
    device = torch.device(device)
    callbacks = tuple(callbacks)
    probes = frozenset(int(s) for s in probe_steps)
    n_lams = task.n_lams
    if n_lams > 0 and sampler is None:
        raise ConfigError(f"training '{name}': the loss has k={n_lams} hyperparameters, so a sampler is needed")
    if sampler is not None:
        sampler.validate(settings.batch_size)
    model_lams = getattr(model, "n_lams", None)
    if getattr(model, "conditional", False) and model_lams is not None and model_lams != n_lams:
        raise ConfigError(
            f"training '{name}': the model is built for k={model_lams} hyperparameters, but the loss has k={n_lams}"
        )
    model.to(device)
    if settings.channels_last:
        model.to(memory_format=torch.channels_last)
    task = task.to(device)

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError(f"training '{name}': the model has no trainable parameters")
    # Fused Adam: one kernel over all parameters instead of a Python loop of small ops (HyperRecon-L's 19M head
    # parameters: 18 ms vs 89 ms a step on the 2-core CPU; reports/benchmarks/README.md).
    fused = device.type in ("cpu", "cuda") and all(p.dtype.is_floating_point for p in params)
    optimizer = torch.optim.Adam(params, lr=settings.lr, fused=fused or None)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(settings))
    data_gen = torch.Generator().manual_seed(settings.seed)
    lam_gen = torch.Generator().manual_seed(settings.seed + 1)
    stream = IndexStream(task.n_samples, settings.batch_size, data_gen)
    cost = CostRecord(
        model_name=name,
        kind=str(getattr(model, "registry_name", type(model).__name__)),
        n_params=sum(p.numel() for p in model.parameters()),
        steps=0,
        device_seconds=0.0,
        wall_seconds=0.0,
        peak_memory_mb=0.0,
        device=str(device),
        dtype=settings.precision,
    )
    history: list[dict[str, float]] = []
    # Running sums (float32 scalars on the device) of the loss and its parts since the last log record, and how
    # many steps they hold; checkpointed, so that the history of a resumed run equals an uninterrupted one.
    sums: dict[str, Tensor] = {}
    n_sum = 0
    start = 0
    torch_rng: Tensor | None = None
    cuda_rng: Tensor | None = None
    ckpt = Path(checkpoint_path) if checkpoint_path is not None else None
    resumed = False

    if ckpt is not None and resume and ckpt.exists():
        state = load_checkpoint(ckpt)
        saved = state["settings"]
        for key in _RESUME_MUST_MATCH:
            if saved.get(key) != getattr(settings, key):
                raise CheckpointError(
                    f"{ckpt}: written with {key}={saved.get(key)!r}, but the settings say {getattr(settings, key)!r}; "
                    "resume with the same settings or start afresh (resume=False)"
                )
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            data_gen.set_state(state["data_generator"])
            lam_gen.set_state(state["lam_generator"])
            if sampler is not None:
                sampler.load_state_dict(state["sampler"])
            # The running sums of the log window the checkpoint fell in (absent from checkpoints that predate
            # them: then the first record after the resume averages only the steps run since).
            sums = {str(k): v.to(device) for k, v in state.get("log_sums", {}).items()}
            n_sum = int(state.get("log_count", 0))
        except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"{ckpt}: does not fit this model/optimiser ({first})") from exc
        if state["perm"].numel() != task.n_samples:
            raise CheckpointError(
                f"{ckpt}: written for {state['perm'].numel()} training samples, but the task has {task.n_samples}"
            )
        stream.perm, stream.pos = state["perm"], int(state["perm_pos"])
        start = int(state["step"])
        history = list(state["history"])
        cost = CostRecord.from_dict({**cost.to_dict(), **state["cost"], "device": str(device)})
        torch_rng, cuda_rng = state["torch_rng"], state.get("cuda_rng")
        resumed = True

    was_training = model.training
    cuda_devices: list[int] = []
    if device.type == "cuda":
        cuda_devices = [torch.cuda.current_device() if device.index is None else device.index]
    autocast = dict(device_type=device.type, dtype=torch.bfloat16, enabled=settings.precision == "bf16")
    timer = DeviceTimer(device)
    watch = FiniteWatch()
    reset_peak_memory(device)
    steps_run = 0

    def payload(step: int, cost_now: CostRecord) -> dict[str, Any]:
        data: dict[str, Any] = {
            "format_version": CHECKPOINT_VERSION,
            "name": name,
            "step": step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "data_generator": data_gen.get_state(),
            "lam_generator": lam_gen.get_state(),
            "perm": stream.perm,
            "perm_pos": stream.pos,
            "torch_rng": torch.get_rng_state(),
            "sampler": sampler.state_dict() if sampler is not None else {},
            "history": history,
            "log_sums": {k: v.detach().cpu() for k, v in sums.items()},
            "log_count": n_sum,
            "cost": cost_now.to_dict(),
            "settings": _settings_dict(settings),
        }
        if cuda_devices:
            data["cuda_rng"] = torch.cuda.get_rng_state(device)
        return data

    def cost_so_far() -> CostRecord:
        return cost.plus(steps_run, timer.device_seconds, timer.wall_seconds, peak_memory_mb(device))

    with torch.random.fork_rng(devices=cuda_devices):
        if torch_rng is not None:
            torch.set_rng_state(torch_rng)
            if cuda_rng is not None and cuda_devices:
                torch.cuda.set_rng_state(cuda_rng, device)
        else:
            torch.manual_seed(settings.seed + 2)
        _emit(callbacks, "start", {"step": start, "total": settings.steps, "name": name, "resumed": resumed})
        model.train()
        timer.start()
        try:
            for step in range(start, settings.steps):
                idx = stream.next()
                lam = sampler.sample(settings.batch_size, n_lams, lam_gen, step) if n_lams > 0 else None
                with torch.autocast(**autocast):
                    total, dc, parts = task.batch_loss(model, idx, lam, channels_last=settings.channels_last)
                loss = sampler.reduce(total, dc, step) if sampler is not None else total.mean()
                watch.add(step + 1, loss, total, parts, idx)  # flags stay on the device until the next log
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if settings.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, settings.grad_clip)
                optimizer.step()
                scheduler.step()
                steps_run += 1
                done = step + 1

                sums["loss"] = sums.get("loss", 0.0) + loss.detach().float()
                for key, value in parts.items():
                    sums[key] = sums.get(key, 0.0) + value.detach().float().mean()
                n_sum += 1
                if done % settings.log_every == 0 or done == settings.steps:
                    watch.check(settings.steps, task)
                    record: dict[str, float] = {"step": done, "lr": float(scheduler.get_last_lr()[0])}
                    record.update({k: float(v) / n_sum for k, v in sums.items()})
                    history.append(record)
                    sums, n_sum = {}, 0
                    _emit(callbacks, "log", {"step": done, "total": settings.steps, "record": record})
                _emit(callbacks, "step", {"step": done, "total": settings.steps, "loss": loss.detach()})
                if done in probes and done < settings.steps:
                    timer.stop()  # a probe's evaluation is not training cost
                    _emit(callbacks, "probe", {"step": done, "total": settings.steps, "cost": cost_so_far().to_dict()})
                    model.train()
                    timer.start()
                if (
                    ckpt is not None
                    and settings.checkpoint_every
                    and done % settings.checkpoint_every == 0
                    and done < settings.steps
                ):
                    timer.stop()  # checkpoint I/O is not training cost; this also closes the CUDA span
                    watch.check(settings.steps, task)
                    save_checkpoint(ckpt, payload(done, cost_so_far()))
                    timer.start()
                    _emit(callbacks, "checkpoint", {"step": done, "path": str(ckpt)})
        finally:
            if timer.running:
                timer.stop()
            model.train(was_training)
        watch.check(settings.steps, task)
        final = max(start, settings.steps)
        result_cost = cost_so_far() if steps_run > 0 else cost
        if ckpt is not None and steps_run > 0:
            save_checkpoint(ckpt, payload(final, result_cost))
            _emit(callbacks, "checkpoint", {"step": final, "path": str(ckpt)})
    _emit(callbacks, "end", {"step": final, "total": settings.steps, "cost": result_cost.to_dict()})
    extra: dict[str, Any] = {}
    if sampler is not None and hasattr(sampler, "kept_lams"):
        extra["kept_lams"] = sampler.kept_lams()
    return TrainResult(history=history, cost=result_cost, final_step=final, extra=extra)


__all__ = [
    "CHECKPOINT_VERSION",
    "IndexStream",
    "ReconTask",
    "SegTask",
    "TrainResult",
    "TrainSettings",
    "load_checkpoint",
    "save_checkpoint",
    "train",
]
