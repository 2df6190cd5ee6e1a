"""One training loop for every model kind: per-λ baseline U-Net, HyperUNet, FiLM U-Net and the segmentation U-Net.

``train(model, task, sampler, settings)`` runs ``settings.steps`` Adam steps (:class:`TrainSettings`: the study's
``[train]`` settings plus the job's seed, resolved precision and log interval). Each step:

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
``torch.load(weights_only=True)`` reads them: the parts of :class:`~hyperrecon.train_state.TrainState` (model,
optimiser, scheduler, step, the data and λ generator states, the current permutation and position, the global RNG
state used inside the loop, the sampler state (DHS history), history, the running loss sums of the current log
window and cost so far), defined once there and used both to save and to restore. ``resume=True`` continues from
an existing checkpoint and reproduces an uninterrupted run, loss history included. ``load_checkpoint`` verifies the
archive's CRC-32 checksums before loading. Checkpoints get the mode of an ordinary new file (``0o666 & ~umask``).
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

import dataclasses
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import ConfigDict, ValidationError, model_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass
from torch import Tensor, nn

from .config import PosInt, Precision, TrainConfig, field_error
from .errors import ConfigError
from .finite import FiniteWatch
from .samplers import LamSampler
from .tasks import Task
from .timing import CostRecord, reset_peak_memory
from .train_state import IndexStream, TrainState

Callback = Callable[[str, dict[str, Any]], Any]

__all__ = ["Callback", "IndexStream", "TrainResult", "TrainSettings", "TrainState", "train"]


# ---------------------------------------------------------------------------------------------------- settings


@pydantic_dataclass(frozen=True, config=ConfigDict(**TrainConfig.__pydantic_config__, strict=True))  # type: ignore[attr-defined]
class TrainSettings(TrainConfig):
    """How one job trains: the study's ``[train]`` settings plus what the job adds.

    Every ``[train]`` setting (:class:`hyperrecon.config.TrainConfig`: ``steps``, ``batch_size``, ``lr``,
    ``lr_schedule``, ``channels_last``, ``grad_clip``, ``checkpoint_every``) is inherited with its type, range and
    default, so it is defined once; :meth:`from_config` copies a study's values. ``checkpoint_every = 0`` writes only
    the final checkpoint. Bad values raise ``ConfigError`` naming the setting (strict: no bool for an integer, no
    string for a number).
    """

    precision: Precision = "fp32"
    """The precision the loop runs in: the study's ``precision`` once ``auto`` is resolved for the device
    (:func:`hyperrecon.resolve.resolve_precision`)."""
    seed: int = 0
    """Seeds the data order (``seed``), the sampler's λ (``seed + 1``) and the loop's global RNG (``seed + 2``)."""
    log_every: PosInt = 10
    """Steps per history record (and finiteness check)."""

    @model_validator(mode="wrap")
    @classmethod
    def _one_line_error(cls, values: Any, handler: Callable[[Any], TrainSettings]) -> TrainSettings:
        try:
            return handler(values)
        except ValidationError as exc:
            raise field_error(cls, exc, "train settings") from None

    @classmethod
    def from_config(cls, config: TrainConfig, **job: Any) -> TrainSettings:
        """The study's ``[train]`` values with the job's own (``steps``, resolved ``precision``, ``seed``,
        ``log_every``) on top."""
        return cls(**{**dataclasses.asdict(config), **job})


# ---------------------------------------------------------------------------------------------------- loop


@dataclass
class TrainResult:
    """``history``: one dict per log (step, loss, lr, mean of every loss part); ``final_step``: steps done."""

    history: list[dict[str, float]]
    cost: CostRecord
    final_step: int
    extra: dict[str, Any] = field(default_factory=dict)


def _emit(callbacks: Iterable[Callback], event: str, info: dict[str, Any]) -> None:
    for cb in callbacks:
        cb(event, info)


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
    _check_fit(model, task, sampler, settings, name)
    model.to(device)
    if settings.channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # (missing from torch's stubs)
    task = task.to(device)
    state = TrainState.start(model, task.n_samples, sampler, settings, device, name)
    ckpt = Path(checkpoint_path) if checkpoint_path is not None else None
    saved_settings = dataclasses.asdict(settings)
    cuda_devices: list[int] = []
    if device.type == "cuda":
        cuda_devices = [torch.cuda.current_device() if device.index is None else device.index]
    loop = _Loop(state, task, settings, tuple(state.optimizer.param_groups[0]["params"]))

    def checkpoint() -> None:
        if ckpt is not None:
            state.save(ckpt, name, saved_settings)
            _emit(callbacks, "checkpoint", {"step": state.step, "path": str(ckpt)})

    # The caller's global RNG is left alone; the loop's own (dropout) is seeded, or restored with the checkpoint.
    with torch.random.fork_rng(devices=cuda_devices):
        resumed = False
        if ckpt is not None and resume and ckpt.exists():
            state.restore(ckpt, saved_settings)
            resumed = True
        else:
            torch.manual_seed(settings.seed + 2)
        start, total, timer = state.step, settings.steps, state.timer
        was_training = model.training
        reset_peak_memory(device)
        _emit(callbacks, "start", {"step": start, "total": total, "name": name, "resumed": resumed})
        model.train()
        timer.start()
        try:
            for _ in range(start, total):
                loss = loop.step()
                done = state.step
                if done % settings.log_every == 0 or done == total:
                    record = loop.close_log_window()
                    _emit(callbacks, "log", {"step": done, "total": total, "record": record})
                _emit(callbacks, "step", {"step": done, "total": total, "loss": loss.detach()})
                if done in probes and done < total:
                    timer.stop()  # a probe's evaluation is not training cost
                    _emit(callbacks, "probe", {"step": done, "total": total, "cost": state.cost_now().to_dict()})
                    model.train()
                    timer.start()
                if ckpt is not None and settings.checkpoint_every and done % settings.checkpoint_every == 0:
                    if done < total:
                        timer.stop()  # checkpoint I/O is not training cost; this also closes the CUDA span
                        loop.watch.check(total, task)
                        checkpoint()
                        timer.start()
        finally:
            if timer.running:
                timer.stop()
            model.train(was_training)
        loop.watch.check(total, task)
        ran = state.steps_run > 0
        result_cost = state.settle()
        if ran:
            checkpoint()
    final = max(start, total)
    _emit(callbacks, "end", {"step": final, "total": total, "cost": result_cost.to_dict()})
    extra: dict[str, Any] = {}
    if sampler is not None and hasattr(sampler, "kept_lams"):
        extra["kept_lams"] = sampler.kept_lams()
    return TrainResult(history=state.history, cost=result_cost, final_step=final, extra=extra)


def _check_fit(model: nn.Module, task: Task, sampler: LamSampler | None, settings: TrainSettings, name: str) -> None:
    """``ConfigError`` when the model, the task's loss and the sampler do not fit together."""
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
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"training '{name}': the model has no trainable parameters")


