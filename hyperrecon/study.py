"""Moved to :mod:`hyperrecon.runs.orchestrate`; this module is that module, so that old imports keep working."""

import sys

from .runs import orchestrate as _moved

sys.modules[__name__] = _moved
