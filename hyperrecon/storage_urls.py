"""Moved to :mod:`hyperrecon.runs.urls`; this module is that module, so that old imports keep working."""

import sys

from .runs import urls as _moved

sys.modules[__name__] = _moved
