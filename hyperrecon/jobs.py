"""Moved to :mod:`hyperrecon.runs.jobs`; this module is that module, so that old imports keep working."""

import sys

from .runs import jobs as _moved

sys.modules[__name__] = _moved
