"""The plugin registry: decorator, did-you-mean, parameter checks, and loading plugin modules."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hyperrecon.errors import ConfigError, UnknownNameError
from hyperrecon.plugins import load_plugins
from hyperrecon.registry import Registry


def _reg() -> Registry:
    reg: Registry = Registry("widget")

    @reg.register("round-widget", description="a round one")
    class Round:
        def __init__(self, radius: float = 1.0, *, colour: str = "red") -> None:
            self.radius, self.colour = radius, colour

    @reg.register("square-widget")
    def square(side: float):
        """A square one.

        More text that is not the first line."""
        return ("square", side)

    return reg


def test_names_describe_build() -> None:
    reg = _reg()
    assert reg.names() == ["round-widget", "square-widget"]
    assert reg.describe("round-widget") == "a round one"
    assert reg.describe("square-widget") == "A square one."
    w = reg.build("round-widget", {"colour": "blue"}, radius=2.0)
    assert (w.radius, w.colour) == (2.0, "blue")
    assert reg.build("square-widget", {"side": 3}) == ("square", 3)


def test_unknown_name_lists_valid_names_and_suggests() -> None:
    with pytest.raises(UnknownNameError) as info:
        _reg().get("round-widgte", where="s.toml [x] y")
    msg = str(info.value)
    assert msg.startswith("s.toml [x] y: unknown widget 'round-widgte' (did you mean 'round-widget'?)")
    assert "valid names: round-widget, square-widget" in msg
    assert info.value.exit_code == 2


def test_unknown_parameter_is_a_config_error() -> None:
    with pytest.raises(
        ConfigError, match="widget 'round-widget' has no parameter 'colur' \\(did you mean 'colour'\\?\\)"
    ):
        _reg().build("round-widget", {"colur": "blue"})


def test_missing_required_parameter_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot build widget 'square-widget'"):
        _reg().build("square-widget", {})


def test_plugin_module_registers_names(tmp_path: Path) -> None:
    (tmp_path / "my_widgets_plugin.py").write_text(
        "from hyperrecon.strategies import STRATEGIES\n"
        "@STRATEGIES.register('always-half')\n"
        "def always_half(n_lams, budget, seed):\n"
        "    import optuna\n"
        "    return optuna.samplers.RandomSampler(seed=seed)\n"
    )
    try:
        assert load_plugins(["my_widgets_plugin"], search_path=str(tmp_path)) == ["my_widgets_plugin"]
        from hyperrecon.strategies import STRATEGIES

        assert "always-half" in STRATEGIES.names()
    finally:
        sys.modules.pop("my_widgets_plugin", None)
        from hyperrecon.strategies import STRATEGIES

        STRATEGIES._items.pop("always-half", None)


def test_missing_plugin_module() -> None:
    with pytest.raises(ConfigError, match="cannot import plugin module 'no_such_module_xyz'"):
        load_plugins(["no_such_module_xyz"], source="s.toml")


def test_broken_plugin_module(tmp_path: Path) -> None:
    (tmp_path / "broken_plugin_xyz.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ConfigError, match="failed to import: RuntimeError: boom"):
        load_plugins(["broken_plugin_xyz"], search_path=str(tmp_path))


def test_entry_keeps_description_and_smoke_params_not_on_the_object() -> None:
    reg: Registry = Registry("widget")

    @reg.register("tiny", description="a tiny one", smoke_params={"side": 2})
    def tiny(side: float = 1.0):
        """Docstring line that the description overrides."""
        return side

    entry = reg.entry("tiny")
    assert (entry.name, entry.obj, entry.description, dict(entry.smoke_params)) == (
        "tiny",
        tiny,
        "a tiny one",
        {"side": 2},
    )
    params = reg.smoke_params("tiny")
    params["side"] = 99  # a copy: the registry keeps its own
    assert reg.smoke_params("tiny") == {"side": 2} and reg.build("tiny", reg.smoke_params("tiny")) == 2
    assert not hasattr(tiny, "smoke_params") and not hasattr(tiny, "description") and tiny.registry_name == "tiny"
    reg.unregister("tiny")
    assert "tiny" not in reg and reg.names() == []
    with pytest.raises(UnknownNameError, match="unknown widget 'tiny'"):
        reg.entry("tiny")


def test_bad_smoke_params_fail_at_registration_and_keep_the_old_entry() -> None:
    reg = _reg()
    with pytest.raises(ConfigError, match="widget 'round-widget' has no parameter 'radiuss'"):

        @reg.register("round-widget", smoke_params={"radiuss": 2.0})
        class Other:
            def __init__(self, radius: float = 1.0) -> None:
                self.radius = radius

    assert reg.describe("round-widget") == "a round one"  # the first registration is still there
