"""A run as one object: its folder, study, ledger, device and threads, and what a process loads once for its jobs.

:class:`RunContext` (alias :class:`Run`) is what :mod:`.orchestrate` makes or reopens and what every job receives:
the data, forward model, tasks and models are loaded lazily and once per process (a worker runs many jobs on the
same data). :func:`load_weights` reads saved model weights with ``weights_only=True``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Study
from ..errors import CheckpointError, RunError
from ..io import read_json
from ..resolve import build_forward_model, build_recon_model
from .folder import RunFolder
from .jobs import job_seed
from .models import ModelSpec, model_specs
from .provenance import device_name, provenance, ran_with, ran_with_summary  # noqa: F401 - old import path

Progress = Callable[[str, dict[str, Any]], None]


# ---------------------------------------------------------------------------------------------------------------
# Per-process context: data, forward model, tasks (loaded lazily, once per process)


@dataclass
class RunContext:
    """One run (or one replicate of it) in this process. ``run_dir``: its folder (:attr:`folder` gives every path);
    ``run_id`` and ``storage``: its ledger (empty for a context that runs jobs without one, as the calibration of
    :mod:`hyperrecon.estimate`); ``device``, ``precision``; ``threads``: CPU threads every job uses (``run.json``
    ``threads``; None leaves the process's setting); ``progress``: where jobs report."""

    run_dir: Path
    study: Study
    device: str
    precision: str
    progress: Progress | None = None
    threads: int | None = None
    run_id: str = ""
    storage: str = ""
    """The ledger's URL (a journal file's path, or a database URL with the password when one was given)."""
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)

    @property
    def folder(self) -> RunFolder:
        """Every path of this run's folder (of this replicate's, for a replicate's context)."""
        return RunFolder(self.run_dir)

    @cached_property
    def models(self) -> list[ModelSpec]:
        """The reconstruction models of the study, built once (:func:`.models.model_specs`)."""
        return model_specs(self.study)

    def model(self, name: str) -> ModelSpec:
        """The spec of a named reconstruction model; ``RunError`` when the study has none of that name."""
        for m in self.models:
            if m.name == name:
                return m
        raise RunError(f"no model named '{name}' in study {self.study.name}")

    # -- data ------------------------------------------------------------------------------------------------

    @cached_property
    def bundle(self):
        return load_bundle(self.study)

    @cached_property
    def forward_model(self):
        return build_forward_model(self.study)

    def eval_data(self, split: str, limit: int | None):
        from ..evaluation import EvalData

        key = f"eval-{split}-{limit}"
        if key not in self._cache:
            part = getattr(self.bundle, split)
            n = len(part) if limit is None else min(limit, len(part))
            labels = part.labels[:n] if part.labels is not None else None
            # slice ids (`<volume>/<index>`), so that statistics can group slices by subject (reporting/stats.py)
            self._cache[key] = EvalData.from_arrays(
                part.images[:n],
                labels,
                self.forward_model,
                generator_seed=self.study.seed + {"train": 0, "val": 1, "test": 2}[split],
                ids=list(part.ids[:n]),
                subjects=part.subject_ids()[:n],  # the statistics' unit (reporting/stats.py)
            )
        return self._cache[key]

    def recon_task(self, scales: list[float], split: str = "train", limit: int | None = None):
        """Training data and composite loss; ``split="val"`` gives the same for validation slices."""
        import torch

        from ..losses import CompositeLoss
        from ..tasks import ReconTask

        key = f"xy-{split}-{limit}"
        if key not in self._cache:
            part = getattr(self.bundle, split)
            images = torch.from_numpy(part.images[:limit]).unsqueeze(1).float()
            gen = torch.Generator().manual_seed(self.study.seed + {"train": 10, "val": 11, "test": 12}[split])
            y = self.forward_model.measure(images, generator=gen)
            self._cache[key] = (self.forward_model.network_input(y), images, y)
        inputs, targets, y = self._cache[key]
        loss = CompositeLoss(list(self.study.loss.terms), scales)
        return ReconTask(
            inputs=inputs,
            targets=targets if loss.supervised else None,
            measurements=y,
            forward_model=self.forward_model,
            loss=loss,
        )

    def seg_task(self):
        import torch

        from ..tasks import SegTask

        tr = self.bundle.train
        return SegTask(
            images=torch.from_numpy(tr.images).unsqueeze(1).float(),
            labels=torch.from_numpy(tr.labels.astype("int64")),
            n_classes=int(self.bundle.n_classes),
        )

    def for_replicate(self, replicate: int) -> RunContext:
        """The context of replicate ``replicate`` (>= 1): its folder and seed (:func:`.jobs.replicate_seed`),
        made once per process (its data are loaded once)."""
        import dataclasses

        from .jobs import replicate_seed

        key = f"replicate-{replicate}"
        if key not in self._cache:
            study = dataclasses.replace(self.study, seed=replicate_seed(self.study, replicate))
            progress = None
            if self.progress is not None:
                parent = self.progress

                def progress(event: str, info: dict[str, Any]) -> None:
                    job = info.get("job")
                    parent(event, {**info, "job": f"r{replicate}/{job}"} if job else info)

            self._cache[key] = RunContext(
                self.folder.replicate(replicate).root,
                study,
                self.device,
                self.precision,
                progress=progress,
                threads=self.threads,
                run_id=self.run_id,
                storage=self.storage,
            )
        return self._cache[key]

    # -- settings, scales, models ------------------------------------------------------------------------------

    def settings(self, name: str, steps: int):
        from ..training import TrainSettings

        return TrainSettings.from_config(
            self.study.train,
            steps=steps,
            precision=self.precision,
            seed=job_seed(self.study, name),
            log_every=max(1, min(50, steps // 20 or 1)),
        )

    def scales(self) -> list[float]:
        given = self.study.loss.scales
        if not isinstance(given, str):
            return list(given)
        path = self.folder.scales_json
        if not path.exists():
            raise RunError(f"{path}: the loss scales have not been computed yet (job 'scales' must finish first)")
        return list(read_json(path)["scales"])

    def model_path(self, name: str) -> Path:
        return self.folder.weights(name)

    def build_model(self, name: str):
        """The architecture of a named model of this run (weights not loaded)."""
        if name == "seg":
            from ..resolve import build_seg_model

            return build_seg_model(self.study, int(self.bundle.n_classes))
        spec = self.model(name)
        return build_recon_model(spec.architecture, self.study, spec.size)

    def load_model(self, name: str):
        path = self.model_path(name)
        model = self.build_model(name)
        state = load_weights(path)
        try:
            model.load_state_dict(state)
        except Exception as exc:
            raise CheckpointError(f"{path}: model weights do not fit model '{name}' ({first_line(exc)})") from exc
        model = model.to(self.device).eval()
        return self._calibrated(model) if name != "seg" else model

    def _calibrated(self, model):
        """``model`` wrapped to re-estimate its BatchNorm statistics per λ when ``evaluation.bn_calibration`` asks
        (λ-conditioned models with BatchNorm only; others unchanged). The calibration slices are spread evenly over
        the training split in a seeded random order: a calibration batch of neighbouring slices has too little variance
        (measured: 7 dB lower PSNR than random batches for HyperRecon-S, sl-brain-cs standard)."""
        from ..models.bn_calibration import PerLamBatchNorm, needs_calibration

        n = self.study.evaluation.bn_calibration
        if n == 0 or not needs_calibration(model):
            return model
        train = self.eval_data("train", None)
        idx = np.random.default_rng(self.study.seed).permutation(len(train))[:n]
        inputs = train.subset(idx.tolist()).inputs
        return PerLamBatchNorm(model, inputs).to(self.device).eval()


def load_bundle(study: Study):
    """The study's validated data (``DataError`` naming the file on bad data)."""
    from ..data import load_data

    s = study
    return load_data(
        s.data.source,
        image_size=s.data.image_size,
        seed=s.seed,
        path=s.data.path,
        params=dict(s.data.params),
        where=f"{s.source_file} [data]",
    )


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_weights(path: Path) -> dict[str, Any]:
    """A state dict saved by a training job (:mod:`.executors`), read with ``weights_only=True``."""
    import torch

    from ..checkpoints import read_torch_file

    if not Path(path).exists():
        raise RunError(f"{path}: model weights missing (its training job has not finished)")
    state = read_torch_file(path, "model weights")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a model state dict (expected a mapping of names to tensors)")
    return state
