"""Named plugin registries: losses, samplers, search strategies, models, datasets, metrics, forward models.

A registry maps a name to a class or factory. ``register`` is a decorator; ``get`` fails with the valid names and a
did-you-mean; ``build`` checks keyword parameters against the constructor signature before calling it, so a typo
in a study file is reported as a config error rather than a ``TypeError`` deep inside a run.

Each registered object may carry ``smoke_params`` (a dict of tiny constructor arguments used by the contract
tests) and ``description`` (one line for ``hrbench list``); the first docstring line is used otherwise.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from .errors import ConfigError, UnknownNameError

T = TypeVar("T")


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Return `` (did you mean 'x'?)`` for the closest candidate, or an empty string."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class Registry(Generic[T]):
    """A name -> object table for one kind of plugin (``kind`` is used in messages, e.g. "loss")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, *, description: str | None = None) -> Callable[[T], T]:
        """Decorator: ``@LOSSES.register("tv")``. Re-registering a name replaces it (plugins may override)."""

        def decorate(obj: T) -> T:
            if description is not None:
                try:
                    obj.description = description  # type: ignore[attr-defined]
                except AttributeError:
                    pass
            try:
                obj.registry_name = name  # type: ignore[attr-defined]
            except AttributeError:
                pass
            self._items[name] = obj
            return obj

        return decorate

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def get(self, name: str, *, where: str = "") -> T:
        """Look a name up; ``where`` prefixes the message (e.g. "studies/x.toml [loss] terms")."""
        if name not in self._items:
            prefix = f"{where}: " if where else ""
            valid = ", ".join(self.names()) or "(none registered)"
            raise UnknownNameError(
                f"{prefix}unknown {self.kind} '{name}'{did_you_mean(name, self._items)}; valid names: {valid}"
            )
        return self._items[name]

    def describe(self, name: str) -> str:
        """One line for ``hrbench list``."""
        obj = self._items[name]
        text = getattr(obj, "description", None) or (inspect.getdoc(obj) or "").strip()
        return text.splitlines()[0] if text else ""

    def check_params(self, name: str, params: dict[str, Any], *, where: str = "") -> None:
        """Raise ``ConfigError`` if ``params`` has keys the constructor does not accept or lacks required ones."""
        obj = self.get(name, where=where)
        try:
            sig = inspect.signature(obj)  # type: ignore[arg-type]
        except (TypeError, ValueError):  # builtins without a signature: nothing to check
            return
        accepted = {p.name: p for p in sig.parameters.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        takes_kwargs = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
        prefix = f"{where}: " if where else ""
        if not takes_kwargs:
            for key in params:
                if key not in accepted:
                    valid = ", ".join(accepted) or "(none)"
                    raise ConfigError(
                        f"{prefix}{self.kind} '{name}' has no parameter '{key}'"
                        f"{did_you_mean(key, accepted)}; valid parameters: {valid}"
                    )

    def build(self, name: str, params: dict[str, Any] | None = None, *, where: str = "", **extra: Any) -> Any:
        """Instantiate ``name`` with ``params`` (checked) plus ``extra`` keyword arguments supplied by the code."""
        params = dict(params or {})
        self.check_params(name, params, where=where)
        obj = self.get(name, where=where)
        try:
            return obj(**extra, **params)  # type: ignore[operator]
        except (TypeError, ValueError) as exc:
            prefix = f"{where}: " if where else ""
            raise ConfigError(f"{prefix}cannot build {self.kind} '{name}' with {params}: {exc}") from exc
