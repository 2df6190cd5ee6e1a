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
import hashlib
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError, UnknownNameError
from .registry import did_you_mean

PROFILES = ("smoke", "quick", "paper")
DEFAULT_PROFILE = "quick"

# ---------------------------------------------------------------------------------------------------------------
# Sections. Field docs live in docs/study-format.md; defaults are the paper's where the paper has one.


@dataclass(frozen=True)
class DataConfig:
    source: str = "knee-phantom"
    """Dataset registry name (``hrbench list datasets``)."""
    path: str | None = None
    """Folder or file of real data; ``--data PATH`` sets it."""
    image_size: int = 256
    params: dict[str, Any] = field(default_factory=dict)
    """Source-specific constructor parameters (checked against the dataset class)."""


@dataclass(frozen=True)
class ForwardConfig:
    name: str = "cs-mri"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelConfig:
    width: int = 32
    """Channels of every U-Net layer (the paper: 32 -> 149,409 parameters)."""
    residual: bool = False
    """Add |zero-filled| to the network output. The authors' code has it, their scripts turn it off (the paper's
    setting); short trainings (the quick profile) start from the zero-filled image with it instead of from noise."""


@dataclass(frozen=True)
class LossConfig:
    terms: tuple[str, ...] = ("dc", "l1_weights", "tv")
    scales: tuple[float, ...] | str = "auto"
    """Typical magnitude s_i of each term (the term is divided by it), or ``"auto"``."""


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    lr_schedule: Literal["constant", "cosine"] = "constant"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    channels_last: bool = True
    grad_clip: float | None = None
    checkpoint_every: int = 200


@dataclass(frozen=True)
class HyperConfig:
    sizes: tuple[str, ...] = ("S", "M", "L")
    samplers: tuple[str, ...] = ("uniform", "dhs")
    sampler_params: dict[str, Any] = field(default_factory=dict)
    """Per-sampler parameters, e.g. ``{dhs = {top_k = 8}}``."""
    groups: int | None = None
    """Distinct λ per mini-batch (None: one λ per sample). See docs on the speed/quality trade-off."""
    steps: int | None = None
    """Training steps for hypernetworks (default: ``train.steps``)."""
    film: bool = True
    """Also train the FiLM-conditioned U-Net."""


@dataclass(frozen=True)
class BaselineConfig:
    grid: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    """λ values per axis; for two hyperparameters the grid is the product of this list with itself."""
    steps: int | None = None


@dataclass(frozen=True)
class EvaluationConfig:
    grid_points: int = 100
    """Evaluation points per λ axis (SL curve: n points; AO landscape: n x n)."""
    metrics: tuple[str, ...] = ("psnr", "rpsnr", "ssim", "mae", "hfen")
    n_test: int | None = None
    """Use at most this many test slices (None: all)."""
    rpsnr_threshold: float = 0.0
    diverse_quantile: float = 0.9
    ssim_convention: Literal["wang", "fastmri"] = "wang"


@dataclass(frozen=True)
class SearchConfig:
    objective: str = "psnr"
    strategies: tuple[str, ...] = ("grid", "random", "tpe", "gp", "qmc", "random+successive-halving",
                                   "tpe+hyperband", "tpe+median")
    """Samplers, or ``sampler+pruner`` for multi-fidelity search over the baselines (``hrbench list strategies``,
    ``hrbench list pruners``; any ``optuna.samplers``/``optuna.pruners`` class name works too)."""
    budget: int = 20
    seeds: int = 3
    n_val: int | None = None
    strategy_params: dict[str, Any] = field(default_factory=dict)
    """Per-sampler parameters, e.g. ``{tpe = {n_startup_trials = 5}}``."""
    pruner_params: dict[str, Any] = field(default_factory=dict)
    """Per-pruner parameters, e.g. ``{median = {n_startup_trials = 3}}``."""
    fidelities: int = 4
    """Points of each baseline's training at which its validation metrics are recorded (geometric, ratio η)."""
    reduction_factor: int = 3
    """η of the fidelity steps, successive halving and Hyperband."""
    model_seeds: int | None = None
    """Seeds of the searches over λ-conditioned models (default: ``seeds``; replays are cheaper)."""
    workers: tuple[int, ...] = (1, 4, 16)
    """Simulated asynchronous workers of the replayed baseline searches (wall-clock time to a target)."""
    objective_pairs: tuple[tuple[str, ...], ...] = (("psnr", "hfen"), ("psnr", "dice"))
    """Multi-objective searches; a pair with ``dice`` runs only where there is a segmentation model."""
    mo_strategies: tuple[str, ...] = ("nsga2", "tpe")


