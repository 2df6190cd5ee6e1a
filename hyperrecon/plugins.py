"""Where each registry lives, and loading of user plugin modules.

Registries sit in the modules that implement their entries (losses in ``losses.py`` ...). This table lets the CLI
import only the one it needs, and only when it needs it, so that ``hrbench --help`` stays free of torch.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable

from .errors import ConfigError
from .registry import Registry, did_you_mean

# kind (as typed on the command line) -> (module, attribute)
REGISTRIES: dict[str, tuple[str, str]] = {
    "losses": ("hyperrecon.losses", "LOSSES"),
    "samplers": ("hyperrecon.samplers", "SAMPLERS"),
    "strategies": ("hyperrecon.strategies", "STRATEGIES"),
    "pruners": ("hyperrecon.strategies", "PRUNERS"),
    "models": ("hyperrecon.models", "MODELS"),
    "datasets": ("hyperrecon.data", "DATASETS"),
    "metrics": ("hyperrecon.metrics", "METRICS"),
    "forward-models": ("hyperrecon.physics", "FORWARD_MODELS"),
}


def registry(kind: str) -> Registry:
    """The registry for ``kind`` (a key of :data:`REGISTRIES`), importing its module on first use."""
    if kind not in REGISTRIES:
        raise ConfigError(
            f"unknown registry '{kind}'{did_you_mean(kind, REGISTRIES)}; valid: studies, {', '.join(REGISTRIES)}"
        )
    module, attr = REGISTRIES[kind]
    return getattr(importlib.import_module(module), attr)


def load_plugins(modules: Iterable[str], *, source: str = "", search_path: str | None = None) -> list[str]:
    """Import user plugin modules named by a study (``plugins = ["my_lab.losses"]``) before names resolve.

    Plugins are imported only when a study lists them. ``search_path`` (the study file's folder) is put on
    ``sys.path`` first so that a module next to the study file is found.
    """
    loaded = []
    prefix = f"{source} " if source else ""
    for name in modules:
        if search_path and search_path not in sys.path:
            sys.path.insert(0, search_path)
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            raise ConfigError(f"{prefix}plugins: cannot import plugin module '{name}' ({exc})") from exc
        except Exception as exc:  # a plugin that fails at import time is the user's code: say where
            raise ConfigError(
                f"{prefix}plugins: plugin module '{name}' failed to import: {type(exc).__name__}: {exc}"
            ) from exc
        loaded.append(name)
    return loaded
