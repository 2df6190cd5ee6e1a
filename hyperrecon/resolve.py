"""From a checked config to live objects: plugin names, devices, precisions, forward model, networks.

``resolve(study)`` is what ``hrbench validate`` runs: it imports the study's plugins, looks every name up in its
registry, checks every parameter table against the constructor it feeds, and builds what is cheap to build (the
forward model with its mask, each network, each sampler and strategy, the composite loss). It trains nothing and
reads no data beyond checking that a given data path exists.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from .config import Study
from .errors import ConfigError, DataError, UnknownNameError
from .plugins import load_plugins, registry

# ---------------------------------------------------------------------------------------------------------------
# Device and precision


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``. ``cuda`` without a GPU is a usage error."""
    import torch

    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigError(f"--device: expected auto, cpu or cuda[:N], got '{device}'")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA device is visible to torch {torch.__version__}")
    return device


# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA, lower case) under which its kernels still use native bf16 dot products.
_BF16_ISAS = (
    "avx512_core_bf16",
    "avx512_core_fp16",
    "avx512_core_amx",
    "avx512_core_amx_fp16",
    "avx10_1_512",
    "avx10_1_512_amx",
    "avx10_1_512_amx_fp16",
    "avx10_2_512",
    "avx10_2_512_amx_2",
    "all",
    "default",
)


def isa_capped_below_bf16() -> bool:
    """True when the environment caps the CPU kernels below native bf16: ``ONEDNN_MAX_CPU_ISA`` (or the older
    ``DNNL_MAX_CPU_ISA``) names an ISA without bf16 dot products (e.g. ``AVX2``, ``AVX512_CORE``), or
    ``ATEN_CPU_CAPABILITY`` is ``avx2``/``default``. Both are read by torch at start-up, so a run under them
    behaves like a CPU without native bf16 (reports/benchmarks: the AVX2 emulation), and ``auto`` must pick fp32."""
    isa = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").strip().lower()
    aten = os.environ.get("ATEN_CPU_CAPABILITY", "").strip().lower()
    return bool(isa and isa not in _BF16_ISAS) or aten in ("avx2", "default")


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True when the CPU has AMX or AVX512-BF16, where bf16 autocast beats fp32 (measured: ~3x for a U-Net step),
    and the environment does not cap the kernels below it (:func:`isa_capped_below_bf16`)."""
    if isa_capped_below_bf16():
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("amx_bf16", "avx512_bf16"))


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` -> ``bf16`` on GPUs with native bf16 (compute capability >= 8.0) and on CPUs with
    AMX/AVX512-BF16, else ``fp32``.
    """
    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        from .accel import fast_bf16

        return "bf16" if fast_bf16(device) else "fp32"  # native bf16 tensor cores (Ampere+), not emulation
    return "bf16" if cpu_has_fast_bf16() else "fp32"


# ---------------------------------------------------------------------------------------------------------------
# Builders used by validate and by the study runner


def image_shape(study: Study) -> tuple[int, int]:
    return (study.data.image_size, study.data.image_size)


def build_forward_model(study: Study, cache_dir: str | None = None):
    where = f"{study.source_file} [forward] params"
    params = dict(study.forward.params)
    extra: dict[str, Any] = {"image_shape": image_shape(study)}
    if (
        cache_dir is not None
        and "cache_dir" not in params
        and _accepts(registry("forward-models").get(study.forward.name), "cache_dir")
    ):
        extra["cache_dir"] = cache_dir
    return registry("forward-models").build(study.forward.name, params, where=where, **extra)


