"""A study names its λ-conditioned model (``[hyper] model`` / ``model_params``): built, checked, run end to end."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from hyperrecon.cli import app
from hyperrecon.config import load_study
from hyperrecon.errors import ConfigError, UnknownNameError
from hyperrecon.models import MODELS, FiLMUNet, HyperUNet, count_parameters
from hyperrecon.resolve import build_recon_model, resolve

runner = CliRunner()
FILM = ['hyper.model="film-unet"', 'hyper.sizes=["S"]']


def test_default_is_the_hyperunet_of_each_size() -> None:
    study = load_study("sl-knee-sr", "smoke", ['hyper.sizes=["S", "M"]'])
    assert study.hyper.model == "hyperunet" and study.hyper.model_params == {}
    small, medium = (build_recon_model("hyperunet", study, size) for size in ("S", "M"))
    assert type(small) is HyperUNet and type(medium) is HyperUNet
    reference = HyperUNet(n_lams=1, size="S", width=study.model.width, residual=study.model.residual)
    assert count_parameters(small) == count_parameters(reference) < count_parameters(medium)


def test_a_named_model_and_its_params_are_built() -> None:
    study = load_study("sl-knee-sr", "smoke", ["hyper.model_params={hnet_width=3}", 'hyper.sizes=["S"]'])
    model = build_recon_model("hyperunet", study, "S")
    reference = HyperUNet(n_lams=1, hnet_width=3, width=study.model.width, residual=study.model.residual)
    assert count_parameters(model) == count_parameters(reference)
    film = build_recon_model("hyperunet", load_study("sl-knee-sr", "smoke", FILM), "S")
    assert type(film) is FiLMUNet and film.n_lams == 1


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        (['hyper.model="unet"'], ConfigError, r"\[hyper\] model: model 'unet' does not take λ"),
        (['hyper.model="hyperunett"'], UnknownNameError, r"\[hyper\] model: unknown model 'hyperunett' \(did you"),
        (['hyper.model="film-unet"', 'hyper.sizes=["S", "M"]'], ConfigError, r"\[hyper\] sizes: model 'film-unet' has"),
        (
            ["hyper.model_params={foo=1}"],
            ConfigError,
            r"\[hyper\] model_params: model 'hyperunet' has no parameter 'foo'",
        ),
        (
            ["hyper.model_params={width=8}"],
            ConfigError,
            r"\[hyper\] model_params: model 'hyperunet': 'width' is set by",
        ),
        (
            ['hyper.model_params={hnet_width="x"}'],
            ConfigError,
            r"hnet_width: expected int \| None, but got hnet_width='x'",
        ),
        (["hyper.model=3"], ConfigError, r"\[hyper\] model"),
    ],
)
def test_bad_model_settings_are_one_line_errors(overrides: list[str], error: type, match: str) -> None:
    with pytest.raises(error, match=match) as info:
        resolve(load_study("sl-knee-sr", "smoke", overrides))
    assert "sl-knee-sr.toml" in str(info.value) and "\n" not in str(info.value)


def test_cli_validate_names_file_key_and_value() -> None:
    result = runner.invoke(
        app, ["validate", "--study", "sl-knee-sr", "--profile", "smoke", "--set", 'hyper.model="unet"']
    )
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "[hyper] model" in lines[0]
    assert "Traceback" not in result.output


def test_a_plugin_model_is_reached_by_name(tmp_path: Path) -> None:
    (tmp_path / "my_hyper_models.py").write_text(
        "from hyperrecon.models import MODELS, HyperUNet\n"
        "@MODELS.register('wide-hyper', description='a HyperUNet with a wider embedding', smoke_params={'n_lams': 1})\n"
        "class WideHyper(HyperUNet):\n"
        "    def __init__(self, n_lams=1, size='S', width=32, residual=False, extra=2):\n"
        "        super().__init__(n_lams=n_lams, size=size, width=width, residual=residual)\n"
        "        self.extra = extra\n"
    )
    study_file = tmp_path / "plug.toml"
    text = Path("studies/sl-knee-sr.toml").read_text().replace("[hyper]", "[hyper]\nmodel = 'wide-hyper'\n", 1)
    study_file.write_text('plugins = ["my_hyper_models"]\n' + text)
    try:
        study = load_study(str(study_file), "smoke", ["hyper.model_params={extra=5}"])
        resolve(study)  # imports the plugin, checks the name, params and sizes
        model = build_recon_model("hyperunet", study, "S")
        assert type(model).__name__ == "WideHyper" and model.extra == 5 and model.registry_name == "wide-hyper"
    finally:
        sys.modules.pop("my_hyper_models", None)
        MODELS.unregister("wide-hyper")


@pytest.mark.slow
def test_smoke_run_trains_the_named_model(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["run", "--study", "sl-knee-sr", "--profile", "smoke", "--out", str(out), "--no-report"]
    result = runner.invoke(app, [*args, *(a for o in FILM for a in ("--set", o))])
    assert result.exit_code == 0, result.output
    study = load_study("sl-knee-sr", "smoke", FILM)
    film_params = count_parameters(build_recon_model("film-unet", study))
    hyper_params = count_parameters(HyperUNet(n_lams=1, size="S", width=study.model.width))
    costs = pd.read_csv(out / "costs.csv")
    hyper = costs[costs.model.str.startswith("hyper-")]
    assert len(hyper) and set(hyper.n_params) == {film_params} and film_params != hyper_params
