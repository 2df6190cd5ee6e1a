"""The study schema, defined once (pydantic), published as docs/study.schema.json: it is current, it validates
every bundled study, it rejects malformed ones, and the loader agrees with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hyperrecon.config import bundled_studies, load_study, read_toml, study_from_dict, study_json_schema
from hyperrecon.errors import ConfigError

jsonschema = pytest.importorskip("jsonschema")
SCHEMA_FILE = Path(__file__).resolve().parents[1] / "docs" / "study.schema.json"


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_published_schema_is_current() -> None:
    assert json.loads(SCHEMA_FILE.read_text(encoding="utf-8")) == study_json_schema(), (
        'regenerate: python -c "import json; from hyperrecon.config import study_json_schema; '
        'print(json.dumps(study_json_schema(), indent=2, ensure_ascii=False))" > docs/study.schema.json'
    )


@pytest.mark.parametrize("name", sorted(bundled_studies()))
def test_schema_validates_every_bundled_study(validator, name: str) -> None:
    errors = list(validator.iter_errors(read_toml(bundled_studies()[name])))
    assert not errors, [e.message for e in errors]


MALFORMED = [
    ("unknown-key", {"train": {"stepz": 3}}, "stepz"),
    ("wrong-type", {"seed": "many"}, "seed"),
    ("out-of-range", {"train": {"lr": 2.0}}, "lr"),
    ("lambda-outside", {"baselines": {"grid": [0.0, 1.5]}}, "grid"),
    ("bad-literal", {"train": {"precision": "fp8"}}, "precision"),
    ("bad-kind", {"kind": "xy"}, "kind"),
    ("bad-profile-key", {"profiles": {"smoke": {"train": {"stepz": 1}}}}, "stepz"),
    ("profile-wrong-type", {"profiles": {"quick": {"model": {"width": 0}}}}, "width"),
    ("image-size-multiple", {"data": {"image_size": 30}}, "image_size"),
]


@pytest.mark.parametrize(("change", "key"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_schema_rejects_malformed_and_the_loader_agrees(validator, change: dict, key: str) -> None:
    raw = read_toml(bundled_studies()["sl-knee-cs"])
    if "profiles" not in change:  # so that no profile overrides the broken base value
        raw.pop("profiles")
    for top, value in change.items():
        if isinstance(value, dict) and isinstance(raw.get(top), dict):
            merged = dict(raw[top])
            for k, v in value.items():
                merged[k] = {**merged.get(k, {}), **v} if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
            raw[top] = merged
        else:
            raw[top] = value
    errors = list(validator.iter_errors(raw))
    assert errors, f"schema accepted {change}"
    profile = next(iter(change["profiles"])) if "profiles" in change else "quick"
    with pytest.raises(ConfigError, match=key):
        study_from_dict(raw, profile=profile, source="x.toml")


def test_loader_message_names_file_table_and_key(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('name = "s"\nkind = "sl"\n[train]\nlr = 2.0\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_study(str(path))
    assert str(info.value) == f"{path} [train] lr: `0 < lr < 1` must hold, but got lr=2.0"
