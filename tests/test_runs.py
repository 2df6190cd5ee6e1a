"""The run machinery's own pieces (hyperrecon/runs/): the run folder, the model specs, the old import paths."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hyperrecon.config import load_study
from hyperrecon.errors import RunError
from hyperrecon.runs.folder import MERGED_FILES, RUN_FORMAT, RunFolder
from hyperrecon.runs.models import ModelSpec, model_specs, model_specs_from_config

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------------------------
# model specs


@pytest.mark.parametrize("name", ["ao-knee", "sl-knee-cs"])
def test_model_specs_follow_the_study(name: str) -> None:
    study = load_study(name, "smoke")
    specs = model_specs(study)
    grid = list(study.baselines.grid)
    n_base = len(grid) ** study.n_lams
    n_hyper = len(study.hyper.sizes) * len(study.hyper.samplers)
    assert len(specs) == n_base + n_hyper + int(study.hyper.film)
    assert [m.kind for m in specs] == ["baseline"] * n_base + ["hyper"] * n_hyper + ["film"] * int(study.hyper.film)
    assert len({m.name for m in specs}) == len(specs)
    # λ1 slowest, as the paper's grid tables read
    assert [m.lam for m in specs[:n_base]] == [
        tuple(p) for p in (np.array(np.meshgrid(*[grid] * study.n_lams, indexing="ij")).reshape(study.n_lams, -1).T)
    ]
    assert all(m.architecture == {"baseline": "unet", "hyper": "hyperunet", "film": "film-unet"}[m.kind] for m in specs)
    # the same specs from config.json as the report reads them
    assert model_specs_from_config(study.to_dict()) == specs


def test_a_sampler_with_a_hyphen_keeps_its_name_and_kind(tmp_path: Path) -> None:
    """A sampler named with a hyphen: the old name parsing (split on '-') took ``hyper-S-my-dhs`` for no
    HyperRecon at all and labelled it by its raw name."""
    from hyperrecon.reporting.rundata import load_run
    from hyperrecon.reporting.style import hyper_parts, model_kind, model_label

    spec = ModelSpec.hyper("S", "my-dhs")
    assert spec.name == "hyper-S-my-dhs" and ModelSpec.from_name(spec.name) == spec
    assert hyper_parts(spec.name) == ("S", "my-dhs") and model_kind(spec.name) == "hyper"
    assert model_label(spec.name) == "HyperRecon-S (my-dhs)"
    assert ModelSpec.from_name("film-my-uhs") == ModelSpec.film("my-uhs")
    # λ written with an exponent has a hyphen too: one λ, not two
    assert ModelSpec.from_name(ModelSpec.baseline([1e-5]).name) == ModelSpec.baseline([1e-5])
    assert ModelSpec.from_name("baseline-0.25-1").lam == (0.25, 1.0)
    assert ModelSpec.from_name("hyper-S") is None and ModelSpec.from_name("seg") is None

    # a run folder whose config lists the sampler: the report's data take the specs from it
    d = tmp_path / "run"
    d.mkdir()
    cfg = {"kind": "sl", "baselines": {"grid": [0.0, 1.0]}, "hyper": {"sizes": ["S"], "samplers": ["my-dhs"]}}
    cfg["hyper"]["film"] = False
    (d / "run.json").write_text(json.dumps({"format": RUN_FORMAT, "run_id": "x", "storage": "y"}))
    (d / "config.json").write_text(json.dumps({"config_hash": "h", "study": cfg}))
    rows = [
        {"model": m, "lam1": lam, "slice": "v/0", "metric": "psnr", "value": 30.0 + lam}
        for m, lams in (("baseline-0", [0.0]), ("baseline-1", [1.0]), ("hyper-S-my-dhs", [0.0, 0.5, 1.0]))
        for lam in lams
    ]
    pd.DataFrame(rows).to_csv(d / "results.csv", index=False)
    costs = [
        {"model": m, "kind": k, "n_params": 10, "device_seconds": 1.0, "wall_seconds": 2.0}
        for m, k in (("baseline-0", "baseline"), ("baseline-1", "baseline"), ("hyper-S-my-dhs", "hyper"))
    ]
    pd.DataFrame(costs).to_csv(d / "costs.csv", index=False)
    data = load_run(d)
    assert data.baselines == ["baseline-0", "baseline-1"] and data.conditional == ["hyper-S-my-dhs"]
    assert data.specs["hyper-S-my-dhs"] == spec and data.kind_of("hyper-S-my-dhs") == "hyper"
    assert data.specs["baseline-1"].lam == (1.0,)


# ---------------------------------------------------------------------------------------------------------------
# the run folder


def _folder(tmp_path: Path, run: object, config: object = None) -> RunFolder:
    f = RunFolder(tmp_path / "run")
    f.root.mkdir()
    f.run_json.write_text(run if isinstance(run, str) else json.dumps(run))
    if config is not None:
        f.config_json.write_text(config if isinstance(config, str) else json.dumps(config))
    return f


GOOD_RUN = {"format": RUN_FORMAT, "run_id": "r-1", "storage": "/elsewhere/ledger.journal", "ledger": "ledger.journal"}
GOOD_CFG = {"config_hash": "abc", "study": {"name": "x"}}


def test_read_info_reads_and_checks_both_files(tmp_path: Path) -> None:
    f = _folder(tmp_path, {**GOOD_RUN, "threads": 3}, GOOD_CFG)
    info = f.read_info()
    assert (info.run_id, info.config_hash, info.study, info.threads) == ("r-1", "abc", {"name": "x"}, 3)
    # the run's own journal wins over the URL it was made with: a moved folder keeps its ledger
    assert info.ledger_url == str((f.root / "ledger.journal").resolve())
    assert info.stored_url == "/elsewhere/ledger.journal"


@pytest.mark.parametrize(
    ("run", "config", "file", "needle"),
    [
        ({**GOOD_RUN, "format": 7}, GOOD_CFG, "run.json", "run folder format 7; expected format 1"),
        ("{not json", GOOD_CFG, "run.json", "unreadable JSON"),
        ("[1, 2]", GOOD_CFG, "run.json", "expected a JSON object"),
        (GOOD_RUN, None, "config.json", "missing; expected the resolved study config"),
        (GOOD_RUN, {"config_hash": "abc"}, "config.json", "no 'study' object"),
        ({**GOOD_RUN, "threads": 0}, GOOD_CFG, "run.json threads", "whole number >= 1"),
        ({"format": RUN_FORMAT}, GOOD_CFG, "run.json", "lacks run_id, storage"),
    ],
)
def test_read_info_names_the_file_and_what_was_expected(tmp_path, run, config, file, needle) -> None:
    f = _folder(tmp_path, run, config)
    with pytest.raises(RunError, match=needle) as err:
        info = f.read_info()
        _ = info.threads, info.run_id
    assert file in str(err.value) and "\n" not in str(err.value)


def test_paths_and_replicates(tmp_path: Path) -> None:
    f = RunFolder(tmp_path)
    assert f.replicate(0) == f
    r2 = f.replicate(2)
    assert r2.root == tmp_path / "replicates" / "r2"
    assert r2.weights("hyper-S-dhs") == tmp_path / "replicates/r2/models/hyper-S-dhs.pt"
    assert f.eval_file("m", "-meta.json") == tmp_path / "eval" / "m-meta.json"
    assert f.job_record("eval-m") == tmp_path / "jobs" / "eval-m.json"
    assert f.checkpoint("m") == tmp_path / "checkpoints" / "m.pt"
    with pytest.raises(ValueError, match="not a merged file"):
        f.table("result.csv")


def test_every_merged_file_is_documented() -> None:
    doc = (ROOT / "docs" / "run-folder.md").read_text(encoding="utf-8")
    # explore.html: placed there by the user (`hrbench explore RUN --export RUN/explore.html`, README), not the run
    missing = [name for name in MERGED_FILES if f"`{name}`" not in doc and name != "explore.html"]
    assert not missing


def test_claim_has_one_winner(tmp_path: Path) -> None:
    f = RunFolder(tmp_path / "run")
    f.claim({"format": RUN_FORMAT, "run_id": "a"})
    with pytest.raises(RunError, match="another run claimed this folder first"):
        f.claim({"format": RUN_FORMAT, "run_id": "b"})
    assert json.loads(f.run_json.read_text())["run_id"] == "a"


# ---------------------------------------------------------------------------------------------------------------
# old import paths


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("study", "orchestrate"),
        ("storage", "ledger"),
        ("journal", "journal"),
        ("storage_urls", "urls"),
        ("jobs", "jobs"),
        ("executors", "executors"),
        ("context", "context"),
        ("runfiles", "summary"),
    ],
)
def test_old_import_paths_are_the_moved_modules(old: str, new: str) -> None:
    assert importlib.import_module(f"hyperrecon.{old}") is importlib.import_module(f"hyperrecon.runs.{new}")


def test_a_run_is_its_context() -> None:
    from hyperrecon.runs.context import RunContext
    from hyperrecon.study import Run
    from hyperrecon.study import RunContext as OldContext

    assert Run is RunContext is OldContext
