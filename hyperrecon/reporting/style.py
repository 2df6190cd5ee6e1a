"""Names, colours and axis labels shared by every report figure and table, so a model looks the same everywhere.

Model names of a run: ``baseline-<λ>`` (AO ``baseline-<λ1>-<λ2>``), ``hyper-<S|M|L>-<uniform|dhs>``,
``film-uniform`` and ``seg``. HyperRecon with uniform sampling (UHS) is drawn in blues, with DHS in oranges (darker
for larger hypernetworks), FiLM in green and the per-λ U-Net baselines in black.
"""

from __future__ import annotations

_UHS = {"S": "#6baed6", "M": "#2171b5", "L": "#08306b"}
_DHS = {"S": "#fd8d3c", "M": "#d94801", "L": "#7f2704"}
_EXTRA = ["#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]
BASELINE_COLOR = "black"
FILM_COLOR = "#2ca02c"

_STRATEGY_COLORS = {"grid": "#444444", "random": "#1f77b4", "tpe": "#ff7f0e", "gp": "#2ca02c", "qmc": "#9467bd"}

SAMPLER_LABELS = {"uniform": "UHS", "dhs": "DHS"}


def _spec(name: str):
    from ..runs.models import ModelSpec  # light: no torch

    return ModelSpec.from_name(name)


def model_kind(name: str) -> str:
    """``baseline`` | ``hyper`` | ``film`` | ``seg`` | ``other`` of a run's model name
    (:meth:`hyperrecon.runs.models.ModelSpec.from_name`; :attr:`RunData.specs` has the config's specs)."""
    if name == "seg":
        return "seg"
    spec = _spec(name)
    return spec.kind if spec is not None else "other"


def hyper_parts(name: str) -> tuple[str, str] | None:
    """``hyper-S-dhs`` -> ``("S", "dhs")``, ``hyper-S-my-dhs`` -> ``("S", "my-dhs")``; None for other names."""
    spec = _spec(name)
    if spec is None or spec.kind != "hyper":
        return None
    return str(spec.size), str(spec.sampler)


def model_label(name: str) -> str:
    """A reader's name: ``HyperRecon-S (DHS)``, ``FiLM (UHS)``, ``U-Net λ=0.5``."""
    spec = _spec(name)
    if spec is None:
        return name
    if spec.kind == "hyper":
        return f"HyperRecon-{spec.size} ({SAMPLER_LABELS.get(str(spec.sampler), spec.sampler)})"
    if spec.kind == "film":
        return f"FiLM ({SAMPLER_LABELS.get(str(spec.sampler), spec.sampler)})"
    values = name.split("-", 1)[1]  # λ as the name writes them ({:g})
    lam = [f"{v:g}" for v in spec.lam or ()]
    return f"U-Net λ={values}" if len(lam) == 1 else f"U-Net λ=({', '.join(lam)})"


def model_color(name: str) -> str:
    kind = model_kind(name)
    if kind == "baseline":
        return BASELINE_COLOR
    if kind == "film":
        return FILM_COLOR
    parts = hyper_parts(name)
    if parts is not None:
        table = _DHS if parts[1] == "dhs" else _UHS
        if parts[0] in table:
            return table[parts[0]]
    return _EXTRA[sum(map(ord, name)) % len(_EXTRA)]


def strategy_color(name: str) -> str:
    return _STRATEGY_COLORS.get(name, _EXTRA[sum(map(ord, name)) % len(_EXTRA)])


def _metric_attr(metric: str, attr: str) -> str:
    from ..metrics import METRICS  # the metric plugins declare their labels (imported here: torch)

    return (getattr(METRICS.get(metric), attr, "") or metric) if metric in METRICS else metric


def metric_label(metric: str) -> str:
    """Axis label of a metric, e.g. ``PSNR (dB)`` (the metric plugin's ``label``; the name for others)."""
    return _metric_attr(metric, "label")


def metric_short(metric: str) -> str:
    """Table name of a metric, e.g. ``PSNR`` (the metric plugin's ``short``; the name for others)."""
    return _metric_attr(metric, "short")


def higher_is_better(metric: str) -> bool:
    """Direction of a registered metric (:func:`hyperrecon.metrics.higher_is_better`)."""
    from ..metrics import higher_is_better

    return higher_is_better(metric)
