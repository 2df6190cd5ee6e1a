"""Study configuration: TOML files -> frozen dataclasses, with profiles and ``--set`` overrides.

A study file has top-level keys (``name``, ``description``, ``kind``, ``seed``, ``plugins``) and one table per
section below. ``[profiles.<name>]`` tables (``smoke``, ``quick``, ``paper``) hold overrides that are deep-merged
into the base before validation; ``--set a.b=v`` overrides are applied last. Keys are strict: an unknown key is an
error that names the file, the table and the closest valid key. Plugin names (datasets, losses ...) are checked
against their registries by :func:`hyperrecon.resolve.resolve`, not here, so this module imports neither torch nor
any plugin.

Messages follow one shape: ``<file> [<table>] <key>: `<condition>` must hold, but got <key>=<value>``.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import math
import tomllib
import types
import typing
from dataclasses import field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from .errors import ConfigError, UnknownNameError
from .registry import did_you_mean

PROFILES = ("smoke", "quick", "standard", "paper")
DEFAULT_PROFILE = "quick"

# ---------------------------------------------------------------------------------------------------------------
# Sections: the schema, defined once. Each class is a pydantic dataclass (a standard, frozen dataclass that pydantic
# validates): the annotations give the types and ranges (``Field(ge=...)``), the docstrings the descriptions, and
# :func:`study_json_schema` publishes the same as ``docs/study.schema.json``. Field docs live in
# docs/study-format.md; defaults are the paper's where the paper has one.

_SCHEMA = ConfigDict(extra="forbid", allow_inf_nan=False, use_attribute_docstrings=True)
#: A positive integer (steps, sizes, counts).
PosInt = Annotated[int, Field(ge=1)]
#: Hypernetwork sizes (the paper's S, M, L) -> hypernetwork width d; ``HyperSize`` names its keys for the schema.
HYPER_SIZES: dict[str, int] = {"S": 4, "M": 32, "L": 128}
HyperSize = Literal["S", "M", "L"]
#: Numeric precision of training and evaluation; a study may also say ``auto`` (resolved per device).
Precision = Literal["fp32", "bf16"]
PRECISIONS: tuple[str, ...] = typing.get_args(Precision)


@dataclass(frozen=True, config=_SCHEMA)
class DataConfig:
    source: str = "knee-phantom"
    """Dataset registry name (``hrbench list datasets``)."""
    path: str | None = None
    """Folder or file of real data; ``--data PATH`` sets it."""
    image_size: Annotated[int, Field(ge=16, le=1024, multiple_of=8)] = 256
    """Square image size in pixels, a multiple of 8."""
    params: dict[str, Any] = field(default_factory=dict)
    """Source-specific constructor parameters (checked against the dataset class)."""


@dataclass(frozen=True, config=_SCHEMA)
class ForwardConfig:
    name: str = "cs-mri"
    """Forward model (``hrbench list forward-models``)."""
    params: dict[str, Any] = field(default_factory=dict)
    """Forward-model parameters, e.g. ``acceleration = 8.0`` or ``sigma = 0.1``."""


@dataclass(frozen=True, config=_SCHEMA)
class ModelConfig:
    width: Annotated[int, Field(ge=1, le=512)] = 32
    """Channels of every U-Net layer (the paper: 32 -> 149,409 parameters)."""
    residual: bool = False
    """Add |zero-filled| to the network output. The authors' code has it, their scripts turn it off (the paper's
    setting); short trainings (the quick profile) start from the zero-filled image with it instead of from noise."""


@dataclass(frozen=True, config=_SCHEMA)
class LossConfig:
    terms: tuple[str, ...] = ("dc", "l1_weights", "tv")
    """k + 1 loss names (``hrbench list losses``) in coefficient order."""
    scales: tuple[Annotated[float, Field(gt=0)], ...] | str = "auto"
    """Typical magnitude s_i of each term (the term is divided by it), or ``"auto"``."""


@dataclass(frozen=True, config=_SCHEMA)
class TrainConfig:
    steps: PosInt = 1000
    """Optimiser steps (baselines and hypernetworks unless overridden)."""
    batch_size: PosInt = 32
    """Samples per mini-batch."""
    lr: Annotated[float, Field(gt=0, lt=1)] = 1e-3
    """Adam learning rate."""
    lr_schedule: Literal["constant", "cosine"] = "constant"
    """Learning-rate schedule."""
    precision: Literal["auto", Precision] = "auto"
    """Training precision; ``auto``: bf16 where the device has fast bf16."""
    channels_last: bool = True
    """Memory format."""
    grad_clip: Annotated[float, Field(gt=0)] | None = None
    """Maximum gradient norm (none: no clipping)."""
    checkpoint_every: Annotated[int, Field(ge=0)] = 200
    """Steps between atomic checkpoints (0: only the final one)."""


@dataclass(frozen=True, config=_SCHEMA)
class HyperConfig:
    model: str = "hyperunet"
    """The λ-conditioned model trained per size and sampler (``hrbench list models``; a plugin's name works too)."""
    model_params: dict[str, Any] = field(default_factory=dict)
    """Further constructor parameters of ``model`` (checked against its constructor)."""
    sizes: tuple[HyperSize, ...] = ("S", "M", "L")
    """Hypernetwork widths (d = 4, 32, 128); a model without a ``size`` parameter takes exactly one."""
    samplers: tuple[str, ...] = ("uniform", "dhs")
    """Training-time λ samplers (``hrbench list samplers``)."""
    sampler_params: dict[str, Any] = field(default_factory=dict)
    """Per-sampler parameters, e.g. ``{dhs = {top_k = 8}}``."""
    groups: PosInt | None = None
    """Distinct λ per mini-batch (None: one λ per sample). See docs on the speed/quality trade-off."""
    steps: PosInt | None = None
    """Training steps for hypernetworks (default: ``train.steps``)."""
    film: bool = True
    """Also train the FiLM-conditioned U-Net."""


@dataclass(frozen=True, config=_SCHEMA)
class BaselineConfig:
    grid: Annotated[tuple[Annotated[float, Field(ge=0.0, le=1.0)], ...], Field(min_length=1)] = (
        0.0,
        0.25,
        0.5,
        0.75,
        1.0,
    )
    """λ values per axis; for two hyperparameters the grid is the product of this list with itself."""
    steps: PosInt | None = None
    """Training steps for baselines (default: ``train.steps``)."""


@dataclass(frozen=True, config=_SCHEMA)
class EvaluationConfig:
    grid_points: Annotated[int, Field(ge=2, le=1000)] = 100
    """Evaluation points per λ axis (SL curve: n points; AO landscape: n x n)."""
    metrics: tuple[str, ...] = ("psnr", "rpsnr", "ssim", "mae", "hfen")
    """Metrics evaluated (``hrbench list metrics``)."""
    n_test: PosInt | None = None
    """Use at most this many test slices (None: all)."""
    rpsnr_threshold: Annotated[float, Field(ge=-100.0, le=100.0)] = 0.0
    """rPSNR in dB above which a reconstruction counts for the range."""
    diverse_quantile: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9
    """PSNR quantile for the diverse pair."""
    ssim_convention: Literal["wang", "fastmri"] = "wang"
    """The ``ssim`` metric's convention in evaluation and search: ``wang`` (Wang et al. 2004) or ``fastmri``."""
    bn_calibration: Annotated[int, Field(ge=0, le=100_000)] = 0
    """Training slices on which a λ-conditioned model's BatchNorm statistics are re-estimated at every λ it is
    evaluated at (``hyperrecon.models.bn_calibration``); 0: the running statistics of training (the paper's)."""


@dataclass(frozen=True, config=_SCHEMA)
class LiveSearchConfig:
    """Live search over baselines: each trial trains a U-Net at the suggested λ (``hyperrecon.search.live``)."""

    strategies: tuple[str, ...] = ()
    """Strategies searched live (``sampler`` or ``sampler+pruner``, as in ``search.strategies``); empty: off."""
    steps: PosInt | None = None
    """Training steps of a live trial (default: the baselines' steps); fidelity steps as for the baselines."""
    budget: PosInt | None = None
    """Trials per strategy and seed (default: ``search.budget``)."""
    seeds: PosInt = 1
    """Seeds per strategy (each one a study in the run's storage)."""


@dataclass(frozen=True, config=_SCHEMA)
class SearchConfig:
    objective: str = "psnr"
    """A registered metric (``dice`` needs the segmentation net)."""
    strategies: tuple[str, ...] = (
        "grid",
        "random",
        "tpe",
        "gp",
        "qmc",
        "random+successive-halving",
        "tpe+hyperband",
        "tpe+median",
    )
    """Samplers, or ``sampler+pruner`` for multi-fidelity search over the baselines (``hrbench list strategies``,
    ``hrbench list pruners``; any ``optuna.samplers``/``optuna.pruners`` class name works too)."""
    budget: PosInt = 20
    """Trials per strategy and seed."""
    seeds: PosInt = 3
    """Seeds per strategy."""
    n_val: PosInt | None = None
    """Validation slices used by the search (None: all)."""
    strategy_params: dict[str, Any] = field(default_factory=dict)
    """Per-sampler parameters, e.g. ``{tpe = {n_startup_trials = 5}}``."""
    pruner_params: dict[str, Any] = field(default_factory=dict)
    """Per-pruner parameters, e.g. ``{median = {n_startup_trials = 3}}``."""
    fidelities: Annotated[int, Field(ge=1, le=10)] = 4
    """Points of each baseline's training at which its validation metrics are recorded (geometric, ratio η)."""
    reduction_factor: Annotated[int, Field(ge=2)] = 3
    """η of the fidelity steps, successive halving and Hyperband."""
    model_seeds: PosInt | None = None
    """Seeds of the searches over λ-conditioned models (default: ``seeds``; replays are cheaper)."""
    workers: tuple[PosInt, ...] = (1, 4, 16)
    """Simulated asynchronous workers of the replayed baseline searches (wall-clock time to a target)."""
    objective_pairs: tuple[tuple[str, ...], ...] = (("psnr", "hfen"), ("psnr", "dice"))
    """Multi-objective searches; a pair with ``dice`` runs only where there is a segmentation model."""
    mo_strategies: tuple[str, ...] = ("nsga2", "tpe")
    """Optuna samplers of the multi-objective searches."""
    live: LiveSearchConfig = field(default_factory=LiveSearchConfig)
    """Searches whose trials train a U-Net at the suggested λ and report to the pruner (off by default)."""


@dataclass(frozen=True, config=_SCHEMA)
class SegmentationConfig:
    enabled: bool = True
    """Train the downstream segmentation U-Net when the data have labels."""
    steps: PosInt = 500
    """Training steps of the segmentation U-Net."""
    width: Annotated[int, Field(ge=1, le=512)] = 32
    """Channels of every layer of the segmentation U-Net (its cost per step grows as width²)."""


@dataclass(frozen=True, config=_SCHEMA)
class Study:
    """A fully resolved study: base file + profile + overrides."""

    name: str
    """The study's name."""
    kind: Literal["ao", "sl"]
    """``ao``: amortised optimisation (3 terms, λ ∈ [0,1]²); ``sl``: supervised learning (2 terms, λ ∈ [0,1])."""
    description: str = ""
    """One line for ``hrbench list studies``."""
    seed: Annotated[int, Field(ge=0)] = 0
    """Every job derives its seed from this and its name."""
    replicates: Annotated[int, Field(ge=1, le=100)] = 1
    """Independent repeats of the whole study; replicate r uses seed ``seed + r`` (data split and noise,
    initialisation, augmentation). Statistics are then over replicates (see hyperrecon/reporting/stats.py)."""
    plugins: tuple[str, ...] = ()
    """Modules imported before names resolve."""
    data: DataConfig = field(default_factory=DataConfig)
    forward: ForwardConfig = field(default_factory=ForwardConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    hyper: HyperConfig = field(default_factory=HyperConfig)
    baselines: BaselineConfig = field(default_factory=BaselineConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    # Filled by the loader, not by the file:
    profile: str = DEFAULT_PROFILE
    source_file: str = ""

    @property
    def n_lams(self) -> int:
        """Number of hyperparameters: AO weighs three terms with λ ∈ [0,1]², SL two with λ ∈ [0,1]."""
        return 2 if self.kind == "ao" else 1

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    def config_hash(self) -> str:
        """Short SHA-256 of the resolved config (provenance; excludes where the file was found)."""
        d = self.to_dict()
        d.pop("source_file", None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "forward": ForwardConfig,
    "model": ModelConfig,
    "loss": LossConfig,
    "train": TrainConfig,
    "hyper": HyperConfig,
    "baselines": BaselineConfig,
    "evaluation": EvaluationConfig,
    "search": SearchConfig,
    "segmentation": SegmentationConfig,
}
_TOP_KEYS = ("name", "kind", "description", "seed", "replicates", "plugins", "profiles")
#: free-form tables of plugin parameters (checked by the plugin registries, not by the schema)
PARAM_TABLES = ("params", "sampler_params", "model_params", "strategy_params", "pruner_params")

# ---------------------------------------------------------------------------------------------------------------
# Conditions the annotations cannot state, or state in words a reader knows better: (section, key) -> (predicate,
# condition text). Applied after pydantic has checked types and ranges; the text also replaces the generated one
# in messages about that key.

_CHECKS: dict[tuple[str, str], tuple[typing.Callable[[Any], bool], str]] = {
    ("baselines", "grid"): (lambda v: len(v) >= 1 and all(0.0 <= x <= 1.0 for x in v), "every λ in [0, 1]"),
    ("loss", "scales"): (lambda v: isinstance(v, str) or all(x > 0 for x in v), "every scale > 0"),
    ("search", "fidelities"): (lambda v: 1 <= v <= 10, "1 <= fidelities <= 10"),
    ("search", "reduction_factor"): (lambda v: v >= 2, "reduction_factor >= 2"),
    ("search", "workers"): (lambda v: len(v) >= 1 and all(w >= 1 for w in v), "every workers >= 1"),
    ("search", "objective_pairs"): (
        lambda v: all(len(p) == 2 and p[0] != p[1] for p in v),
        "every pair has two different metrics",
    ),
}


# ---------------------------------------------------------------------------------------------------------------
# Loading


def studies_dir() -> Path:
    """Folder of the bundled study files (``studies/`` in a checkout, ``hyperrecon/studies`` when installed)."""
    try:
        return Path(str(resources.files("hyperrecon.studies")))
    except ModuleNotFoundError:  # running from a source tree that is not installed
        return Path(__file__).resolve().parent.parent / "studies"


def bundled_studies() -> dict[str, Path]:
    return {p.stem: p for p in sorted(studies_dir().glob("*.toml"))}


def find_study_file(name_or_path: str) -> Path:
    """A path to an existing ``.toml`` file, or the name of a bundled study."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists() or "/" in name_or_path:
        if not path.is_file():
            raise ConfigError(f"{name_or_path}: study file not found")
        return path
    studies = bundled_studies()
    if name_or_path not in studies:
        raise UnknownNameError(
            f"unknown study '{name_or_path}'{did_you_mean(name_or_path, studies)}; "
            f"valid names: {', '.join(studies)} (or a path to a .toml file)"
        )
    return studies[name_or_path]


def read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read study file ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: malformed TOML: {exc}") from exc


def load_study(name_or_path: str, profile: str = DEFAULT_PROFILE, overrides: typing.Sequence[str] = ()) -> Study:
    """Load, merge the profile, apply ``key=value`` overrides, type- and range-check.

    Raises ``ConfigError`` (exit 2) with one line naming the file, table and key on any problem.
    """
    path = find_study_file(name_or_path)
    raw = read_toml(path)
    return study_from_dict(raw, profile=profile, overrides=overrides, source=str(path))


def study_from_dict(
    raw: dict[str, Any], *, profile: str = DEFAULT_PROFILE, overrides: typing.Sequence[str] = (), source: str = "<dict>"
) -> Study:
    raw = copy.deepcopy(raw)
    profiles = raw.pop("profiles", {})
    if not isinstance(profiles, dict):
        raise ConfigError(f"{source} [profiles]: expected a table of profile tables, got {type(profiles).__name__}")
    if profile not in PROFILES and profile not in profiles:
        valid = ", ".join(dict.fromkeys([*PROFILES, *profiles]))
        raise ConfigError(f"{source}: unknown profile '{profile}'{did_you_mean(profile, PROFILES)}; valid: {valid}")
    for name, table in profiles.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{source} [profiles.{name}]: expected a table, got {table!r}")
        _check_keys(table, source, f"profiles.{name}")
    merged = _deep_merge(raw, profiles.get(profile, {}))
    for item in overrides:
        _apply_override(merged, item, source)
    _check_keys(merged, source, "")
    for key in ("name", "kind"):
        if key not in merged:
            raise ConfigError(f"{source}: missing required key '{key}'")
    payload: dict[str, Any] = {
        k: merged[k] for k in ("name", "kind", "description", "seed", "replicates", "plugins") if k in merged
    }
    for section in SECTIONS:
        table = merged.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{source} [{section}]: expected a table, got {table!r}")
        payload[section] = table
        for key in PARAM_TABLES:
            _check_finite(table.get(key), source, section, key)
    study = _validate(payload, profile, source)
    for (section, key), (_, _text) in _CHECKS.items():
        value = getattr(getattr(study, section), key) if section else getattr(study, key)
        _range_check(section, key, value, source)
    _cross_checks(study, source)
    return study


@functools.cache
def _study_adapter() -> TypeAdapter:
    return TypeAdapter(Study)


def _validate(payload: dict[str, Any], profile: str, source: str) -> Study:
    """Type- and range-check with pydantic (strict: no string-to-number or number-to-bool conversion; lists are
    read as JSON arrays, so they become tuples). ``ConfigError`` with today's one line on the first bad key."""
    text = json.dumps({**payload, "profile": profile, "source_file": source}, default=str)
    try:
        return _study_adapter().validate_json(text, strict=True)
    except ValidationError as exc:
        raise _config_error(exc, payload, source) from None


_TYPE_ERRORS_SUFFIX = ("_type", "_parsing")


def field_error(cls: type, exc: ValidationError, where: str) -> ConfigError:
    """The one-line ``ConfigError`` of the first bad field of a schema dataclass built in code (not from a file),
    in this module's shape: ``<where> <key>: `<condition>` must hold, but got <key>=<value>``."""
    first = exc.errors(include_url=False)[0]
    key = str(first["loc"][0]) if first["loc"] else ""
    hint = typing.get_type_hints(cls, include_extras=True).get(key)
    value = first["input"]
    if hint is None:
        return ConfigError(f"{where} {key}: {first['msg'].lower()}".replace(" :", ":"))
    if first["type"] == "literal_error":
        allowed = ", ".join(json.dumps(a) for a in typing.get_args(_unwrap(hint)))
        return ConfigError(f"{where} {key}: expected one of {allowed}, got {_show_any(value)}")
    if first["type"].endswith(_TYPE_ERRORS_SUFFIX):
        return ConfigError(f"{where} {key}: expected {_type_name(hint)}, got {_show_any(value)}")
    return ConfigError(
        f"{where} {key}: `{_condition('', key, hint, first['type'])}` must hold, but got {key}={_show(value)}"
    )


def _config_error(exc: ValidationError, payload: dict[str, Any], source: str) -> ConfigError:
    """Translate pydantic's first failing key into ``<file> [<table>] <key>: ...`` (the module's one shape)."""
    errors = exc.errors(include_url=False)
    first = errors[0]["loc"]
    section = str(first[0]) if len(first) > 1 and first[0] in SECTIONS else ""
    key = str(first[1] if section else first[0])
    where = f" [{section}]" if section else ""
    value = (payload.get(section, {}) if section else payload).get(key)
    mine = [e for e in errors if tuple(e["loc"][: 2 if section else 1]) == ((section, key) if section else (key,))]
    cls = SECTIONS[section] if section else Study
    hint = typing.get_type_hints(cls, include_extras=True)[key]
    constraint = next(
        (
            e
            for e in mine
            if not e["type"].endswith(_TYPE_ERRORS_SUFFIX)
            and e["type"] not in ("literal_error", "none_required", "missing", "union_tag_invalid")
        ),
        None,
    )
    if constraint is not None:
        return ConfigError(
            f"{source}{where} {key}: `{_condition(section, key, hint, constraint['type'])}` must hold, "
            f"but got {key}={_show(value)}"
        )
    literal = next((e for e in mine if e["type"] == "literal_error" and len(e["loc"]) == (2 if section else 1)), None)
    if literal is not None:
        allowed = typing.get_args(_unwrap(hint))
        return ConfigError(
            f"{source}{where} {key}: expected one of {', '.join(json.dumps(a) for a in allowed)}, "
            f"got {_show_any(value)}"
            f"{did_you_mean(str(value), [str(a) for a in allowed])}"
        )
    return ConfigError(f"{source}{where} {key}: expected {_type_name(hint)}, got {_show_any(value)}")


def _unwrap(tp: Any) -> Any:
    """``Annotated[T, ...]`` -> ``T``."""
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _constraints(tp: Any) -> list[Any]:
    """The annotated-types constraints (``Ge``, ``Lt``, ``MultipleOf`` ...) anywhere in an annotation."""
    out: list[Any] = []
    if typing.get_origin(tp) is Annotated:
        inner, *meta = typing.get_args(tp)
        for m in meta:
            out.extend(getattr(m, "metadata", None) or [m])  # a pydantic FieldInfo carries its constraints
        return out + _constraints(inner)
    for arg in typing.get_args(tp):
        out.extend(_constraints(arg))
    return out


def _condition(section: str, key: str, hint: Any, error_type: str) -> str:
    """The condition a key's value must meet, in the words of the messages (``0 < lr < 1``)."""
    if (section, key) in _CHECKS:
        return _CHECKS[(section, key)][1]
    if error_type == "finite_number":
        return f"{key} is a finite number"
    lo = hi = ""
    extra = []
    for c in _constraints(hint):
        name = type(c).__name__
        if name in ("Ge", "Gt"):
            v = getattr(c, name.lower())
            lo = f"{v:g} {'<=' if name == 'Ge' else '<'} "
        elif name in ("Le", "Lt"):
            v = getattr(c, name.lower())
            hi = f" {'<=' if name == 'Le' else '<'} {v:g}"
        elif name == "MultipleOf":
            extra.append(f"{key} % {c.multiple_of:g} == 0")
        elif name == "MinLen":
            extra.append(f"at least {c.min_length} value(s)")
    if lo and not hi:  # ``steps >= 1`` reads better than ``1 <= steps``
        op, v = lo.split()[1], lo.split()[0]
        main = f"{key} {'>=' if op == '<=' else '>'} {v}"
    else:
        main = f"{lo}{key}{hi}" if (lo or hi) else ""
    return " and ".join(p for p in [main, *extra] if p) or f"{key} is valid"


def _check_finite(table: Any, source: str, section: str, key: str) -> None:
    """Numbers inside free-form parameter tables are checked by their plugins; NaN and infinity never make sense
    there, so they are refused here for every plugin alike."""

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for v in node:
                walk(v, path)
        elif isinstance(node, float) and not math.isfinite(node):
            raise ConfigError(f"{source} [{section}] {path}: `every number is finite` must hold, but got {node}")

    if table is not None:
        walk(table, key)


def _cross_checks(s: Study, source: str) -> None:
    n_terms = s.n_lams + 1
    if len(s.loss.terms) != n_terms:
        raise ConfigError(
            f"{source} [loss] terms: a '{s.kind}' study weighs {n_terms} terms with {s.n_lams} hyperparameter(s) "
            f"(paper Eq. {9 if s.n_lams == 1 else 10}), but got {len(s.loss.terms)}: {list(s.loss.terms)}"
        )
    if isinstance(s.loss.scales, str):
        if s.loss.scales != "auto":
            raise ConfigError(f'{source} [loss] scales: expected a list of numbers or "auto", got {s.loss.scales!r}')
    else:
        if len(s.loss.scales) != len(s.loss.terms):
            raise ConfigError(
                f"{source} [loss] scales: one scale per term must be given ({len(s.loss.terms)}), "
                f"but got {len(s.loss.scales)}"
            )
    if s.hyper.groups is not None and s.train.batch_size % s.hyper.groups:
        raise ConfigError(
            f"{source} [hyper] groups: `batch_size % groups == 0` must hold, "
            f"but got batch_size={s.train.batch_size}, groups={s.hyper.groups}"
        )
    unknown = set(s.hyper.sampler_params) - set(s.hyper.samplers)
    if unknown:
        name = sorted(unknown)[0]
        raise ConfigError(
            f"{source} [hyper] sampler_params: '{name}' is not one of the study's samplers "
            f"{list(s.hyper.samplers)}{did_you_mean(name, s.hyper.samplers)}"
        )


# ---------------------------------------------------------------------------------------------------------------
# Helpers


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "params":
            out[key] = _deep_merge(out[key], value)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}  # params tables merge one level
        else:
            out[key] = value
    return out


def _check_keys(table: dict[str, Any], source: str, where: str) -> None:
    """Reject unknown top-level and section keys (params tables are checked by the plugin registries)."""
    for key, value in table.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{source} [{key}]: expected a table, got {value!r}")
            valid = [f.name for f in dataclasses.fields(SECTIONS[key])]
            for sub in value:
                if sub not in valid:
                    table_name = f"{where}.{key}" if where else key
                    raise ConfigError(
                        f"{source} [{table_name}]: unknown key '{sub}'{did_you_mean(sub, valid)}; "
                        f"valid keys: {', '.join(valid)}"
                    )
        elif key not in _TOP_KEYS:
            valid = [*_TOP_KEYS, *SECTIONS]
            table_name = f" [{where}]" if where else ""
            raise ConfigError(
                f"{source}{table_name}: unknown key '{key}'{did_you_mean(key, valid)}; valid keys: {', '.join(valid)}"
            )


def _parse_value(text: str) -> Any:
    """``--set`` values are TOML literals (``3``, ``1e-3``, ``true``, ``["S","M"]``); anything else is a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _apply_override(merged: dict[str, Any], item: str, source: str) -> None:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.steps=100")
    key, _, text = item.partition("=")
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"--set {item!r}: expected a dotted key such as train.steps")
    value = _parse_value(text.strip())
    if parts[0] in SECTIONS:
        valid = [f.name for f in dataclasses.fields(SECTIONS[parts[0]])]
        if len(parts) < 2 or parts[1] not in valid:
            sub = parts[1] if len(parts) > 1 else ""
            raise ConfigError(
                f"--set {key}: unknown key '{sub}' in [{parts[0]}]{did_you_mean(sub, valid)}; "
                f"valid keys: {', '.join(valid)}"
            )
        if len(parts) > 2 and parts[1] not in (*PARAM_TABLES, "live"):  # live: [search] live's table
            raise ConfigError(f"--set {key}: '{parts[0]}.{parts[1]}' is not a table")
    elif len(parts) > 1 or parts[0] not in ("name", "description", "seed", "replicates", "plugins", "kind"):
        valid = ["name", "description", "seed", "replicates", "plugins", "kind", *SECTIONS]
        raise ConfigError(
            f"--set {key}: unknown key '{parts[0]}'{did_you_mean(parts[0], valid)}; valid keys: {', '.join(valid)}"
        )
    node = merged
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: '{p}' is not a table")
    node[parts[-1]] = value


def _range_check(section: str, key: str, value: Any, source: str) -> None:
    check = _CHECKS.get((section, key))
    if check and not check[0](value):
        where = f" [{section}]" if section else ""
        raise ConfigError(f"{source}{where} {key}: `{check[1]}` must hold, but got {key}={_show(value)}")


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return json.dumps(list(value))
    return json.dumps(value) if isinstance(value, str | bool) or value is None else str(value)


def _type_name(tp: Any) -> str:
    tp = _unwrap(tp)
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(json.dumps(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "table"
    if tp is type(None):
        return "nothing (omit the key)"
    return {int: "integer", float: "number", str: "string", bool: "boolean"}.get(tp, str(tp))


def _show_any(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return json.dumps(value, default=str)
    return f"{json.dumps(value, default=str)} ({type(value).__name__})"


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------------------------------------------
# JSON Schema of a study file (published as docs/study.schema.json; `tests/test_schema.py` keeps the two equal)


def study_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a study TOML file, from the same pydantic classes that check it on load.

    Editors that read JSON Schemas for TOML (Taplo / Even Better TOML: ``#:schema docs/study.schema.json`` at the
    top of a file, or the repository's ``.taplo.toml``) validate keys, types and ranges as one types. The loader
    also checks what a schema cannot say (plugin names, cross-key rules): a file that passes the schema can still
    fail ``hrbench validate``, never the other way round.
    """
    schema = copy.deepcopy(_study_adapter().json_schema(mode="validation"))
    props = schema["properties"]
    for key in ("profile", "source_file"):  # filled by the loader
        props.pop(key, None)
    # A profile table holds overrides: any key of the file except name, kind and profiles, none required.
    profile = {
        "type": "object",
        "additionalProperties": False,
        "description": "Overrides merged over the base (tables deeply, params tables one level).",
        "properties": {k: v for k, v in props.items() if k not in ("name", "kind")},
    }
    props["profiles"] = {
        "type": "object",
        "description": f"Named profiles ({', '.join(PROFILES)} ...).",
        "additionalProperties": profile,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "hrbench study file",
        **{k: v for k, v in schema.items() if k != "title"},
    }
