"""Base class of every registered dataset: parameters, cache handling and validation around ``build()``.

A subclass declares its parameters once, as a frozen dataclass (a :class:`DatasetParams` subclass whose
``check(where)`` holds the range and choice checks) named by its ``Params`` class attribute, and implements
``build() -> DataBundle``, reading them from ``self.p``. The class's signature is made from those fields, so the
registry checks a study's ``data.params`` (names and types) against them. ``load()`` returns the cached bundle
when one exists for the same key, else builds, validates and caches it. Nothing is written unless the bundle
passed validation.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
import typing
from pathlib import Path
from typing import Any, ClassVar

from ..errors import ConfigError, DataError
from . import cache as _cache
from .base import DataBundle, validate_bundle


@dataclasses.dataclass(frozen=True)
class DatasetParams:
    """A dataset's own parameters (the study's ``data.params``): subclass as a frozen dataclass, one field per
    parameter with its type and default, and put the range and choice checks in :meth:`check`."""

    #: fields that do not change the arrays (e.g. worker processes): left out of the cache key and ``meta``
    NOT_CACHED: ClassVar[tuple[str, ...]] = ()

    def check(self, where: str) -> None:
        """Raise ``ConfigError`` naming ``where`` (e.g. "dataset 'knee-phantom'") on a bad value."""

    def cached(self) -> dict[str, Any]:
        """The parameters that go into the cache key and the bundle's ``meta["params"]``."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in self.NOT_CACHED}


#: the constructor arguments every dataset shares (``hyperrecon.data.registry.RESERVED``), before its own params
_SHARED = (
    inspect.Parameter("image_size", inspect.Parameter.KEYWORD_ONLY, default=256, annotation=int),
    inspect.Parameter("seed", inspect.Parameter.KEYWORD_ONLY, default=0, annotation=int),
    inspect.Parameter("path", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=str | Path | None),
    inspect.Parameter("cache_dir", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Any),
)


class DatasetSource:
    """Shared constructor arguments: ``image_size`` (square output side), ``seed`` (splits and augmentation),
    ``path`` (input file or folder; readers only), ``cache_dir`` (None: default, False or "off": no cache); the
    others are the fields of ``Params``."""

    #: readers (``needs_path``) read files from ``data.path`` and implement :meth:`write_sample` for the contract tests
    needs_path: ClassVar[bool] = False
    registry_name: ClassVar[str] = "dataset"
    #: the dataset's parameters (a frozen :class:`DatasetParams` dataclass)
    Params: ClassVar[type[DatasetParams]] = DatasetParams

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        hints = typing.get_type_hints(cls.Params)
        own = [
            inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name])
            for f in dataclasses.fields(cls.Params)
        ]
        # what inspect.signature(cls), and so the registry, checks a study's data.params against
        cls.__signature__ = inspect.Signature([*_SHARED, *own])  # type: ignore[attr-defined]

    def __init__(
        self,
        *,
        image_size: int = 256,
        seed: int = 0,
        path: str | Path | None = None,
        cache_dir: str | Path | None | bool = None,
        **params: Any,
    ) -> None:
        try:
            self.p = self.Params(**params)
        except TypeError as exc:  # a name the dataclass lacks (the registry reports it first for study files)
            raise ConfigError(f"dataset '{self.registry_name}': {exc}") from exc
        self.p.check(f"dataset '{self.registry_name}'")
        self.params = self.p.cached()
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
            raise ConfigError(f"dataset '{self.registry_name}': `image_size >= 8` must hold, but got {image_size!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"dataset '{self.registry_name}': seed must be an integer, but got {seed!r}")
        self.image_size = image_size
        self.seed = seed
        if self.needs_path and path is None:
            raise ConfigError(f"dataset '{self.registry_name}' needs a path (data.path); got none")
        if not self.needs_path and path is not None:
            raise ConfigError(f"dataset '{self.registry_name}' is built in and takes no path, but got path={path}")
        self.path = Path(path).expanduser() if path is not None else None
        if self.path is not None and not self.path.exists():
            raise DataError(f"{self.path}: no such file or folder; expected the {self.registry_name} data")
        if cache_dir is False or cache_dir == "off":
            self.cache_dir: Path | None = None
        elif cache_dir is None or cache_dir is True:
            self.cache_dir = _cache.default_cache_dir()
        else:
            self.cache_dir = Path(cache_dir).expanduser()

    # -- to implement ------------------------------------------------------------------------------------------
    def build(self) -> DataBundle:  # pragma: no cover - abstract
        raise NotImplementedError

    def input_files(self) -> list[Path]:
        """Files whose (path, size, mtime) go into the cache key; readers override."""
        return []

    @classmethod
    def write_sample(cls, folder: Path) -> Path:
        """Readers: write a few tiny files of the real format under ``folder`` (which exists) and return the path
        to give as ``data.path``, enough for three non-empty splits with the registry's ``smoke_params``. The
        contract test (:func:`hyperrecon.testing.contracts.check_dataset`) loads them."""
        raise NotImplementedError(f"dataset '{cls.registry_name}' reads files but does not implement write_sample")

    # -- shared -----------------------------------------------------------------------------------------------
    @property
    def where(self) -> str:
        return str(self.path) if self.path is not None else self.registry_name

    def cache_path(self) -> Path | None:
        if self.cache_dir is None:
            return None
        payload = {
            "source": self.registry_name,
            "params": self.params,
            "image_size": self.image_size,
            "seed": self.seed,
            "inputs": _cache.file_stamp(self.input_files()),
        }
        return self.cache_dir / f"{self.registry_name}-{_cache.cache_key(payload)}.npz"

    def load(self) -> DataBundle:
        """Cached bundle if present, else ``build()`` + validation + atomic cache write."""
        t0 = time.perf_counter()
        target = self.cache_path()
        if target is not None:
            bundle = _cache.load_bundle(target)
            if bundle is not None:
                try:
                    validate_bundle(bundle, str(target))
                except DataError:  # a damaged or foreign entry: rebuild and overwrite it
                    bundle = None
            if bundle is not None:
                bundle.meta["cache"] = {"hit": True, "file": str(target), "seconds": time.perf_counter() - t0}
                return bundle
        bundle = self.build()
        validate_bundle(bundle, self.where)
        bundle.meta.setdefault("params", self.params)
        bundle.meta["seed"] = self.seed
        if target is not None:
            try:
                _cache.save_bundle(bundle, target)
            except OSError as exc:  # a read-only or full disk must not stop a run; say so in meta
                bundle.meta["cache_error"] = f"{target}: {exc}"
        bundle.meta["cache"] = {
            "hit": False,
            "file": str(target) if target else None,
            "seconds": time.perf_counter() - t0,
        }
        return bundle


def check_choice(where: str, name: str, value: Any, choices: tuple[Any, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{where}: {name} must be one of {', '.join(map(str, choices))}, but got {value!r}")


def check_range(
    where: str, name: str, value: Any, lo: float | None = None, hi: float | None = None, integer: bool = False
) -> None:
    """ConfigError unless lo <= value <= hi (and an int when ``integer``)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not isinstance(value, int)):
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{where}: {name} must be {kind}, but got {value!r}")
    if lo is not None and value < lo:
        raise ConfigError(f"{where}: `{name} >= {lo}` must hold, but got {name}={value}")
    if hi is not None and value > hi:
        raise ConfigError(f"{where}: `{name} <= {hi}` must hold, but got {name}={value}")
