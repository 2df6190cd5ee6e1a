"""docs/run-folder.md against a real smoke run, both ways: every documented file, column and key is in the run's
files, and every file, column and key of the run is documented. Plus what makes the outputs self-describing:
units and directions, named objective, integer counts, absent (not empty) second-λ columns in an SL run, the
summary.json headline and the labelled job ledger."""

from __future__ import annotations

import fnmatch
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "run-folder.md"


def parse_doc() -> tuple[list[str], dict[str, dict[str, str]]]:
    """(layout patterns, {file pattern: {column or key pattern: present}})."""
    text = DOC.read_text(encoding="utf-8")
    layout_part = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    layout = re.findall(r"^\| `([^`]+)` \|", layout_part, flags=re.M)
    sections: dict[str, dict[str, str]] = {}
    for block in re.split(r"^### ", text, flags=re.M)[1:]:
        heading, _, body = block.partition("\n")
        entries = {}
        for line in body.splitlines():
            m = re.match(r"^\| `([^`]+)` \|.*\| ([a-zA-Z]+) \|$", line)
            if m:
                entries[m.group(1)] = m.group(2)
        for pattern in re.findall(r"`([^`]+)`", heading):
            sections[pattern] = entries
    return layout, sections


def key_matches(pattern: str, path: tuple[str, ...]) -> bool:
    """``a.*.c`` against a key path (a tuple: names such as ``baseline-0.5`` hold dots); ``**``: anything below."""
    p = pattern.split(".")
    if p[-1] == "**":
        return len(path) >= len(p) and key_matches(".".join(p[:-1]), path[: len(p) - 1])
    return len(p) == len(path) and all(a == "*" or a == b for a, b in zip(p, path, strict=True))


def json_nodes(obj: object, prefix: tuple[str, ...] = ()) -> tuple[set[tuple[str, ...]], set[tuple[str, ...]]]:
    """(every node path, leaf paths): objects are descended, lists and scalars are leaves."""
    nodes, leaves = set(), set()
    if isinstance(obj, dict) and (obj or not prefix):
        for key, value in obj.items():
            path = (*prefix, key)
            nodes.add(path)
            sub_nodes, sub_leaves = json_nodes(value, path)
            nodes |= sub_nodes
            leaves |= sub_leaves or {path}
    return nodes, leaves