def _accepts(obj: Any, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return False


def build_recon_model(kind: str, study: Study, size: str | None = None):
    """``kind`` in {"unet", "hyperunet", "film-unet"}: a baseline U-Net, the study's HyperRecon model (the
    registered model ``[hyper] model``, by default ``hyperunet``, of ``size`` S/M/L) or the FiLM U-Net."""
    models = registry("models")
    common = {"width": study.model.width, "residual": study.model.residual}
    if kind == "unet":
        return models.build("unet", common)
    if kind == "hyperunet":
        return build_hyper_model(study, size)
    if kind == "film-unet":
        return models.build("film-unet", {"n_lams": study.n_lams, **common})
    raise ValueError(kind)


def build_seg_model(study: Study, n_classes: int):
    """The downstream segmentation U-Net: one image channel in, ``n_classes`` logits out, ``segmentation.width``."""
    from .models import UNet

    return UNet(in_channels=1, out_channels=int(n_classes), width=int(study.segmentation.width))


def build_hyper_model(study: Study, size: str | None):
    """The registered model ``[hyper] model`` with ``[hyper] model_params``; hrbench itself passes ``n_lams``,
    ``width`` and ``residual`` (from ``[model]``) and ``size``, each where the constructor takes it."""
    name, models = study.hyper.model, registry("models")
    cls = models.get(name, where=f"{study.source_file} [hyper] model")
    supplied = {"n_lams": study.n_lams, "width": study.model.width, "residual": study.model.residual, "size": size}
    extra = {k: v for k, v in supplied.items() if _accepts(cls, k)}
    return models.build(name, study.hyper.model_params, where=f"{study.source_file} [hyper] model_params", **extra)


def check_hyper_model(study: Study) -> dict[str, int]:
    """Check ``[hyper] model`` (a registered λ-conditioned model), its ``model_params`` and ``sizes`` by building
    each size; ``UnknownNameError``/``ConfigError`` naming the study file and key. Returns parameter counts."""
    from .models import count_parameters

    src, name = study.source_file, study.hyper.model
    cls = registry("models").get(name, where=f"{src} [hyper] model")
    if getattr(cls, "conditional", False) is not True:
        raise ConfigError(
            f"{src} [hyper] model: model '{name}' does not take λ (conditional is not True); expected a "
            "λ-conditioned model such as 'hyperunet' or 'film-unet'"
        )
    if not _accepts(cls, "size") and len(study.hyper.sizes) > 1:
        raise ConfigError(
            f"{src} [hyper] sizes: model '{name}' has no size parameter, so exactly one size must be given, "
            f"but got sizes={list(study.hyper.sizes)}"
        )
    return {f"{name}-{size}": count_parameters(build_hyper_model(study, size)) for size in study.hyper.sizes}


def build_sampler(study: Study, name: str):
    where = f"{study.source_file} [hyper] sampler_params.{name}"
    params = dict(study.hyper.sampler_params.get(name, {}))
    if study.hyper.groups is not None and "groups" not in params and _accepts(registry("samplers").get(name), "groups"):
        params["groups"] = study.hyper.groups
    has_dc = "dc" in study.loss.terms
    extra = {"has_dc": has_dc} if _accepts(registry("samplers").get(name), "has_dc") else {}
    return registry("samplers").build(name, params, where=where, **extra)


def build_strategy(study: Study, name: str, seed: int):
    """The sampler of strategy ``name`` (``sampler`` or ``sampler+pruner``) with the study's parameters."""
    from .strategies import build_strategy_sampler, split_strategy

    sampler = split_strategy(name)[0]
    return build_strategy_sampler(
        sampler,
        dict(study.search.strategy_params.get(sampler, {})),
        n_lams=study.n_lams,
        budget=study.search.budget,
        seed=seed,
        where=f"{study.source_file} [search] strategies",
    )


def metric_params(study: Study) -> dict[str, dict[str, Any]]:
    """Each metric's parameters taken from the study: ``ssim`` gets ``[evaluation] ssim_convention``."""
    return {"ssim": {"convention": study.evaluation.ssim_convention}}


def build_study_metrics(study: Study, names: list[str] | tuple[str, ...], *, where: str = "") -> list:
    """The study's metrics ``names`` built with :func:`metric_params` (``list[hyperrecon.metrics.Metric]``);
    unknown names fail with a did-you-mean naming ``where``, a name given twice with a ``ConfigError``."""
    from .metrics import build_metrics

    return build_metrics(names, metric_params(study), where=where)


def check_metrics(study: Study, names: list[str] | tuple[str, ...], where: str) -> None:
    """``names`` are registered metrics that this study can compute: one that needs a segmentation net (``dice``)
    needs ``[segmentation] enabled = true`` (``ConfigError`` naming ``where``)."""
    for metric in build_study_metrics(study, names, where=where):
        if "seg_model" in metric.needs and not study.segmentation.enabled:
            raise ConfigError(f"{where}: '{metric.name}' needs [segmentation] enabled = true")


def check_data(study: Study) -> dict[str, Any]:
    where = f"{study.source_file} [data]"
    datasets = registry("datasets")
    datasets.check_params(study.data.source, dict(study.data.params), where=f"{where} params")
    if study.data.path is not None and not Path(study.data.path).exists():
        raise DataError(f"{study.data.path}: data path does not exist (from --data or {where} path)")
    needs_path = getattr(datasets.get(study.data.source), "needs_path", None)
    if needs_path is True and study.data.path is None:
        raise ConfigError(f"{where} path: dataset '{study.data.source}' reads files; give --data PATH or data.path")
    if needs_path is False and study.data.path is not None:
        raise ConfigError(
            f"{where} path: dataset '{study.data.source}' is built in and takes no path, but got path={study.data.path}"
        )
    return {"source": study.data.source, "path": study.data.path, "image_size": study.data.image_size}


def with_data_path(study: Study) -> Study:
    """``--data PATH`` on a study whose data source is built in (the knee phantom, the MNI brain): read PATH with
    the reader its contents call for (:func:`hyperrecon.data.detect_source`: .h5 -> fastmri-knee, .mgz/.nii ->
    freesurfer-brain, .npy/.npz -> arrays), keeping only the ``data.params`` that reader takes (the others tune the
    built-in source). A study whose source already reads files, or that has no path, is returned as it is.
    ``DataError`` when PATH is missing or holds nothing a reader knows."""
    import dataclasses
    import inspect

    if study.data.path is None:
        return study
    src = study.source_file
    load_plugins(study.plugins, source=src, search_path=str(Path(src).parent) if src else None)
    datasets = registry("datasets")
    try:
        cls = datasets.get(study.data.source)
    except UnknownNameError:
        return study  # resolve() reports the unknown name
    if getattr(cls, "needs_path", True):
        return study
    from .data import detect_source

    reader = detect_source(study.data.path)
    accepted = inspect.signature(datasets.get(reader)).parameters
    params = {k: v for k, v in study.data.params.items() if k in accepted}
    return dataclasses.replace(study, data=dataclasses.replace(study.data, source=reader, params=params))


# ---------------------------------------------------------------------------------------------------------------


def resolve(study: Study) -> dict[str, Any]:
    """Check every name and parameter of ``study`` and build the cheap objects. Returns a printable summary."""
    src = study.source_file
    load_plugins(study.plugins, source=src, search_path=str(Path(src).parent) if src else None)
    summary: dict[str, Any] = {}
    summary["data"] = check_data(study)

    losses = registry("losses")
    for term in study.loss.terms:
        losses.get(term, where=f"{src} [loss] terms")
    from .losses import CompositeLoss

    scales = None if isinstance(study.loss.scales, str) else list(study.loss.scales)
    CompositeLoss(list(study.loss.terms), scales or [1.0] * len(study.loss.terms))
    summary["loss"] = {"terms": list(study.loss.terms), "scales": study.loss.scales}

    fm = build_forward_model(study)
    summary["forward"] = fm.describe()

    from .models import count_parameters

    params = {"unet": count_parameters(build_recon_model("unet", study)), **check_hyper_model(study)}
    if study.hyper.film:
        params["film-unet"] = count_parameters(build_recon_model("film-unet", study))
    summary["parameters"] = params

    for name in study.hyper.samplers:
        build_sampler(study, name)
    summary["samplers"] = list(study.hyper.samplers)

    from .search.plan import check_search

    summary["search"] = check_search(study)  # strategies, fidelity steps, objective pairs

    check_metrics(study, study.evaluation.metrics, f"{src} [evaluation] metrics")
    objective = study.search.objective
    check_metrics(study, [objective], f"{src} [search] objective")
    summary["metrics"] = list(study.evaluation.metrics)
    summary["objective"] = objective
    return summary


def preview_study(study: Study, out: Path) -> dict[str, Any]:
    """Load the study's data and forward model and write ``out/preview.png`` (see :mod:`hyperrecon.data.preview`)."""
    from .data import load_data
    from .data.preview import preview

    load_plugins(study.plugins, source=study.source_file)
    check_data(study)
    bundle = load_data(
        study.data.source,
        image_size=study.data.image_size,
        seed=study.seed,
        path=study.data.path,
        params=dict(study.data.params),
    )
    fm = build_forward_model(study)
    return preview(bundle, fm, Path(out))
