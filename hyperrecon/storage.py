"""Moved to :mod:`hyperrecon.runs.ledger`; this module is that module, so that old imports keep working."""

import sys

from .runs import ledger as _moved

sys.modules[__name__] = _moved