def file_keys(path: Path) -> tuple[set[tuple[str, ...]], set[tuple[str, ...]]]:
    if path.suffix == ".csv":
        cols = {(c,) for c in pd.read_csv(path, nrows=1).columns}
        return cols, cols
    if path.suffix == ".npz":
        with np.load(path) as z:
            return {(k,) for k in z.files}, {(k,) for k in z.files}
    return json_nodes(json.loads(path.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def sl_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A smoke run through ``python -m hyperrecon`` under an ASCII locale (the report holds λ: issue 20)."""
    out = tmp_path_factory.mktemp("folder") / "run"
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0"}
    env.pop("PYTHONIOENCODING", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hyperrecon",
            "run",
            "--study",
            "sl-knee-denoise",
            "--profile",
            "smoke",
            "--out",
            str(out),
            "--device",
            "cpu",
        ],
        capture_output=True,
        env=env,
    )
    output = proc.stdout.decode("ascii") + proc.stderr.decode("ascii")  # nothing but ASCII came out
    assert proc.returncode == 0, output
    assert "Traceback" not in output
    return out, output


def test_every_file_is_in_the_layout(sl_run) -> None:
    run, _ = sl_run
    layout, _ = parse_doc()
    files = [p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()]
    undocumented = [f for f in files if not any(fnmatch.fnmatchcase(f, pat) for pat in layout)]
    assert not undocumented, undocumented
    for pattern in layout:  # every documented file of an SL smoke run without --storage/--workers/DHS is there
        if pattern not in ("worker-*.log", "eval/*-dhs-kept.npz", "replicates/r*/**"):
            assert any(fnmatch.fnmatchcase(f, pattern) for f in files), pattern


def _section_of(rel: str, sections: dict[str, dict[str, str]]) -> str | None:
    matches = [pat for pat in sections if fnmatch.fnmatchcase(rel, pat)]
    return max(matches, key=len) if matches else None  # eval/*-ranges.csv before eval/*.csv


def check_both_ways(run: Path, *, ao: bool) -> None:
    """Every column and key in the run's files is documented; every ``always`` entry (and ``AO`` in an AO run)
    is in them; ``AO`` entries are absent (not empty) in an SL run."""
    _, sections = parse_doc()
    seen: dict[str, set] = {}
    for path in sorted(run.rglob("*")):
        if path.suffix not in (".csv", ".json", ".npz") or not path.is_file():
            continue
        rel = path.relative_to(run).as_posix()
        section = _section_of(rel, sections)
        assert section is not None, f"{rel}: no section in docs/run-folder.md"
        nodes, leaves = file_keys(path)
        seen.setdefault(section, set()).update(nodes)
        documented = sections[section]
        missing = sorted(".".join(k) for k in leaves if not any(key_matches(p, k) for p in documented))
        assert not missing, f"{rel}: undocumented {missing}"
    for section, entries in sections.items():
        if section not in seen:  # a file this run does not have (checked by the layout test)
            continue
        for key, present in entries.items():
            found = any(key_matches(key, n) for n in seen[section])
            if present == "always" or (present == "AO" and ao):
                assert found, f"{section}: documented `{key}` is in no file of the run"
            elif present == "AO":  # a one-λ study: absent, not an empty column
                assert not found, f"{section}: `{key}` should be absent in an SL run"


def test_columns_and_keys_documented_both_ways(sl_run) -> None:
    check_both_ways(sl_run[0], ao=False)


@pytest.mark.slow
def test_columns_and_keys_documented_both_ways_in_an_ao_run(tmp_path: Path) -> None:
    out = tmp_path / "ao"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hyperrecon",
            "run",
            "--study",
            "ao-knee",
            "--profile",
            "smoke",
            "--out",
            str(out),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    check_both_ways(out, ao=True)
    summary = json.loads((out / "summary.json").read_text())
    assert all(len(m["best_lam"]) == 2 for m in summary["models"].values())


def test_metrics_sidecar_and_named_objective(sl_run) -> None:
    run, _ = sl_run
    metrics = pd.read_csv(run / "metrics.csv").set_index("metric")
    results = pd.read_csv(run / "results.csv")
    assert set(results.metric) <= set(metrics.index)
    # Field conventions: PSNR in dB, higher better; SSIM unitless, higher; MAE and HFEN lower.
    assert metrics.loc["psnr", "unit"] == "dB" and metrics.loc["psnr", "better"] == "higher"
    assert metrics.loc["rpsnr", "unit"] == "dB"
    assert metrics.loc["ssim", "unit"] == "1" and metrics.loc["ssim", "better"] == "higher"
    assert metrics.loc["mae", "better"] == "lower" and metrics.loc["hfen", "better"] == "lower"
    assert metrics.loc["dice", "better"] == "higher"
    search = pd.read_csv(run / "search.csv")
    assert set(search.objective_metric) == {"psnr"}  # sl-knee-denoise searches PSNR


def test_counts_are_integers_and_memory_in_mib(sl_run) -> None:
    run, _ = sl_run
    costs = pd.read_csv(run / "costs.csv")
    assert "peak_memory_mib" in costs.columns and "peak_memory_mb" not in costs.columns
    summary = pd.read_csv(run / "search_summary.csv")
    for frame, cols in (
        (costs, ["n_params", "steps"]),
        (summary, ["n_seeds", "n_trials", "chosen_seed"]),
        (pd.read_csv(run / "search.csv"), ["seed", "trial"]),
    ):
        for col in cols:
            assert pd.api.types.is_integer_dtype(frame[col]), (col, frame[col].dtype)
    text = (run / "search_summary.csv").read_text().splitlines()
    header = text[0].split(",")
    assert "." not in text[1].split(",")[header.index("n_trials")]


def test_summary_json_is_the_headline(sl_run) -> None:
    run, output = sl_run
    summary = json.loads((run / "summary.json").read_text())
    info = json.loads((run / "run.json").read_text())
    assert summary["format"] == 1 and summary["run_id"] == info["run_id"]
    assert summary["objective"] == {**summary["objective"], "metric": "psnr", "direction": "maximize", "unit": "dB"}
    assert summary["storage"] == str((run / "ledger.journal").resolve())
    assert summary["run_dir"] == str(run.resolve()) and Path(summary["run_dir"]).is_absolute()
    claims = summary["claims"]  # the report's claims table, one row per paper claim (a-f)
    assert [c["id"] for c in claims] == list("abcdef")
    assert all(c["verdict"] in ("reproduced", "refuted", "not testable") for c in claims)
    assert all(c["verdict"] == "not testable" for c in claims if c["n"] < 2 and c["id"] in "abc")
    results = pd.read_csv(run / "results.csv")
    assert set(summary["models"]) == set(results.model)
    for model, entry in summary["models"].items():
        psnr = results[(results.model == model) & (results.metric == "psnr")]
        by_lam = {lam: rows.value.to_numpy().mean() for lam, rows in psnr.groupby("lam1")}
        best = max(by_lam, key=by_lam.get)
        assert entry["best_lam"] == [pytest.approx(best)]
        assert entry["best_objective"] == pytest.approx(by_lam[best])
        assert entry["mean_objective_over_lam"] == pytest.approx(np.mean(list(by_lam.values())))
    ss = pd.read_csv(run / "search_summary.csv")
    assert len(summary["search"]) == len(ss)
    first = summary["search"][0]
    assert (first["target"], first["strategy"]) == (ss.target[0], ss.strategy[0])
    assert first["regret"] == pytest.approx(ss.regret_mean[0])
    assert all(math.isfinite(v) for v in [summary["objective"]["grid_optimum"]])


def test_end_message_and_report_link_the_docs(sl_run) -> None:
    run, output = sl_run
    assert str(run.resolve()) in output and "docs/run-folder.md" in output
    assert "docs/run-folder.md" in (run / "report.md").read_text(encoding="utf-8")
    assert "docs/run-folder.md" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_job_ledger_is_labelled_for_optuna_tools(sl_run) -> None:
    run, _ = sl_run
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(run / "ledger.journal")))
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
    # one job ledger beside the run's λ searches (each an Optuna study named hrbench-search:...)
    (summary,) = [s for s in summaries if s.study_name.startswith("hrbench-jobs:")]
    assert all(s.study_name.startswith(("hrbench-jobs:", "hrbench-search:")) for s in summaries)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    assert study.metric_names == ["device_seconds"]
    assert "job queue" in study.user_attrs["hrbench_role"]
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    job = json.loads((run / "jobs" / f"{done[0].user_attrs['job']}.json").read_text())
    assert done[0].value == pytest.approx(job["device_seconds"])
