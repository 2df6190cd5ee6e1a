"""Search studies in a run's storage: saved next to the job ledger, listed, loaded by Optuna's own tools
(``optuna.visualization.matplotlib``, optuna-dashboard's WSGI app) with their cost attributes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import matplotlib
import numpy as np
import optuna
import pandas as pd
import pytest

from hyperrecon.search import FidelityTable, list_search_studies, save_studies, search_fidelity, study_name
from hyperrecon.search.multi import replay_evaluator, search_multi
from hyperrecon.storage import JobLedger, open_storage

matplotlib.use("Agg")


def _table() -> FidelityTable:
    rows = []
    for lam in (0.0, 0.5, 1.0):
        for step, frac in ((1, 1 / 9), (3, 1 / 3), (9, 1.0)):
            rows.append(
                {
                    "lam1": lam,
                    "step": step,
                    "train_seconds": 10 * frac * (1 + lam),
                    "eval_seconds": 0.5,
                    "psnr": 30 - 10 * (lam - 0.4) ** 2 - 3 * (1 - frac),
                    "hfen": 0.2 + 0.1 * lam - 0.05 * frac,
                }
            )
    return FidelityTable.from_frame(pd.DataFrame(rows), ["psnr", "hfen"], 1)


def _searches(run_id: str):
    studies: list = []
    trials = search_fidelity(
        _table(),
        ["tpe", "random+hyperband"],
        budget=6,
        seeds=[0, 1],
        maximize=True,
        metric="psnr",
        run_id=run_id,
        studies_out=studies,
    )
    mo = search_multi(
        replay_evaluator(_table(), ["psnr", "hfen"]),
        ["psnr", "hfen"],
        [True, False],
        ["nsga2"],
        budget=6,
        seeds=[0],
        n_lams=1,
        target="baselines",
        run_id=run_id,
        studies_out=studies,
    )
    return trials, mo, studies


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_studies_are_saved_next_to_the_ledger_and_load_with_their_costs(tmp_path: Path) -> None:
    url = str(tmp_path / "ledger.journal")
    ledger = JobLedger(url, "run-a", create=True)
    ledger.enqueue("train-x", 0, {"kind": "x"})
    trials, mo, studies = _searches("run-a")
    names = save_studies(studies, url)
    assert sorted(names) == list_search_studies(url, "run-a") == list_search_studies(url)
    assert study_name("run-a", "baselines", "random+hyperband", 1) in names
    assert study_name("run-a", "baselines", "nsga2", 0, objectives=["psnr", "hfen"]) in names
    assert len(names) == 2 * 2 + 1

    # the ledger in the same journal still works (ids of its study and trials unchanged)
    again = JobLedger(url, "run-a")
    assert again.status() == {"train-x": "WAITING"}
    job = again.claim()
    assert job is not None and job.name == "train-x" and again.complete(job, {"device_seconds": 1.0})
    assert JobLedger(url, "run-a").status() == {"train-x": "COMPLETE"}

    storage = open_storage(url)
    name = study_name("run-a", "baselines", "random+hyperband", 1)
    study = optuna.load_study(study_name=name, storage=storage)
    rows = trials[trials.study == name].sort_values("trial")
    assert [t.number for t in study.trials] == rows["trial"].tolist()
    assert [t.state.name for t in study.trials] == rows["state"].tolist()
    for t, (_, r) in zip(study.trials, rows.iterrows(), strict=True):
        assert t.user_attrs["cost_seconds"] == pytest.approx(r.cost_seconds)
        assert t.user_attrs["full_cost_seconds"] == pytest.approx(r.full_cost_seconds)
        assert t.user_attrs["steps"] == r.step
        assert t.params["lam0"] == pytest.approx(r.suggested_lam1)
        assert max(t.intermediate_values, default=r.step) <= r.step
    attrs = study.user_attrs
    assert (attrs["target"], attrs["strategy"], attrs["pruner"], attrs["seed"]) == (
        "baselines",
        "random+hyperband",
        "hyperband",
        1,
    )
    assert attrs["fidelity_steps"] == [1, 3, 9] and attrs["objectives"] == ["psnr"]
    mo_study = optuna.load_study(
        study_name=study_name("run-a", "baselines", "nsga2", 0, objectives=["psnr", "hfen"]), storage=storage
    )
    assert mo_study.directions == [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    assert mo_study.metric_names == ["psnr", "hfen"] and len(mo_study.trials) == 6

    # Optuna's matplotlib plots open them as they are
    from optuna.visualization import matplotlib as ovm

    assert ovm.plot_optimization_history(study).has_data()
    assert ovm.plot_intermediate_values(study).has_data()
    assert ovm.plot_pareto_front(mo_study) is not None


def test_saving_again_replaces_a_study_of_the_same_name(tmp_path: Path) -> None:
    url = str(tmp_path / "ledger.journal")
    _, _, studies = _searches("run-b")
    save_studies(studies, url)
    _, _, studies = _searches("run-b")
    save_studies(studies, url, chunk=2)  # several chunks, each under the journal's lock
    names = list_search_studies(url, "run-b")
    assert len(names) == len(set(names)) == 5
    for name in names:
        assert len(optuna.load_study(study_name=name, storage=open_storage(url)).trials) == 6


def _wsgi_get(app, path: str) -> tuple[str, bytes]:
    from wsgiref.util import setup_testing_defaults

    environ: dict = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    environ["PATH_INFO"] = path
    status: list[str] = []
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    return status[0], body


def test_optuna_dashboard_lists_and_opens_the_run_studies(tmp_path: Path) -> None:
    dashboard = pytest.importorskip("optuna_dashboard")
    url = str(tmp_path / "ledger.journal")
    JobLedger(url, "run-c", create=True)
    _, _, studies = _searches("run-c")
    save_studies(studies, url)
    app = dashboard.wsgi(open_storage(url))
    status, body = _wsgi_get(app, "/api/studies")
    assert status.startswith("200")
    listed = {s["study_name"]: s["study_id"] for s in json.loads(body)["study_summaries"]}
    assert set(list_search_studies(url)) <= set(listed)
    name = study_name("run-c", "baselines", "tpe", 0)
    status, body = _wsgi_get(app, f"/api/studies/{listed[name]}")
    assert status.startswith("200")
    detail = json.loads(body)
    assert len(detail["trials"]) == 6
    costs = [next(a["value"] for a in t["user_attrs"] if a["key"] == "cost_seconds") for t in detail["trials"]]
    assert np.all(np.asarray(costs, dtype=float) > 0)


def test_studies_in_a_database_storage(tmp_path: Path) -> None:
    """A run on a database (here SQLite through the same SQLAlchemy storage as PostgreSQL) keeps them there."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    _, _, studies = _searches("run-d")
    names = save_studies(studies, url)
    assert list_search_studies(url, "run-d") == sorted(names)
    loaded = optuna.load_study(study_name=names[0], storage=open_storage(url))
    assert len(loaded.trials) == 6 and all("cost_seconds" in t.user_attrs for t in loaded.trials)