class _Loop:
    """One optimiser step at a time (module doc, steps 1-5) and the running sums of the log window."""

    def __init__(self, state: TrainState, task: Task, settings: TrainSettings, params: tuple[Tensor, ...]) -> None:
        self.state, self.task, self.settings, self.params = state, task, settings, params
        self.watch = FiniteWatch()
        self.bf16 = settings.precision == "bf16"

    def step(self) -> Tensor:
        """Run the next step; returns its (device, 0-d) loss. Reads nothing back from the device."""
        state, settings, task, sampler = self.state, self.settings, self.task, self.state.sampler
        step = state.step
        idx = state.stream.next()
        lam = None
        if sampler is not None and task.n_lams > 0:  # _check_fit: a loss with λ has a sampler
            lam = sampler.sample(settings.batch_size, task.n_lams, state.lam_gen, step)
        with torch.autocast(device_type=state.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            total, dc, parts = task.batch_loss(state.model, idx, lam, channels_last=settings.channels_last)
        loss = sampler.reduce(total, dc, step) if sampler is not None else total.mean()
        self.watch.add(step + 1, loss, total, parts, idx)  # flags stay on the device until the next log
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if settings.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.params, settings.grad_clip)
        state.optimizer.step()
        state.scheduler.step()
        state.steps_run += 1
        state.step = step + 1
        sums = state.sums
        sums["loss"] = sums.get("loss", 0.0) + loss.detach().float()
        for key, value in parts.items():
            sums[key] = sums.get(key, 0.0) + value.detach().float().mean()
        state.n_sum += 1
        return loss

    def close_log_window(self) -> dict[str, float]:
        """Check finiteness, append the window's means to the history and start a new window."""
        state = self.state
        self.watch.check(self.settings.steps, self.task)
        record: dict[str, float] = {"step": state.step, "lr": float(state.scheduler.get_last_lr()[0])}
        record.update({k: float(v) / state.n_sum for k, v in state.sums.items()})
        state.history.append(record)
        state.sums, state.n_sum = {}, 0
        return record
