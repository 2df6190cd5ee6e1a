"""The run machinery: a study -> a run folder, its jobs through the ledger, and the merged result tables.

Read in this order: :mod:`.folder` (the run folder, every path, ``run.json``), :mod:`.models` (the model specs a
study trains), :mod:`.jobs` (jobs and phases), :mod:`.ledger` + :mod:`.journal` + :mod:`.urls` (the job ledger on
Optuna storage), :mod:`.orchestrate` (make or resume a run, enqueue, workers, ``execute``), :mod:`.context` (what a
process loads once), :mod:`.provenance` (what jobs ran with), :mod:`.executors` (what one job does),
:mod:`.merge` (per-job outputs -> result tables) and :mod:`.summary` (``metrics.csv``, tidy tables,
``summary.json``).
"""
