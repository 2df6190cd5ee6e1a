"""Error types. Library code raises these; the CLI prints one ``error:`` line and exits with ``exit_code``.

Messages say what was given and what was expected, e.g.
``studies/x.toml [train] epochs: `epochs >= 1` must hold, but got epochs=0``.
"""

from __future__ import annotations


class HyperReconError(Exception):
    """Root of every error the toolkit raises on purpose. Exit code 1 (runtime)."""

    exit_code = 1


class ConfigError(HyperReconError):
    """A study file, a ``--set`` override or a CLI option is wrong. Exit code 2 (usage)."""

    exit_code = 2


class UnknownNameError(ConfigError):
    """A plugin name (loss, sampler, strategy, model, dataset, metric ...) is not registered."""


class DataError(HyperReconError):
    """Input data are missing, corrupt or inconsistent (bad user input, so exit code 2)."""

    exit_code = 2


class DataBusyError(DataError):
    """An input file is held by another process (an HDF5 file open for writing): the data are not at fault and a
    later try can succeed, so exit code 1 (runtime)."""

    exit_code = 1


class TrainingError(HyperReconError):
    """Training cannot go on (non-finite loss, diverged model). Exit code 1."""


class CheckpointError(HyperReconError):
    """A checkpoint or run directory is corrupt, truncated or from an incompatible version. Exit code 1."""


class RunError(HyperReconError):
    """A run directory or job ledger is in a state the runner cannot continue from. Exit code 1."""
