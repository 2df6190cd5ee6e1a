"""The model registry (``hrbench list models``); each network registers itself where it is defined."""

from __future__ import annotations

from torch import nn

from ..registry import Registry

MODELS: Registry[type[nn.Module]] = Registry("model")
