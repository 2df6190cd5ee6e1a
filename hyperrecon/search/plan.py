"""What a study's ``[search]`` section asks for: seeds, strategies per target, fidelity steps, the metrics the
fidelity table records, the multi-objective pairs; and the check of it all before a run starts."""

from __future__ import annotations

from typing import Any

from ..config import Study
from ..errors import ConfigError
from .fidelity import fidelity_steps


def search_seeds(study: Study, *, models: bool = False, live: bool = False) -> list[int]:
    """Seeds of the replayed baseline searches (``search.seeds``), of the model searches (``search.model_seeds``,
    default the same), or of the live searches (``search.live.seeds``)."""
    n = study.search.model_seeds if models and study.search.model_seeds is not None else study.search.seeds
    if live:
        n = study.search.live.seeds
    return [study.seed + i for i in range(n)]


def live_steps(study: Study) -> int:
    """Training steps of a live trial (``search.live.steps``, default the baselines')."""
    return int(study.search.live.steps or baseline_steps(study))


def live_budget(study: Study) -> int:
    """Trials per live search (``search.live.budget``, default ``search.budget``)."""
    return int(study.search.live.budget or study.search.budget)


def model_strategies(study: Study) -> list[str]:
    """The strategies of a search over a λ-conditioned model: each distinct sampler (one evaluation per trial,
    so a pruner has nothing to stop)."""
    return list(dict.fromkeys(name.partition("+")[0] for name in study.search.strategies))


def baseline_steps(study: Study) -> int:
    return int(study.baselines.steps or study.train.steps)


def baseline_fidelity_steps(study: Study) -> list[int]:
    """Training steps at which every baseline's validation metrics are recorded (the last: full training)."""
    return fidelity_steps(baseline_steps(study), study.search.fidelities, study.search.reduction_factor)


def objective_pairs(study: Study, *, has_seg: bool) -> list[tuple[str, str]]:
    """The multi-objective pairs that this run can evaluate (a pair with a metric that needs a segmentation net,
    such as ``dice``, only where there is one)."""
    from ..metrics import needs_seg

    return [(a, b) for a, b in study.search.objective_pairs if has_seg or not (needs_seg(a) or needs_seg(b))]


def fidelity_metrics(study: Study, *, has_seg: bool) -> list[str]:
    """Metric columns of the fidelity table: the objective, then every metric of the objective pairs."""
    names = [study.search.objective] + [m for pair in objective_pairs(study, has_seg=has_seg) for m in pair]
    return list(dict.fromkeys(names))


def check_search(study: Study) -> dict[str, Any]:
    """Check every strategy, pruner and parameter and the objective pairs of ``study`` (``UnknownNameError`` /
    ``ConfigError`` naming the study file and key). Returns a printable summary."""
    from ..resolve import check_metrics
    from ..strategies import build_pruner, build_strategy_sampler, check_strategy, split_strategy

    src = study.source_file
    s = study.search
    where = f"{src} [search] strategies"
    steps = baseline_fidelity_steps(study)
    live = list(s.live.strategies)
    for name in [*s.strategies, *s.mo_strategies, *live]:
        if name in live:
            where = f"{src} [search] live.strategies"
            steps = fidelity_steps(live_steps(study), s.fidelities, s.reduction_factor)
        sampler, pruner = split_strategy(name)
        sampler_where = f"{src} [search] strategy_params.{sampler}" if sampler in s.strategy_params else where
        pruner_where = f"{src} [search] pruner_params.{pruner}" if pruner in s.pruner_params else where
        sampler_params, pruner_params = s.strategy_params.get(sampler, {}), s.pruner_params.get(pruner, {})
        check_strategy(
            name,
            sampler_params,
            pruner_params,
            where=where,
            params_where=sampler_where,
            pruner_params_where=pruner_where,
        )
        build_strategy_sampler(
            sampler, dict(sampler_params), n_lams=study.n_lams, budget=s.budget, seed=study.seed, where=sampler_where
        )
        build_pruner(
            pruner,
            dict(pruner_params),
            steps=steps,
            reduction_factor=s.reduction_factor,
            budget=s.budget,
            seed=study.seed,
            where=pruner_where,
        )
    for key, table in (("strategy_params", s.strategy_params), ("pruner_params", s.pruner_params)):
        used = {
            split_strategy(n)[0 if key == "strategy_params" else 1] for n in [*s.strategies, *s.mo_strategies, *live]
        }
        for name, params in table.items():
            if name not in used:
                raise ConfigError(f"{src} [search] {key}: '{name}' is not used by any strategy {sorted(used)}")
            if not isinstance(params, dict):
                raise ConfigError(f"{src} [search] {key}.{name}: expected a table of parameters, got {params!r}")
    for pair in s.objective_pairs:
        check_metrics(study, list(pair), f"{src} [search] objective_pairs")
    return {
        "strategies": list(s.strategies),
        "fidelity_steps": steps,
        "objective_pairs": [list(p) for p in s.objective_pairs],
        "live": {"strategies": live, "steps": live_steps(study), "budget": live_budget(study)} if live else None,
    }
