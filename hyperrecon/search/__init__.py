"""λ search over baselines (replayed, multi-fidelity) and over λ-conditioned models, as Optuna studies.

Modules: :mod:`~hyperrecon.search.core` (single-objective searches, the model objective, summaries),
:mod:`~hyperrecon.search.engine` (ask/tell on a simulated clock: pruners, asynchronous workers),
:mod:`~hyperrecon.search.fidelity` (the fidelity table), :mod:`~hyperrecon.search.live` (live search: trials
train a U-Net at λ and report to the pruner, in the run's storage), :mod:`~hyperrecon.search.multi` (multi-objective
searches, Pareto fronts, hypervolume), :mod:`~hyperrecon.search.stats` (anytime curves with confidence bands,
rankings, Friedman test, time to target), :mod:`~hyperrecon.search.studies` (names and storage of the studies).
"""

from .core import (
    REPLAY_TARGET,
    TRIAL_COLUMNS,
    make_model_objective,
    make_model_objectives,
    search_fidelity,
    search_model,
    search_replay,
    summarise,
)
from .engine import Outcome, Strategy, run_study, strategy_items
from .fidelity import FIDELITY_COLUMNS, FidelityTable, fidelity_steps
from .live import LIVE_TARGET, run_live_study, search_live
from .studies import SEARCH_PREFIX, list_search_studies, save_studies, study_name

__all__ = [
    "FIDELITY_COLUMNS",
    "REPLAY_TARGET",
    "SEARCH_PREFIX",
    "TRIAL_COLUMNS",
    "FidelityTable",
    "LIVE_TARGET",
    "Outcome",
    "Strategy",
    "fidelity_steps",
    "list_search_studies",
    "make_model_objective",
    "make_model_objectives",
    "run_live_study",
    "run_study",
    "save_studies",
    "search_fidelity",
    "search_live",
    "search_model",
    "search_replay",
    "strategy_items",
    "study_name",
    "summarise",
]
