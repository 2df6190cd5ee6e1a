"""Moved to :mod:`hyperrecon.runs.executors`; this module is that module, so that old imports keep working."""

import sys

from .runs import executors as _moved

sys.modules[__name__] = _moved
