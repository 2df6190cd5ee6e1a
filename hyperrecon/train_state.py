"""The state of one training run, and the one definition of what its checkpoint holds.

:class:`TrainState` holds everything that changes while a model trains: the model, optimiser and learning-rate
scheduler, the data order (:class:`IndexStream` and its generator), the λ generator and the sampler (DHS history),
the completed steps, the loss history, the running loss sums of the open log window, the global RNG and the cost.
:meth:`TrainState.state_dict` and :meth:`TrainState.load_state_dict` read one table of parts (payload key ->
getter, setter), so a checkpoint's payload is spelled once and saving and restoring cannot drift apart. The values
are tensors and plain containers only, so ``torch.load(weights_only=True)`` reads them (:mod:`hyperrecon.checkpoints`).

The global RNG parts (``torch_rng``, ``cuda_rng`` on a CUDA device) are set when restoring: restore inside
``torch.random.fork_rng`` so that the caller's RNG is left alone (``train`` does).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from .checkpoints import CHECKPOINT_VERSION, load_checkpoint, save_checkpoint
from .errors import CheckpointError
from .samplers import LamSampler
from .timing import CostRecord, DeviceTimer, peak_memory_mb

if TYPE_CHECKING:
    from .training import TrainSettings

# Settings that must match between a checkpoint and a resumed run (others, e.g. steps, may change).
RESUME_MUST_MATCH = ("batch_size", "seed", "lr", "lr_schedule")


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


def _lr_factor(schedule: str, steps: int) -> Callable[[int], float]:
    """Learning-rate factor at a step: 1 (``constant``) or a half cosine from 1 to 0 over ``steps`` (``cosine``)."""
    if schedule == "cosine":
        return lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, steps) / steps))
    return lambda s: 1.0


@dataclass(frozen=True)
class _Part:
    """One entry of a checkpoint: how to read it from the state and how to put it back."""

    get: Callable[[], Any]
    set: Callable[[Any], object]
    optional: bool = False  # may be absent (older checkpoints; a CPU checkpoint resumed on a GPU)


class TrainState:
    """Everything a training run carries from step to step (see the module doc).

    Args:
        model, optimizer, scheduler: what trains; the scheduler steps once per optimiser step.
        data_gen: generator of the data order (seeded ``seed``); ``stream`` draws its permutations from it.
        lam_gen: generator of the sampler's λ (seeded ``seed + 1``).
        sampler: the λ sampler, or None for tasks without λ.
        cost: the cost record of the work before this session (zero for a fresh run).
        device: where the model trains; restored loss sums move there.

    ``step`` counts completed steps, ``history`` holds one record per log, ``sums``/``n_sum`` the running sums of the
    open log window (device tensors). ``steps_run`` and ``timer`` account for this session only: :meth:`cost_now`
    adds them to ``cost``.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        data_gen: torch.Generator,
        stream: IndexStream,
        lam_gen: torch.Generator,
        sampler: LamSampler | None,
        cost: CostRecord,
        device: torch.device,
    ) -> None:
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.data_gen, self.stream, self.lam_gen, self.sampler = data_gen, stream, lam_gen, sampler
        self.cost, self.device = cost, device
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.sums: dict[str, Tensor] = {}
        self.n_sum = 0
        self.steps_run = 0
        self.timer = DeviceTimer(device)

    @classmethod
    def start(
        cls,
        model: nn.Module,
        n_samples: int,
        sampler: LamSampler | None,
        settings: TrainSettings,
        device: str | torch.device,
        name: str,
    ) -> TrainState:
        """Step 0 of a run: Adam over the trainable parameters, its schedule, seeded data and λ generators."""
        device = torch.device(device)
        params = [p for p in model.parameters() if p.requires_grad]
        # Fused Adam: one kernel over all parameters instead of a Python loop of small ops (HyperRecon-L's 19M head
        # parameters: 18 ms vs 89 ms a step on the 2-core CPU; reports/benchmarks/README.md).
        fused = device.type in ("cpu", "cuda") and all(p.dtype.is_floating_point for p in params)
        optimizer = torch.optim.Adam(params, lr=settings.lr, fused=fused or None)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(settings.lr_schedule, settings.steps))
        data_gen = torch.Generator().manual_seed(settings.seed)
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
        stream = IndexStream(n_samples, settings.batch_size, data_gen)
        lam_gen = torch.Generator().manual_seed(settings.seed + 1)
        return cls(model, optimizer, scheduler, data_gen, stream, lam_gen, sampler, cost, device)

    # -- accounting ----------------------------------------------------------------------------------------------

    def cost_now(self) -> CostRecord:
        """The cost so far: the restored ``cost`` plus this session's steps, timer and peak memory."""
        if self.steps_run == 0:
            return self.cost
        return self.cost.plus(self.steps_run, self.timer.device_seconds, self.timer.wall_seconds, self.peak_mb())

    def peak_mb(self) -> float:
        return peak_memory_mb(self.device)

    def settle(self) -> CostRecord:
        """Fold this session's work into ``cost`` (the timer stopped), so that the result and the final checkpoint
        carry the same record; returns it."""
        self.cost, self.steps_run = self.cost_now(), 0
        return self.cost

    # -- the payload, defined once -------------------------------------------------------------------------------

    def _parts(self) -> dict[str, _Part]:
        """Payload key -> (getter, setter), in restore order. Getters return CPU tensors and plain containers."""

        def attr(name: str, cast: Callable[[Any], Any]) -> _Part:
            return _Part(lambda: getattr(self, name), lambda value: setattr(self, name, cast(value)))

        sampler = self.sampler
        parts = {
            "model": _Part(self.model.state_dict, self.model.load_state_dict),
            "optimizer": _Part(self.optimizer.state_dict, self.optimizer.load_state_dict),
            "scheduler": _Part(self.scheduler.state_dict, self.scheduler.load_state_dict),
            "data_generator": _Part(self.data_gen.get_state, self.data_gen.set_state),
            "lam_generator": _Part(self.lam_gen.get_state, self.lam_gen.set_state),
            "sampler": _Part(
                sampler.state_dict if sampler is not None else dict,
                sampler.load_state_dict if sampler is not None else lambda _: None,
            ),
            # The running sums of the log window the checkpoint fell in (absent from checkpoints that predate
            # them: then the first record after the resume averages only the steps run since).
            "log_sums": _Part(
                lambda: {k: v.detach().cpu() for k, v in self.sums.items()},
                lambda value: setattr(self, "sums", {str(k): v.to(self.device) for k, v in value.items()}),
                optional=True,
            ),
            "log_count": _Part(lambda: self.n_sum, lambda value: setattr(self, "n_sum", int(value)), optional=True),
            "perm": _Part(lambda: self.stream.perm, self._set_perm),
            "perm_pos": _Part(lambda: self.stream.pos, lambda value: setattr(self.stream, "pos", int(value))),
            "step": attr("step", int),
            "history": attr("history", list),
            "cost": _Part(lambda: self.cost_now().to_dict(), self._set_cost),
            "torch_rng": _Part(torch.get_rng_state, torch.set_rng_state),
        }
        if self.device.type == "cuda":
            parts["cuda_rng"] = _Part(
                lambda: torch.cuda.get_rng_state(self.device),
                lambda value: torch.cuda.set_rng_state(value, self.device),
                optional=True,
            )
        return parts

    def _set_perm(self, perm: Tensor) -> None:
        if perm.numel() != self.stream.n:
            raise CheckpointError(f"written for {perm.numel()} training samples, but the task has {self.stream.n}")
        self.stream.perm = perm

    def _set_cost(self, saved: dict[str, Any]) -> None:
        self.cost = CostRecord.from_dict({**self.cost.to_dict(), **saved, "device": str(self.device)})

    def state_dict(self) -> dict[str, Any]:
        """Every part's current value (the checkpoint payload without its header)."""
        return {key: part.get() for key, part in self._parts().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Put every part back from ``state``; ``KeyError`` for a missing part that is not optional."""
        for key, part in self._parts().items():
            if key in state:
                part.set(state[key])
            elif not part.optional:
                raise KeyError(f"missing '{key}'")

    # -- checkpoint files ----------------------------------------------------------------------------------------

    def save(self, path: Path, name: str, settings: dict[str, Any]) -> None:
        """Write the checkpoint atomically: a header (format version, model name, settings) and the state."""
        header = {"format_version": CHECKPOINT_VERSION, "name": name, "settings": settings}
        save_checkpoint(path, {**header, **self.state_dict()})

    def restore(self, path: Path, settings: dict[str, Any]) -> None:
        """Load the checkpoint at ``path`` into this state.

        Raises:
            CheckpointError: the file is damaged, was written with other ``RESUME_MUST_MATCH`` settings, or does not
                fit this model, optimiser or data (naming the file and the first mismatch).
        """
        payload = load_checkpoint(path)
        saved = payload["settings"]
        for key in RESUME_MUST_MATCH:
            if saved.get(key) != settings[key]:
                raise CheckpointError(
                    f"{path}: written with {key}={saved.get(key)!r}, but the settings say {settings[key]!r}; "
                    "resume with the same settings or start afresh (resume=False)"
                )
        try:
            self.load_state_dict(payload)
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
        except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"{path}: does not fit this model/optimiser ({first})") from exc