@dataclass(frozen=True)
class SegmentationConfig:
    enabled: bool = True
    steps: int = 500


@dataclass(frozen=True)
class Study:
    """A fully resolved study: base file + profile + overrides."""

    name: str
    kind: Literal["ao", "sl"]
    description: str = ""
    seed: int = 0
    plugins: tuple[str, ...] = ()
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
_TOP_KEYS = ("name", "kind", "description", "seed", "plugins", "profiles")

# ---------------------------------------------------------------------------------------------------------------
# Range checks: (section, key) -> (predicate, condition text). Applied after types are checked.

_CHECKS: dict[tuple[str, str], tuple[typing.Callable[[Any], bool], str]] = {
    ("", "seed"): (lambda v: v >= 0, "seed >= 0"),
    ("data", "image_size"): (lambda v: 16 <= v <= 1024 and v % 8 == 0, "16 <= image_size <= 1024 and image_size % 8 == 0"),
    ("model", "width"): (lambda v: 1 <= v <= 512, "1 <= width <= 512"),
    ("train", "steps"): (lambda v: v >= 1, "steps >= 1"),
    ("train", "batch_size"): (lambda v: v >= 1, "batch_size >= 1"),
    ("train", "lr"): (lambda v: 0 < v < 1, "0 < lr < 1"),
    ("train", "grad_clip"): (lambda v: v is None or v > 0, "grad_clip > 0"),
    ("train", "checkpoint_every"): (lambda v: v >= 1, "checkpoint_every >= 1"),
    ("hyper", "groups"): (lambda v: v is None or v >= 1, "groups >= 1"),
    ("hyper", "steps"): (lambda v: v is None or v >= 1, "steps >= 1"),
    ("hyper", "sizes"): (lambda v: all(s in ("S", "M", "L") for s in v), "every size in {S, M, L}"),
    ("baselines", "grid"): (lambda v: len(v) >= 1 and all(0.0 <= x <= 1.0 for x in v), "every λ in [0, 1]"),
    ("baselines", "steps"): (lambda v: v is None or v >= 1, "steps >= 1"),
    ("evaluation", "grid_points"): (lambda v: 2 <= v <= 1000, "2 <= grid_points <= 1000"),
    ("evaluation", "n_test"): (lambda v: v is None or v >= 1, "n_test >= 1"),
    ("evaluation", "diverse_quantile"): (lambda v: 0.0 <= v < 1.0, "0 <= diverse_quantile < 1"),
    ("search", "budget"): (lambda v: v >= 1, "budget >= 1"),
    ("search", "seeds"): (lambda v: v >= 1, "seeds >= 1"),
    ("search", "n_val"): (lambda v: v is None or v >= 1, "n_val >= 1"),
    ("search", "fidelities"): (lambda v: 1 <= v <= 10, "1 <= fidelities <= 10"),
    ("search", "reduction_factor"): (lambda v: v >= 2, "reduction_factor >= 2"),
    ("search", "model_seeds"): (lambda v: v is None or v >= 1, "model_seeds >= 1"),
    ("search", "workers"): (lambda v: len(v) >= 1 and all(w >= 1 for w in v), "every workers >= 1"),
    ("search", "objective_pairs"): (lambda v: all(len(p) == 2 and p[0] != p[1] for p in v),
                                    "every pair has two different metrics"),
    ("segmentation", "steps"): (lambda v: v >= 1, "steps >= 1"),
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


def load_study(
    name_or_path: str, profile: str = DEFAULT_PROFILE, overrides: typing.Sequence[str] = ()
) -> Study:
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
    kwargs: dict[str, Any] = {}
    for key in ("name", "kind", "description", "seed", "plugins"):
        if key in merged:
            kwargs[key] = merged[key]
    hints = typing.get_type_hints(Study)
    for key in ("name", "kind"):
        if key not in kwargs:
            raise ConfigError(f"{source}: missing required key '{key}'")
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        out[key] = _coerce(value, hints[key], source, "", key)
        _range_check("", key, out[key], source)
    for section, cls in SECTIONS.items():
        table = merged.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{source} [{section}]: expected a table, got {table!r}")
        out[section] = _build_section(cls, table, source, section)
    study = Study(**out, profile=profile, source_file=source)
    _cross_checks(study, source)
    return study


def _cross_checks(s: Study, source: str) -> None:
    n_terms = s.n_lams + 1
    if len(s.loss.terms) != n_terms:
        raise ConfigError(
            f"{source} [loss] terms: a '{s.kind}' study weighs {n_terms} terms with {s.n_lams} hyperparameter(s) "
            f"(paper Eq. {9 if s.n_lams == 1 else 10}), but got {len(s.loss.terms)}: {list(s.loss.terms)}"
        )
    if isinstance(s.loss.scales, str):
        if s.loss.scales != "auto":
            raise ConfigError(f"{source} [loss] scales: expected a list of numbers or \"auto\", got {s.loss.scales!r}")
    else:
        if len(s.loss.scales) != len(s.loss.terms):
            raise ConfigError(
                f"{source} [loss] scales: one scale per term must be given ({len(s.loss.terms)}), "
                f"but got {len(s.loss.scales)}"
            )
        if any(not (v > 0) for v in s.loss.scales):
            raise ConfigError(f"{source} [loss] scales: `every scale > 0` must hold, but got {list(s.loss.scales)}")
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
            raise ConfigError(f"{source}{table_name}: unknown key '{key}'{did_you_mean(key, valid)}; valid keys: {', '.join(valid)}")


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
                f"--set {key}: unknown key '{sub}' in [{parts[0]}]{did_you_mean(sub, valid)}; valid keys: {', '.join(valid)}"
            )
        if len(parts) > 2 and parts[1] not in ("params", "sampler_params", "strategy_params", "pruner_params"):
            raise ConfigError(f"--set {key}: '{parts[0]}.{parts[1]}' is not a table")
    elif len(parts) > 1 or parts[0] not in ("name", "description", "seed", "plugins", "kind"):
        valid = ["name", "description", "seed", "plugins", "kind", *SECTIONS]
        raise ConfigError(f"--set {key}: unknown key '{parts[0]}'{did_you_mean(parts[0], valid)}; valid keys: {', '.join(valid)}")
    node = merged
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: '{p}' is not a table")
    node[parts[-1]] = value


