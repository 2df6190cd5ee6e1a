"""Moved to :mod:`hyperrecon.runs.journal`; this module is that module, so that old imports keep working."""

import sys

from .runs import journal as _moved

sys.modules[__name__] = _moved
