"""Moved to :mod:`hyperrecon.runs.context`; this module is that module, so that old imports keep working."""

import sys

from .runs import context as _moved

sys.modules[__name__] = _moved
