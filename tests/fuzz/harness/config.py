"""The home's config.toml."""

from __future__ import annotations

from appliance.config import load_home_config
from appliance.errors import ConfigError
from tests.fuzz.harness.common import refusals, scratch


def fuzz_config(data: bytes) -> None:
    home = scratch() / "home"
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_bytes(data)
    with refusals(ConfigError):
        config = load_home_config(home)
        assert config.language in (None, "en", "ko")
        assert all(isinstance(value, str) and value for value in config.keymap.values())
