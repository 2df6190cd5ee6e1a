"""Per-process run context: provenance, and the data, forward model, tasks and models a job needs.

:class:`RunContext` loads each thing lazily and once per process (a worker runs many jobs on the same data);
:func:`load_weights` reads saved model weights with ``weights_only=True``.
"""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from .config import Study
from .errors import CheckpointError, RunError
from .io import read_json
from .jobs import job_seed, recon_models
from .resolve import build_forward_model, build_recon_model

Progress = Callable[[str, dict[str, Any]], None]


# ---------------------------------------------------------------------------------------------------------------
# Provenance


def _git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def provenance(device: str, precision: str) -> dict[str, Any]:
    import importlib.metadata as md

    import torch

    versions = {}
    for pkg in ("hyperrecon", "torch", "numpy", "optuna", "scikit-image", "scipy", "nilearn"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "git_sha": _git_sha(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "device": device,
        "device_name": device_name(device),
        "precision": precision,
        "threads": torch.get_num_threads(),
    }


# ---------------------------------------------------------------------------------------------------------------
# Per-process context: data, forward model, tasks (loaded lazily, once per process)


@dataclass
class RunContext:
    run_dir: Path
    study: Study
    device: str
    precision: str
    progress: Progress | None = None
    threads: int | None = None
    """CPU threads every job uses (the run's, from ``run.json``); None: leave the process's setting."""
    _cache: dict[str, Any] = field(default_factory=dict)

    # -- data ------------------------------------------------------------------------------------------------

    @cached_property
    def bundle(self):
        return load_bundle(self.study)

    @cached_property
    def forward_model(self):
        return build_forward_model(self.study)

    def eval_data(self, split: str, limit: int | None):
        from .evaluation import EvalData

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

        from .losses import CompositeLoss
        from .tasks import ReconTask

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

        from .tasks import SegTask

        tr = self.bundle.train
        return SegTask(
            images=torch.from_numpy(tr.images).unsqueeze(1).float(),
            labels=torch.from_numpy(tr.labels.astype("int64")),
            n_classes=int(self.bundle.n_classes),
        )

    def for_replicate(self, replicate: int) -> RunContext:
        """The context of replicate ``replicate`` (>= 1): its folder and seed (:func:`hyperrecon.jobs.replicate_seed`),
        made once per process (its data are loaded once)."""
        import dataclasses

        from .jobs import replicate_dir, replicate_seed

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
                replicate_dir(self.run_dir, replicate), study, self.device, self.precision, progress=progress
            )
        return self._cache[key]

    # -- settings, scales, models ------------------------------------------------------------------------------

    def settings(self, name: str, steps: int):
        from .training import TrainSettings

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
        path = self.run_dir / "scales.json"
        if not path.exists():
            raise RunError(f"{path}: the loss scales have not been computed yet (job 'scales' must finish first)")
        return list(read_json(path)["scales"])

    def model_path(self, name: str) -> Path:
        return self.run_dir / "models" / f"{name}.pt"

    def build_model(self, name: str):
        """The architecture of a named model of this run (weights not loaded)."""
        if name == "seg":
            from .resolve import build_seg_model

            return build_seg_model(self.study, int(self.bundle.n_classes))
        for model_name, kind, params in recon_models(self.study):
            if model_name == name:
                if kind == "baseline":
                    return build_recon_model("unet", self.study)
                if kind == "hyper":
                    return build_recon_model("hyperunet", self.study, params["size"])
                return build_recon_model("film-unet", self.study)
        raise RunError(f"no model named '{name}' in study {self.study.name}")

    def load_model(self, name: str):
        path = self.model_path(name)
        model = self.build_model(name)
        state = load_weights(path)
        try:
            model.load_state_dict(state)
        except Exception as exc:
            raise CheckpointError(f"{path}: model weights do not fit model '{name}' ({first_line(exc)})") from exc
        return model.to(self.device).eval()


def load_bundle(study: Study):
    """The study's validated data (``DataError`` naming the file on bad data)."""
    from .data import load_data

    s = study
    return load_data(
        s.data.source,
        image_size=s.data.image_size,
        seed=s.seed,
        path=s.data.path,
        params=dict(s.data.params),
        where=f"{s.source_file} [data]",
    )


def ran_with(device: str, precision: str) -> dict[str, Any]:
    """What a job ran with that can change its numbers: threads, device, CPU/GPU kind, precision, torch version.
    Stored per job (``jobs/<name>.json`` ``ran_with``) so that a run finished elsewhere says what it mixed."""
    import torch

    return {
        "threads": torch.get_num_threads(),
        "device": device,
        "device_name": device_name(device),
        "precision": precision,
        "torch": torch.__version__,
    }


def ran_with_summary(run_dir: Path) -> str | None:
    """One line on what the jobs of a run ran with (``jobs/*.json`` ``ran_with``), saying when they differ (a run
    resumed on another machine or CPU kind, whose numbers may then differ from a run on one setting). None when no
    job recorded it (runs made before it was recorded)."""
    import json
    from collections import Counter

    seen: Counter[str] = Counter()
    for path in sorted(Path(run_dir).glob("jobs/*.json")):
        try:
            rw = json.loads(path.read_text(encoding="utf-8")).get("ran_with")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(rw, dict):
            seen[
                f"{rw.get('threads')} threads, {rw.get('device_name')} ({rw.get('device')}), {rw.get('precision')}, "
                f"torch {rw.get('torch')}"
            ] += 1
    if not seen:
        return None
    if len(seen) == 1:
        return f"all {sum(seen.values())} jobs: {next(iter(seen))}"
    parts = "; ".join(f"{n} jobs: {setting}" for setting, n in seen.most_common())
    return f"MIXED settings ({parts}): numbers may differ from a run on one setting"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_weights(path: Path) -> dict[str, Any]:
    """A state dict saved by a training job (:mod:`hyperrecon.executors`), read with ``weights_only=True``."""
    import torch

    from .checkpoints import read_torch_file

    if not Path(path).exists():
        raise RunError(f"{path}: model weights missing (its training job has not finished)")
    state = read_torch_file(path, "model weights")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a model state dict (expected a mapping of names to tensors)")
    return state
