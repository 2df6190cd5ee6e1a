"""The reconstruction models a study trains, as specs built once from the config.

A :class:`ModelSpec` (name, kind, size, sampler, λ) flows from the study to the jobs (:mod:`.jobs`), what they
build (:meth:`hyperrecon.runs.context.RunContext.build_model`), the result tables (``costs.csv`` ``kind``) and the
report (:class:`hyperrecon.reporting.rundata.RunData` rebuilds the specs from ``config.json``), so that nothing
parses a model's kind, size or sampler back out of its name. Only a run whose config cannot say (a hand-made table)
falls back to :meth:`ModelSpec.from_name`, which reads sampler names with hyphens and λ written with exponents.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

KINDS = ("baseline", "hyper", "film")
_ARCHITECTURES = {"baseline": "unet", "hyper": "hyperunet", "film": "film-unet"}
_NUMBER = r"\d+(?:\.\d*)?(?:e[-+]?\d+)?|inf|nan"


def lam_label(lam: Iterable[float]) -> str:
    """``(0.5, 1.0)`` -> ``"0.5-1"``: λ in a baseline's name."""
    return "-".join(f"{v:g}" for v in lam)


@dataclass(frozen=True)
class ModelSpec:
    """One reconstruction model of a study.

    ``kind``: ``baseline`` (a U-Net at one fixed ``lam``), ``hyper`` (a HyperUNet of ``size`` trained with the λ
    sampler ``sampler``) or ``film`` (a FiLM U-Net trained with ``sampler``). ``name`` is the model's name in job
    names, file names and the result tables.
    """

    name: str
    kind: str
    lam: tuple[float, ...] | None = None
    size: str | None = None
    sampler: str | None = None

    @classmethod
    def baseline(cls, lam: Iterable[float]) -> ModelSpec:
        lam = tuple(float(v) for v in lam)
        return cls(f"baseline-{lam_label(lam)}", "baseline", lam=lam)

    @classmethod
    def hyper(cls, size: str, sampler: str) -> ModelSpec:
        return cls(f"hyper-{size}-{sampler}", "hyper", size=size, sampler=sampler)

    @classmethod
    def film(cls, sampler: str = "uniform") -> ModelSpec:
        return cls(f"film-{sampler}", "film", sampler=sampler)

    @classmethod
    def from_name(cls, name: str) -> ModelSpec | None:
        """The spec a name was made from (None for a name no spec makes): ``hyper-<size>-<sampler>`` (the size has
        no hyphen, the sampler may), ``film-<sampler>``, ``baseline-<λ1>[-<λ2>]`` (numbers as ``{:g}`` writes them,
        exponents included). Only for tables whose run config does not list its models."""
        head, _, rest = name.partition("-")
        if head == "hyper" and "-" in rest:
            size, _, sampler = rest.partition("-")
            return cls.hyper(size, sampler) if size and sampler else None
        if head == "film" and rest:
            return cls.film(rest)
        if head == "baseline" and re.fullmatch(rf"(?:{_NUMBER})(?:-(?:{_NUMBER}))*", rest):
            return cls(name, "baseline", lam=tuple(float(v) for v in re.findall(_NUMBER, rest)))
        return None

    @property
    def conditional(self) -> bool:
        """Takes λ as an input (HyperRecon, FiLM), as opposed to a baseline trained at one λ."""
        return self.kind != "baseline"

    @property
    def architecture(self) -> str:
        """The network it builds (:func:`hyperrecon.resolve.build_recon_model`): unet, hyperunet, film-unet."""
        return _ARCHITECTURES[self.kind]

    @property
    def params(self) -> dict[str, Any]:
        """The job parameters of its training (``jobs/<name>.json`` ``spec``)."""
        if self.kind == "baseline":
            return {"lam": list(self.lam or ())}
        if self.kind == "hyper":
            return {"size": self.size, "sampler": self.sampler}
        return {"sampler": self.sampler}


def _specs(grid: Iterable[float], n_lams: int, sizes: Iterable[str], samplers: Iterable[str], film: bool):
    specs = [ModelSpec.baseline(p) for p in itertools.product(list(grid), repeat=n_lams)]
    specs += [ModelSpec.hyper(size, sampler) for size in sizes for sampler in samplers]
    if film:
        specs.append(ModelSpec.film("uniform"))
    return specs


def model_specs(study: Any) -> list[ModelSpec]:
    """Every reconstruction model a study (:class:`hyperrecon.config.Study`) trains: the baselines on the grid
    (the axis values for SL, their product for AO, λ1 slowest), HyperRecon per size and sampler, then FiLM."""
    h = study.hyper
    return _specs(study.baselines.grid, study.n_lams, h.sizes, h.samplers, h.film)


def model_specs_from_config(config: Mapping[str, Any]) -> list[ModelSpec] | None:
    """:func:`model_specs` of a resolved study as ``config.json`` keeps it (``study``); None when it lacks the
    sections that say (a hand-made run folder)."""
    try:
        hyper, grid = config["hyper"], config["baselines"]["grid"]
        n_lams = 2 if config["kind"] == "ao" else 1
        return _specs(grid, n_lams, hyper["sizes"], hyper["samplers"], bool(hyper["film"]))
    except (KeyError, TypeError):
        return None
