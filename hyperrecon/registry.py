"""Named plugin registries: losses, samplers, search strategies, pruners, models, datasets, metrics, forward models.

A registry maps a name to a class or factory. Every registry is filled the same way, by a decorator on the class or
factory::

    @LOSSES.register("tv", description="total variation", smoke_params={"eps": 0.0})
    class TV(LossTerm): ...

``description`` is one line for ``hrbench list`` (the first docstring line when omitted); ``smoke_params`` are tiny
constructor arguments with which the contract tests (:mod:`hyperrecon.testing.contracts`) build and run the entry.
Both live in the registry's :class:`Entry`, not on the object. ``get`` fails with the valid names and a
did-you-mean; ``build`` checks keyword parameters against the constructor signature before calling it, so a typo
in a study file is reported as a config error rather than a ``TypeError`` deep inside a run.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .errors import ConfigError, UnknownNameError

T = TypeVar("T")


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Return `` (did you mean 'x'?)`` for the closest candidate, or an empty string."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered name: the class or factory, its ``hrbench list`` line and its contract-test parameters."""

    name: str
    obj: T
    description: str = ""
    smoke_params: Mapping[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """A name -> object table for one kind of plugin (``kind`` is used in messages, e.g. "loss")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Entry[T]] = {}

    def register(
        self, name: str, *, description: str | None = None, smoke_params: Mapping[str, Any] | None = None
    ) -> Callable[[T], T]:
        """Decorator: ``@LOSSES.register("tv", description=..., smoke_params={...})`` on a class or factory.

        The object is returned unchanged except for ``registry_name`` (the name it was registered under, set where
        the object allows attributes). Re-registering a name replaces it (plugins may override built-ins).
        ``smoke_params`` must be accepted by the constructor (checked here, so a plugin fails at import).
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} names are non-empty strings, got {name!r}")

        def decorate(obj: T) -> T:
            text = description or (inspect.getdoc(obj) or "").strip()
            entry = Entry(name, obj, text.splitlines()[0] if text else "", dict(smoke_params or {}))
            try:
                obj.registry_name = name  # type: ignore[attr-defined]
            except AttributeError:
                pass
            previous = self._items.get(name)
            self._items[name] = entry
            try:
                self.check_params(name, dict(entry.smoke_params), where=f"{self.kind} '{name}' smoke_params")
            except ConfigError:  # leave the registry as it was
                if previous is None:
                    del self._items[name]
                else:
                    self._items[name] = previous
                raise
            return obj

        return decorate

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests and plugins that clean up after themselves); unknown names are ignored."""
        self._items.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def entry(self, name: str, *, where: str = "") -> Entry[T]:
        """The :class:`Entry` for ``name``; unknown names fail as in :meth:`get`."""
        if name not in self._items:
            prefix = f"{where}: " if where else ""
            valid = ", ".join(self.names()) or "(none registered)"
            raise UnknownNameError(
                f"{prefix}unknown {self.kind} '{name}'{did_you_mean(name, self._items)}; valid names: {valid}"
            )
        return self._items[name]

    def get(self, name: str, *, where: str = "") -> T:
        """Look a name up; ``where`` prefixes the message (e.g. "studies/x.toml [loss] terms")."""
        return self.entry(name, where=where).obj

    def describe(self, name: str) -> str:
        """One line for ``hrbench list``."""
        return self.entry(name).description

    def smoke_params(self, name: str) -> dict[str, Any]:
        """A fresh copy of ``name``'s contract-test constructor arguments."""
        return dict(self.entry(name).smoke_params)

    def check_params(
        self, name: str, params: Mapping[str, Any], *, where: str = "", supplied: Iterable[str] = ()
    ) -> None:
        """Raise ``ConfigError`` if ``params`` has a key the constructor does not accept, a key in ``supplied`` (the
        arguments the code passes itself, e.g. a strategy's ``seed``), or a value that does not match the
        parameter's type annotation (checked with pydantic, never converted; unannotated parameters pass)."""
        obj = self.get(name, where=where)
        try:
            sig = inspect.signature(obj)  # type: ignore[arg-type]
        except (TypeError, ValueError):  # builtins without a signature: nothing to check
            return
        supplied = set(supplied)
        accepted = {
            p.name: p
            for p in sig.parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in supplied
        }
        takes_kwargs = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
        prefix = f"{where}: " if where else ""
        for key in params:
            if key in supplied:
                raise ConfigError(f"{prefix}{self.kind} '{name}': '{key}' is set by hrbench itself; remove it")
            if key not in accepted and not takes_kwargs:
                valid = ", ".join(accepted) or "(none)"
                raise ConfigError(
                    f"{prefix}{self.kind} '{name}' has no parameter '{key}'"
                    f"{did_you_mean(key, accepted)}; valid parameters: {valid}"
                )
        hints = _type_hints(obj)
        for key, value in params.items():
            if key in hints and not _matches(hints[key], value):
                raise ConfigError(
                    f"{prefix}{self.kind} '{name}' {key}: expected {_type_name(hints[key])}, but got {key}={value!r}"
                )

    def build(self, name: str, params: Mapping[str, Any] | None = None, *, where: str = "", **extra: Any) -> Any:
        """Instantiate ``name`` with ``params`` (checked) plus ``extra`` keyword arguments supplied by the code."""
        params = dict(params or {})
        self.check_params(name, params, where=where, supplied=extra)
        obj = self.get(name, where=where)
        try:
            return obj(**extra, **params)  # type: ignore[operator]
        except (TypeError, ValueError) as exc:
            prefix = f"{where}: " if where else ""
            raise ConfigError(f"{prefix}cannot build {self.kind} '{name}' with {params}: {exc}") from exc


def _type_hints(obj: Any) -> dict[str, Any]:
    """Resolved parameter annotations of a class's ``__init__`` or a function, or of its ``__signature__`` where
    it has one (datasets); parameters whose annotation cannot be resolved are left out."""
    import typing

    target: Any = obj
    try:
        resolved = typing.get_type_hints(target.__init__ if isinstance(obj, type) else obj)
    except Exception:  # an annotation naming something not importable here: leave the value to the constructor
        resolved = {}
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return {}
    hints = {p.name: resolved.get(p.name, p.annotation) for p in params}
    return {
        k: v for k, v in hints.items() if v is not inspect.Parameter.empty and v is not Any and not isinstance(v, str)
    }


def _matches(annotation: Any, value: Any) -> bool:
    """Whether ``value`` validates as ``annotation``: pydantic's strict JSON mode, as a study's TOML values are JSON
    values (a list fits a tuple, an int a float; a bool is no int, a string no number)."""
    import json

    from pydantic import TypeAdapter, ValidationError

    try:
        adapter = TypeAdapter(annotation)
    except Exception:  # a type pydantic cannot describe (an arbitrary class): not checked here
        return True
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):  # not a study value (an object passed by code): not checked here
        return True
    try:
        adapter.validate_json(text, strict=True)
    except ValidationError:
        return False
    return True


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    return text or str(annotation).replace("typing.", "")