def test_chunks_interleaved_with_other_writers_keep_every_id(tmp_path: Path) -> None:
    """Between two chunks another process appends to the journal (here: the job ledger); the next chunk counts
    those lines before it writes, so every study and trial lands where its operations say."""
    from hyperrecon.search.studies import _journal_copier

    url = str(tmp_path / "ledger.journal")
    ledger = JobLedger(url, "run-e", create=True)
    trials, _, studies = _searches("run-e")
    copier = _journal_copier(url)
    copier.copy(studies[:2])
    ledger.enqueue("job-between", 1, {"kind": "x"})
    other = optuna.create_study(study_name="someone-else", storage=open_storage(url))
    other.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=1.0))
    copier.copy(studies[2:])
    storage = open_storage(url)
    for study, name in studies:
        loaded = optuna.load_study(study_name=name, storage=storage)
        assert [t.params for t in loaded.trials] == [t.params for t in study.trials]
        attrs = [json.dumps(t.user_attrs, sort_keys=True) for t in loaded.trials]  # NaN lam2: compare as text
        assert attrs == [json.dumps(t.user_attrs, sort_keys=True) for t in study.trials]
        assert [t.intermediate_values for t in loaded.trials] == [t.intermediate_values for t in study.trials]
    assert JobLedger(url, "run-e").status() == {"job-between": "WAITING"}
    assert len(optuna.load_study(study_name="someone-else", storage=storage).trials) == 1
