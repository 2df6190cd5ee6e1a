"""Environment variables and numeric settings are checked where they are read: one ``error:`` line naming the
setting, exit 2, nothing written (issue 13, item 4). Each kind of bad value has a case."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hyperrecon import settings
from hyperrecon.cli import app
from hyperrecon.errors import ConfigError
from hyperrecon.storage import JobLedger, host_id

runner = CliRunner()
STUDY = ["--study", "sl-knee-denoise", "--profile", "smoke"]

ENV_CASES = [
    # (id, variables, needles)
    ("grace-not-a-number", {"HRBENCH_GRACE_S": "abc"}, ["HRBENCH_GRACE_S='abc'", "expected a number of seconds"]),
    ("grace-nan", {"HRBENCH_GRACE_S": "nan"}, ["HRBENCH_GRACE_S", "finite"]),
    ("grace-negative", {"HRBENCH_GRACE_S": "-5"}, ["HRBENCH_GRACE_S > HRBENCH_HEARTBEAT_S", "heartbeat is 10 s"]),
    ("grace-below-beat", {"HRBENCH_HEARTBEAT_S": "30", "HRBENCH_GRACE_S": "20"}, ["HRBENCH_GRACE_S=20", "30 s"]),
    ("grace-too-long", {"HRBENCH_GRACE_S": "1e9"}, ["HRBENCH_GRACE_S <= 86400"]),
    ("beat-zero", {"HRBENCH_HEARTBEAT_S": "0"}, ["HRBENCH_HEARTBEAT_S=0", "0.1 <= HRBENCH_HEARTBEAT_S <= 3600"]),
    ("beat-inf", {"HRBENCH_HEARTBEAT_S": "inf"}, ["HRBENCH_HEARTBEAT_S", "finite"]),
    ("beat-text", {"HRBENCH_HEARTBEAT_S": "10s"}, ["HRBENCH_HEARTBEAT_S='10s'"]),
    ("host-id-space", {"HRBENCH_HOST_ID": "my host"}, ["HRBENCH_HOST_ID", "without spaces"]),
    ("host-id-non-ascii", {"HRBENCH_HOST_ID": "hôte"}, ["HRBENCH_HOST_ID", "ASCII"]),
    ("cache-is-a-file", {"HRBENCH_CACHE": "FILE"}, ["HRBENCH_CACHE", "not a folder"]),
]


@pytest.mark.parametrize(("env", "needles"), [c[1:] for c in ENV_CASES], ids=[c[0] for c in ENV_CASES])
def test_bad_environment_is_one_error_line(tmp_path: Path, env: dict[str, str], needles: list[str]) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    env = {k: (str(a_file) if v == "FILE" else v) for k, v in env.items()}
    out = tmp_path / "new-run"
    for args in (["validate", *STUDY], ["run", *STUDY, "--out", str(out)], ["worker", "--run-dir", str(out)]):
        result = runner.invoke(app, args, env=env)
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), result.output
        for needle in needles:
            assert needle in lines[0]
        assert "Traceback" not in result.output
    assert not out.exists()  # nothing was made
    assert a_file.read_text() == "x"


def test_defaults_and_good_values(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in settings.VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert settings.ledger_timing() == (10.0, 60.0)
    assert settings.host_id_override() is None
    assert settings.cache_root() == Path.home() / ".cache" / "hrbench"
    monkeypatch.setenv("HRBENCH_HEARTBEAT_S", "0.5")
    monkeypatch.setenv("HRBENCH_GRACE_S", " 3 ")
    monkeypatch.setenv("HRBENCH_HOST_ID", "rack1:node7")
    monkeypatch.setenv("HRBENCH_CACHE", str(tmp_path / "new"))
    assert settings.ledger_timing() == (0.5, 3.0)
    assert host_id() == "rack1_node7"
    assert settings.cache_root() == tmp_path / "new"
    ledger = JobLedger(str(tmp_path / "l.journal"), "r", create=True)  # the ledger reads the checked values
    assert (ledger.heartbeat_s, ledger.grace_s) == (0.5, 3.0)
    monkeypatch.setenv("HRBENCH_GRACE_S", "0.5")  # equal to the beat: a live job would be reclaimed
    with pytest.raises(ConfigError, match="HRBENCH_GRACE_S > HRBENCH_HEARTBEAT_S"):
        JobLedger(str(tmp_path / "l.journal"), "r")
    monkeypatch.setenv("HRBENCH_GRACE_S", "")  # empty counts as unset
    assert settings.grace_s() == 60.0


NUMBER_CASES = [
    ("nan-threshold", "evaluation.rpsnr_threshold=nan", ["[evaluation] rpsnr_threshold", "finite", "nan"]),
    ("inf-threshold", "evaluation.rpsnr_threshold=inf", ["[evaluation] rpsnr_threshold", "finite"]),
    ("huge-threshold", "evaluation.rpsnr_threshold=1e6", ["-100 <= rpsnr_threshold <= 100"]),
    ("nan-lr", "train.lr=nan", ["[train] lr", "finite"]),
    ("nan-quantile", "evaluation.diverse_quantile=nan", ["[evaluation] diverse_quantile", "finite"]),
    ("nan-grid", "baselines.grid=[0.0,nan]", ["[baselines] grid"]),
    ("nan-scale", "loss.scales=[1.0,nan]", ["[loss] scales"]),
    ("nan-grad-clip", "train.grad_clip=nan", ["[train] grad_clip"]),
    ("nan-forward-param", "forward.params.sigma=nan", ["[forward] params.sigma", "finite"]),
    ("inf-data-param", "data.params.n_train=inf", ["[data] params.n_train", "finite"]),
    ("inf-steps", "train.steps=inf", ["[train] steps", "expected integer"]),
    ("negative-seed", "seed=-1", ["seed >= 0"]),
    ("zero-budget", "search.budget=0", ["[search] budget", "budget >= 1"]),
]


@pytest.mark.parametrize(("item", "needles"), [c[1:] for c in NUMBER_CASES], ids=[c[0] for c in NUMBER_CASES])
def test_bad_numbers_in_the_config(tmp_path: Path, item: str, needles: list[str]) -> None:
    out = tmp_path / "new-run"
    for args in (["validate", *STUDY, "--set", item], ["run", *STUDY, "--set", item, "--out", str(out)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), result.output
        for needle in needles:
            assert needle in lines[0], lines[0]
    assert not out.exists()


def test_docs_list_every_variable() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "study-format.md").read_text(encoding="utf-8")
    for name in settings.VARIABLES:
        assert f"`{name}`" in doc
    src = Path(__file__).resolve().parents[1] / "hyperrecon"
    readers = [
        p
        for p in src.rglob("*.py")
        if 'environ.get("HRBENCH' in p.read_text(encoding="utf-8") or 'getenv("HRBENCH' in p.read_text(encoding="utf-8")
    ]
    assert [p.name for p in readers] == ["settings.py"] or not readers  # only settings.py reads them


def _numeric_keys() -> list[tuple[str, str, dict]]:
    """(section, key, schema) of every number in the study schema (nullable ones included)."""
    from hyperrecon.config import SECTIONS, study_json_schema

    schema = study_json_schema()
    out = []
    for section, cls in SECTIONS.items():
        props = schema["$defs"][cls.__name__]["properties"]
        for key, prop in props.items():
            options = prop.get("anyOf", [prop])
            number = next((o for o in options if o.get("type") in ("integer", "number")), None)
            if number is not None:
                out.append((section, key, number))
    return out


NUMERIC = _numeric_keys()


def test_the_numeric_keys_are_found() -> None:
    keys = {f"{s}.{k}" for s, k, _ in NUMERIC}
    assert {"train.lr", "evaluation.rpsnr_threshold", "data.image_size", "search.budget"} <= keys
    assert len(keys) >= 17


@pytest.mark.parametrize(("section", "key", "schema"), NUMERIC, ids=[f"{s}.{k}" for s, k, _ in NUMERIC])
def test_every_numeric_key_refuses_nan_and_out_of_range(section: str, key: str, schema: dict) -> None:
    from hyperrecon.config import load_study

    bad = ["nan", "inf", "-inf"]
    if "minimum" in schema or "exclusiveMinimum" in schema:
        lo = schema.get("minimum", schema.get("exclusiveMinimum"))
        bad.append(str(lo - 1 if schema["type"] == "integer" else lo - 0.5 if "minimum" in schema else lo))
    if "maximum" in schema or "exclusiveMaximum" in schema:
        hi = schema.get("maximum", schema.get("exclusiveMaximum"))
        bad.append(str(hi + 8 if schema["type"] == "integer" else hi + 0.5 if "maximum" in schema else hi))
    for text in bad:
        with pytest.raises(ConfigError) as info:
            load_study("ao-knee", "smoke", [f"{section}.{key}={text}"])
        message = str(info.value)
        assert f"[{section}] {key}:" in message and "\n" not in message, message
