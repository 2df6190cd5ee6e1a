"""The search phase of a real smoke run (issue 17's acceptance): the fidelity table, multi-fidelity strategies
that cost less than the same trials trained to the end (with the arithmetic checked against the table), the
studies in the run's storage, and the report's anytime bands, ranking table and Pareto figure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from typer.testing import CliRunner

from hyperrecon.cli import app
from hyperrecon.config import load_study
from hyperrecon.jobs import recon_models
from hyperrecon.search import fidelity_steps, list_search_studies
from hyperrecon.search.plan import baseline_fidelity_steps, live_budget, live_steps, model_strategies
from hyperrecon.storage import open_storage

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("search-run") / "run"
    result = runner.invoke(app, ["run", "--study", "sl-knee-cs", "--profile", "smoke", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.slow
def test_fidelity_table_and_multi_fidelity_costs(run_dir: Path) -> None:
    study = load_study("sl-knee-cs", "smoke")
    steps = baseline_fidelity_steps(study)
    fid = pd.read_csv(run_dir / "search" / "fidelity.csv")
    baselines = [m for m, k, _ in recon_models(study) if k == "baseline"]
    assert sorted(fid.model.unique()) == sorted(baselines)
    assert sorted(fid.step.unique()) == steps
    for model, g in fid.groupby("model"):
        g = g.sort_values("step")
        assert (np.diff(g.train_seconds) > 0).all() and (g.eval_seconds > 0).all()
        assert g.psnr.notna().all() and g.hfen.notna().all()
        # Dice of the single-term baselines, trained before the segmentation net, is scored from saved weights
        # by their evaluation jobs, which then delete them
        assert g.dice.notna().all() and g.dice.between(0, 1).all()
        final = json.loads((run_dir / "jobs" / f"{model}.json").read_text())["cost"]["device_seconds"]
        assert g.train_seconds.iloc[-1] == pytest.approx(final)  # the full training of the cost table
    assert not list((run_dir / "checkpoints").glob("*-step*.pt"))
    val = {m: json.loads((run_dir / "jobs" / f"eval-{m}.json").read_text())["val_objective"] for m in baselines}
    last = fid[fid.step == steps[-1]].set_index("model")
    for m, v in val.items():
        assert last.loc[m, study.search.objective] == pytest.approx(v)  # the replay's full fidelity = the grid

    search = pd.read_csv(run_dir / "search.csv")
    base = search[search.target == "baselines"]
    assert set(base.strategy) == set(study.search.strategies)
    mf = base[base.pruner != "none"]
    assert set(mf.pruner) == {"successive-halving", "hyperband", "median"}
    # every trial's cost from the fidelity table: training to the step it reached + the validation passes on the way
    by_cell = {(r.lam1, int(r.step)): r for r in fid.itertuples()}
    for r in base.itertuples():
        reached = [s for s in steps if s <= r.step] if r.pruner != "none" else [steps[-1]]
        expect = by_cell[(r.lam1, int(r.step))].train_seconds + sum(by_cell[(r.lam1, s)].eval_seconds for s in reached)
        assert r.cost_seconds == pytest.approx(expect)
        assert r.full_cost_seconds == pytest.approx(
            by_cell[(r.lam1, steps[-1])].train_seconds + by_cell[(r.lam1, steps[-1])].eval_seconds
        )
    pruned = mf[mf.state == "PRUNED"]
    assert len(pruned) and (pruned.cost_seconds < pruned.full_cost_seconds).all() and (pruned.step < steps[-1]).all()
    sha = mf[mf.pruner == "successive-halving"]
    assert sha.cost_seconds.sum() < sha.full_cost_seconds.sum()
    nop = base[base.pruner == "none"]
    np.testing.assert_allclose(nop.cost_seconds, nop.full_cost_seconds)


@pytest.mark.slow
def test_the_run_storage_lists_its_search_studies(run_dir: Path) -> None:
    study = load_study("sl-knee-cs", "smoke")
    info = json.loads((run_dir / "run.json").read_text())
    url = str(run_dir / info["ledger"])
    names = list_search_studies(url, info["run_id"])
    s = study.search
    conditional = [m for m, k, _ in recon_models(study) if k != "baseline"]
    n_pairs = len(s.objective_pairs)  # the knee phantom has labels: the Dice pair runs too
    n_workers = len([w for w in s.workers if w > 1])
    expected = (
        len(s.strategies) * s.seeds * (1 + n_workers)
        + n_pairs * len(s.mo_strategies) * s.seeds
        + len(conditional) * (len(model_strategies(study)) + n_pairs * len(s.mo_strategies)) * s.model_seeds
        + len(s.live.strategies) * s.live.seeds
    )
    assert len(names) == len(set(names)) == expected
    search = pd.read_csv(run_dir / "search.csv")
    assert set(search.study) <= set(names)
    one = search[search.study == search.study.iloc[0]]
    loaded = optuna.load_study(study_name=one.study.iloc[0], storage=open_storage(url))
    assert len(loaded.trials) == len(one)
    assert sorted(t.user_attrs["cost_seconds"] for t in loaded.trials) == pytest.approx(sorted(one.cost_seconds))
    par = pd.read_csv(run_dir / "search_parallel.csv")
    assert sorted(par.workers.unique()) == sorted(s.workers)
    mo = pd.read_csv(run_dir / "search_mo.csv")
    assert set(mo.objectives) == {",".join(p) for p in s.objective_pairs} and mo.hypervolume.notna().any()


@pytest.mark.slow
def test_the_report_has_bands_ranking_and_pareto(run_dir: Path) -> None:
    text = (run_dir / "report.md").read_text()
    for needle in (
        "figures/search.png",
        "95% t-interval",
        "### Ranking at equal device time",
        "Friedman",
        "### Multi-fidelity: what early stopping saved",
        "figures/search-pareto.png",
        "figures/search-hypervolume.png",
        "figures/search-parallel.png",
        "#### Which λ to pick for Dice",
    ):
        assert needle in text, needle
    for name in ("search.png", "search-regret.png", "search-pareto.png", "search-hypervolume.png"):
        assert (run_dir / "figures" / name).stat().st_size > 10_000


@pytest.mark.slow
def test_live_searches_train_report_and_load_like_the_replays(run_dir: Path) -> None:
    from optuna.visualization import matplotlib as ovm

    study = load_study("sl-knee-cs", "smoke")
    lv = study.search.live
    search = pd.read_csv(run_dir / "search.csv")
    live = search[search["mode"] == "live"]
    assert set(live.target) == {"baselines-live"} and set(live.strategy) == set(lv.strategies)
    assert len(live) == len(lv.strategies) * live_budget(study) * lv.seeds
    assert set(search[search.target == "baselines"]["mode"]) == {"replay"}
    steps = fidelity_steps(live_steps(study), study.search.fidelities, study.search.reduction_factor)
    assert set(live.step) <= set(steps) and (live[live.state == "COMPLETE"].step == steps[-1]).all()
    # a live trial is seeded as the baseline job at its λ: the grid's trials (λ = 0, 0.5, 1, the baseline grid,
    # trained as long) repeat the baselines' trainings, so their objective is the fidelity table's final value
    fid = pd.read_csv(run_dir / "search" / "fidelity.csv")
    final = fid[fid.step == steps[-1]].set_index("lam1")[study.search.objective]
    grid = live[live.strategy == "grid"]
    assert sorted(grid.lam1) == sorted(study.baselines.grid)
    for r in grid.itertuples():
        assert r.objective == pytest.approx(final[r.lam1], abs=1e-6)
    # pruned trials paid less than the same trials trained to the end; the job's device time is the trials'
    pruned = live[live.state == "PRUNED"]
    assert (pruned.cost_seconds < pruned.full_cost_seconds).all() and (pruned.step < steps[-1]).all()
    job = json.loads((run_dir / "jobs" / "search-live.json").read_text())
    assert job["device_seconds"] == pytest.approx(live.cost_seconds.sum())
    # the studies in the run's storage: reports at the fidelity steps, device seconds as user attributes, and
    # Optuna's own plots open them
    info = json.loads((run_dir / "run.json").read_text())
    storage = open_storage(str(run_dir / info["ledger"]))
    for name, rows in live.groupby("study"):
        loaded = optuna.load_study(study_name=name, storage=storage)
        assert loaded.user_attrs["mode"] == "live" and len(loaded.trials) == len(rows)
        for t, r in zip(loaded.trials, rows.sort_values("trial").itertuples(), strict=True):
            assert t.user_attrs["cost_seconds"] == pytest.approx(r.cost_seconds)
            assert t.user_attrs["cost_seconds"] == pytest.approx(
                t.user_attrs["train_seconds"] + t.user_attrs["eval_seconds"]
            )
            if "+" in r.strategy:
                assert sorted(t.intermediate_values) == [s for s in steps if s <= r.step]
        ovm.plot_intermediate_values(loaded)
        ovm.plot_optimization_history(loaded)
    text = (run_dir / "report.md").read_text()
    assert "### Live searches" in text and "U-Net baselines (trained live)" in text
