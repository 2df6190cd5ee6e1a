"""The jobs of a study and the phases they run in.

A run is a fixed list of named jobs derived from the resolved study and its model specs (:mod:`.models`); the
ledger (:mod:`.ledger`) hands them out. Phases order the work that depends on other work:

====== ======================================================================================================
phase  jobs
====== ======================================================================================================
0      ``seg`` (downstream segmentation U-Net, when the data have labels); SL with ``scales = "auto"``: the two
       single-term baselines (λ = 0 and λ = 1); AO with ``scales = "auto"``: ``scales`` (calibration)
1      SL with ``scales = "auto"``: ``scales`` (from the single-term baselines)
2      every other training: baselines on the grid, ``hyper-<size>-<sampler>``, ``film-uniform``
3      ``eval-<model>`` for every reconstruction model (test set over the evaluation grid, validation objective)
4      ``search-baselines`` (replayed from the trained grid), ``search-live`` (with ``search.live``: trials that
       train a U-Net) and ``search-<model>`` for each conditional model
====== ======================================================================================================

Replicates (``replicates = N`` in the study): replicate 0 is the jobs above; replicate r >= 1 repeats every job
but the searches as ``r<r>/<job>`` in the same phase, with ``"replicate": r`` in its spec, seed ``seed + r`` and
its files under ``<run>/replicates/r<r>/`` (:func:`replicate_seed`, :meth:`.folder.RunFolder.replicate`).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

from ..config import Study
from .models import ModelSpec, lam_label, model_specs  # noqa: F401 - lam_label, ModelSpec: old import path

PHASE_FIRST, PHASE_SCALES, PHASE_TRAIN, PHASE_EVAL, PHASE_SEARCH = range(5)


@dataclass(frozen=True)
class JobSpec:
    name: str
    phase: int
    kind: str  # baseline | hyper | film | seg | scales | eval | search
    params: dict[str, Any]

    def as_tuple(self) -> tuple[str, int, dict[str, Any]]:
        return self.name, self.phase, {"kind": self.kind, **self.params}


def is_vertex(lam: tuple[float, ...]) -> bool:
    """λ that puts all weight on one term (SL: λ = 0 or 1)."""
    return len(lam) == 1 and lam[0] in (0.0, 1.0)


def job_seed(study: Study, name: str) -> int:
    """A stable per-job seed derived from the study seed and the job name."""
    return (study.seed * 1_000_003 + zlib.crc32(name.encode())) % (2**31 - 1)


def recon_models(study: Study) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, kind, params) of every reconstruction model: :func:`.models.model_specs` as tuples, for old callers."""
    return [(m.name, m.kind, m.params) for m in model_specs(study)]


def replicate_seed(study: Study, replicate: int) -> int:
    """The study seed of replicate ``replicate`` (0: the study's own seed)."""
    return int(study.seed) + int(replicate)


def replicate_dir(run_dir, replicate: int):
    """Folder of replicate ``replicate``'s files (:meth:`.folder.RunFolder.replicate`)."""
    from .folder import RunFolder

    return RunFolder(run_dir).replicate(replicate).root


def split_replicate(name: str) -> tuple[int, str]:
    """``"r2/eval-x"`` -> ``(2, "eval-x")``; a name without a replicate prefix -> ``(0, name)``."""
    head, sep, rest = name.partition("/")
    if sep and head[:1] == "r" and head[1:].isdigit():
        return int(head[1:]), rest
    return 0, name


def study_jobs(study: Study, *, has_labels: bool) -> list[JobSpec]:
    """Every job of the run: replicate 0's, then those of replicates 1 .. N-1 (no searches)."""
    jobs = _replicate_jobs(study, has_labels=has_labels)
    for r in range(1, int(getattr(study, "replicates", 1))):
        jobs += [
            JobSpec(f"r{r}/{j.name}", j.phase, j.kind, {**j.params, "replicate": r})
            for j in _replicate_jobs(study, has_labels=has_labels)
            if j.kind != "search"
        ]
    return jobs


def _replicate_jobs(study: Study, *, has_labels: bool) -> list[JobSpec]:
    auto = isinstance(study.loss.scales, str)
    jobs: list[JobSpec] = []
    if study.segmentation.enabled and has_labels:
        jobs.append(JobSpec("seg", PHASE_FIRST, "seg", {}))
    if auto and study.kind == "ao":
        jobs.append(JobSpec("scales", PHASE_FIRST, "scales", {}))
    if auto and study.kind == "sl":
        jobs.append(JobSpec("scales", PHASE_SCALES, "scales", {}))
    specs = model_specs(study)
    for m in specs:
        phase = PHASE_TRAIN
        if m.kind == "baseline" and auto and study.kind == "sl" and is_vertex(m.lam or ()):
            phase = PHASE_FIRST  # trained on one term alone: its scale does not matter, and it defines the scales
        jobs.append(JobSpec(m.name, phase, m.kind, m.params))
    for m in specs:
        jobs.append(JobSpec(f"eval-{m.name}", PHASE_EVAL, "eval", {"model": m.name, "model_kind": m.kind}))
    jobs.append(JobSpec("search-baselines", PHASE_SEARCH, "search", {"target": "baselines"}))
    if study.search.live.strategies:  # trials train U-Nets at the suggested λ (hyperrecon.search.live)
        jobs.append(JobSpec("search-live", PHASE_SEARCH, "search", {"target": "baselines-live"}))
    for m in specs:
        if m.conditional:
            jobs.append(JobSpec(f"search-{m.name}", PHASE_SEARCH, "search", {"target": m.name}))
    return jobs
