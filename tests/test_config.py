"""Study loading: bundled studies, profiles, overrides, strict keys, types and ranges."""

from __future__ import annotations

from pathlib import Path

import pytest

from hyperrecon.config import PROFILES, bundled_studies, load_study, study_from_dict
from hyperrecon.errors import ConfigError, UnknownNameError

STUDIES = ["ao-brain", "ao-knee", "sl-brain-cs", "sl-knee-cs", "sl-knee-denoise", "sl-knee-sr"]


def test_six_bundled_studies() -> None:
    assert sorted(bundled_studies()) == STUDIES


@pytest.mark.parametrize("name", STUDIES)
@pytest.mark.parametrize("profile", PROFILES)
def test_every_study_loads_under_every_profile(name: str, profile: str) -> None:
    s = load_study(name, profile)
    assert s.name == name and s.profile == profile
    assert len(s.loss.terms) == s.n_lams + 1
    assert s.kind == ("ao" if name.startswith("ao") else "sl")


def test_paper_profile_mirrors_the_paper() -> None:
    ao = load_study("ao-knee", "paper")
    assert ao.data.image_size == 256 and ao.train.batch_size == 32 and ao.train.lr == 1e-3
    assert len(ao.baselines.grid) == 18 and ao.evaluation.grid_points == 100
    assert ao.loss.terms == ("dc", "l1_weights", "tv") and ao.n_lams == 2
    sl = load_study("sl-knee-cs", "paper")
    assert sl.baselines.grid == (0.0, 0.25, 0.5, 0.75, 1.0) and sl.loss.terms == ("mae", "ssim")


def test_profile_overrides_merge_deeply() -> None:
    q = load_study("ao-knee", "quick")
    p = load_study("ao-knee", "paper")
    assert q.data.image_size < p.data.image_size
    assert q.data.params["contrast"] == "both"  # kept from the base params table
    assert q.forward == p.forward


def test_set_overrides_with_types() -> None:
    s = load_study("ao-knee", "smoke", ["train.steps=7", "train.lr=0.01", 'hyper.sizes=["M"]', "data.source=mni-brain"])
    assert s.train.steps == 7 and s.train.lr == 0.01 and s.hyper.sizes == ("M",) and s.data.source == "mni-brain"
    s = load_study("ao-knee", "smoke", ["forward.params.acceleration=4"])
    assert s.forward.params["acceleration"] == 4


def test_config_hash_changes_with_values() -> None:
    a = load_study("ao-knee", "smoke")
    b = load_study("ao-knee", "smoke", ["seed=1"])
    assert a.config_hash() != b.config_hash()
    assert a.config_hash() == load_study("ao-knee", "smoke").config_hash()


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.toml"
    p.write_text(text)
    return p


BASE = 'name = "t"\nkind = "sl"\n[loss]\nterms = ["mae", "ssim"]\n'


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        (BASE + "[train]\nstepz = 3\n", [], "unknown key 'stepz' (did you mean 'steps'?)"),
        (BASE + '[train]\nsteps = "many"\n', [], "[train] steps: expected integer"),
        (BASE + "[train]\nsteps = 0\n", [], "`steps >= 1` must hold, but got steps=0"),
        (BASE + "[baselines]\ngrid = [0.0, 1.5]\n", [], "`every λ in [0, 1]` must hold"),
        (BASE + '[train]\nprecision = "fp16"\n', [], 'expected one of "auto", "fp32", "bf16"'),
        (BASE + "[trian]\nsteps = 3\n", [], "unknown key 'trian' (did you mean 'train'?)"),
        (BASE, ["train.stepz=3"], "--set train.stepz: unknown key 'stepz' in [train] (did you mean 'steps'?)"),
        (BASE, ["train.steps"], "expected key=value"),
        (BASE + "[loss]\n", [], "Cannot declare"),  # duplicate table: malformed TOML
        ('name = "t"\nkind = "ao"\n[loss]\nterms = ["mae", "ssim"]\n', [], "weighs 3 terms"),
        (BASE + "[loss]\nscales = [1.0]\n", [], None),
        ('kind = "sl"\n', [], "missing required key 'name'"),
        (BASE + "[data]\nimage_size = 100\n", [], "image_size % 8 == 0"),
    ],
)
def test_bad_config_is_one_clear_error(tmp_path: Path, text: str, overrides: list[str], message: str | None) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_study(str(path), "smoke", overrides)
    msg = str(info.value)
    assert "\n" not in msg
    if message is None:  # duplicate [loss] table is malformed too
        assert "malformed TOML" in msg
    else:
        assert message in msg, msg
    if not msg.startswith("--set"):
        assert str(path) in msg


def test_unknown_study_suggests() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'ao-knee'"):
        load_study("ao-kne")


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="study file not found"):
        load_study("does/not/exist.toml")


def test_unknown_profile() -> None:
    with pytest.raises(ConfigError, match="unknown profile 'quik' \\(did you mean 'quick'\\?\\)"):
        load_study("ao-knee", "quik")


def test_groups_must_divide_batch() -> None:
    raw = {
        "name": "t",
        "kind": "sl",
        "loss": {"terms": ["mae", "ssim"]},
        "train": {"batch_size": 6},
        "hyper": {"groups": 4},
    }
    with pytest.raises(ConfigError, match="batch_size % groups == 0"):
        study_from_dict(raw)


def test_hypernetwork_sizes_have_one_table() -> None:
    """The schema's size names are the keys of the one S/M/L -> d table, which the hypernetwork uses."""
    import typing

    from hyperrecon.config import HYPER_SIZES, HyperConfig, HyperSize
    from hyperrecon.models import HyperUNet

    assert typing.get_args(HyperSize) == tuple(HYPER_SIZES) == HyperConfig().sizes
    assert HYPER_SIZES == {"S": 4, "M": 32, "L": 128}  # the paper's d (Wang et al., Table 1)
    for size, d in HYPER_SIZES.items():
        assert HyperUNet(n_lams=1, size=size, width=4).d == d
    with pytest.raises(ConfigError, match="sizes"):
        study_from_dict({"name": "x", "kind": "sl", "hyper": {"sizes": ["XL"]}})
