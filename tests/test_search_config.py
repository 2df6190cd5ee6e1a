"""The ``[search]`` section: bad strategies, pruners, parameters and pairs fail before a run starts, with one
``error:`` line naming the key (exit 2); good ones reach the samplers and pruners as written."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from hyperrecon.cli import app
from hyperrecon.config import load_study
from hyperrecon.search.plan import baseline_fidelity_steps, check_search, model_strategies, objective_pairs
from hyperrecon.strategies import build_pruner, build_strategy_sampler

runner = CliRunner()

CASES = [
    (
        "unknown-pruner",
        ['search.strategies=["tpe+hyperbnd"]'],
        ["unknown pruner 'hyperbnd'", "did you mean 'hyperband'"],
    ),
    ("unknown-sampler", ['search.strategies=["tpee+median"]'], ["unknown search strategy 'tpee'", "'tpe'"]),
    ("pruner-param", ["search.pruner_params={median={n_startup=2}}"], ["pruner 'median' has no parameter 'n_startup'"]),
    ("sampler-param", ["search.strategy_params={tpe={startup=2}}"], ["'tpe' has no parameter 'startup'"]),
    ("unused-params", ["search.strategy_params={cmaes={}}"], ["[search] strategy_params", "'cmaes' is not used"]),
    (
        "optuna-class-param",
        ['search.strategies=["random+ThresholdPruner"]', "search.pruner_params={ThresholdPruner={lowr=1.0}}"],
        ["ThresholdPruner", "lowr"],
    ),
    ("fidelities", ["search.fidelities=0"], ["[search] fidelities", "1 <= fidelities <= 10"]),
    ("reduction", ["search.reduction_factor=1"], ["[search] reduction_factor", "reduction_factor >= 2"]),
    ("workers", ["search.workers=[1, 0]"], ["[search] workers", "every workers >= 1"]),
    ("pair-length", ['search.objective_pairs=[["psnr"]]'], ["[search] objective_pairs", "two different metrics"]),
    ("pair-metric", ['search.objective_pairs=[["psnr", "hfn"]]'], ["unknown metric 'hfn'", "'hfen'"]),
    ("mo-strategy", ['search.mo_strategies=["nsga3"]'], ["unknown search strategy 'nsga3'"]),
]


@pytest.mark.parametrize(("sets", "needles"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_search_config_errors(sets: list[str], needles: list[str]) -> None:
    args = ["validate", "--study", "sl-knee-denoise", "--profile", "smoke"]
    for s in sets:
        args += ["--set", s]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    for needle in needles:
        assert needle in errors[0], errors[0]


def test_settings_reach_samplers_and_pruners_from_the_study_file(tmp_path: Path) -> None:
    src = Path(load_study("sl-knee-cs").source_file).read_text()
    src = src.replace(
        'objective = "psnr"\n',
        'objective = "psnr"\nstrategy_params = { tpe = { n_startup_trials = 2 } }\n'
        "pruner_params = { median = { n_startup_trials = 4 }, ThresholdPruner = { lower = 20.0 } }\n",
        1,
    )
    src = src.replace('"tpe+median"]', '"tpe+median", "CmaEsSampler+ThresholdPruner"]', 1)
    path = tmp_path / "study.toml"
    path.write_text(src)
    s = load_study(str(path), "quick", ["search.reduction_factor=2", "search.fidelities=3", "train.steps=200"])
    assert check_search(s)["fidelity_steps"] == [50, 100, 200] == baseline_fidelity_steps(s)
    tpe = build_strategy_sampler("tpe", s.search.strategy_params["tpe"], n_lams=1, budget=10, seed=0)
    assert tpe._n_startup_trials == 2
    med = build_pruner(
        "median", s.search.pruner_params["median"], steps=[50, 100, 200], reduction_factor=2, budget=10, seed=0
    )
    assert isinstance(med, optuna.pruners.MedianPruner) and med._n_startup_trials == 4
    hb = build_pruner("hyperband", {}, steps=[50, 100, 200], reduction_factor=2, budget=10, seed=0)
    assert (hb._min_resource, hb._max_resource, hb._reduction_factor) == (50, 200, 2)
    thr = build_pruner(
        "ThresholdPruner", s.search.pruner_params["ThresholdPruner"], steps=[1], reduction_factor=2, budget=10, seed=0
    )
    assert isinstance(thr, optuna.pruners.ThresholdPruner) and thr._lower == 20.0
    cma = build_strategy_sampler("CmaEsSampler", {}, n_lams=1, budget=10, seed=7)
    assert isinstance(cma, optuna.samplers.CmaEsSampler)
    assert model_strategies(s) == ["grid", "random", "tpe", "gp", "qmc", "CmaEsSampler"]
    assert objective_pairs(s, has_seg=False) == [("psnr", "hfen")]
    assert objective_pairs(s, has_seg=True) == [("psnr", "hfen"), ("psnr", "dice")]


def test_list_pruners() -> None:
    result = runner.invoke(app, ["list", "pruners", "--json"])
    assert result.exit_code == 0, result.output
    names = {r["name"] for r in json.loads(result.stdout[result.stdout.index("[") :])}
    assert {"none", "median", "successive-halving", "hyperband"} <= names