def _build_section(cls: type, table: dict[str, Any], source: str, section: str) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in table.items():
        kwargs[key] = _coerce(value, hints[key], source, section, key)
        _range_check(section, key, kwargs[key], source)
    return cls(**kwargs)


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


def _coerce(value: Any, tp: Any, source: str, section: str, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; convert lists to tuples and ints to floats where typed so."""
    where = f" [{section}]" if section else ""

    def fail() -> typing.NoReturn:
        raise ConfigError(f"{source}{where} {key}: expected {_type_name(tp)}, got {_show_any(value)}")

    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, source, section, key)
            except ConfigError:
                continue
        fail()
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(
                f"{source}{where} {key}: expected one of {', '.join(json.dumps(a) for a in allowed)}, got {_show_any(value)}"
                f"{did_you_mean(str(value), [str(a) for a in allowed])}"
            )
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            fail()
        (elem,) = typing.get_args(tp)[:1]
        return tuple(_coerce(v, elem, source, section, key) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            fail()
        return dict(value)
    if tp is type(None):
        if value is not None:
            fail()
        return None
    if tp is bool:
        if not isinstance(value, bool):
            fail()
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail()
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            fail()
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            fail()
        return value
    if tp is Any:
        return value
    raise TypeError(f"unsupported annotation {tp!r}")  # a bug in this module, not user input


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
