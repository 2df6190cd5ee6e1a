"""Moved to :mod:`hyperrecon.runs.summary`; this module is that module, so that old imports keep working."""

import sys

from .runs import summary as _moved

sys.modules[__name__] = _moved
