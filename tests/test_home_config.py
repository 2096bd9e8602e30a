"""The home's config.toml: strict, relative to the home, and absent means defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import HomeConfig, load_home_config
from appliance.errors import ConfigError
from tests.conftest import assert_one_line_error, run_cli


def test_no_file_means_the_defaults(tmp_path: Path) -> None:
    assert load_home_config(tmp_path) == HomeConfig()


def test_paths_are_relative_to_the_home(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        '[model]\npath = "models/m.sealed"\nidentity = "keys/site.key"\n'
        '[ui]\nlanguage = "ko"\ndemo = true\n[keys]\ncancel = "f9"\n'
    )
    config = load_home_config(tmp_path)
    assert config.model == tmp_path / "models" / "m.sealed"
    assert config.identities == (tmp_path / "keys" / "site.key",)
    assert (config.language, config.demo, config.keymap) == ("ko", True, {"cancel": "f9"})


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[model]\nfile = 'x'\n", "model.file: unknown key"),
        ("[network]\nallow = true\n", "network: unknown section"),
        ("[ui]\nlanguage = 'fr'\n", "ui.language: must be one of en, ko"),
        ("[ui]\ndemo = 'yes'\n", "ui.demo: must be true or false"),
        ("[model]\nidentity = [1]\n", "model.identity: must be a path or a list of paths"),
        ("[keys]\ncancel = ''\n", "keys.cancel: must be keys"),
        ("[model\n", "cannot be read"),
    ],
)
def test_mistakes_name_the_key(tmp_path: Path, text: str, problem: str) -> None:
    (tmp_path / "config.toml").write_text(text)
    with pytest.raises(ConfigError, match=problem):
        load_home_config(tmp_path)


def test_the_cli_reports_a_bad_config_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[model]\nfile = 'x'\n")
    result = run_cli("ask", "hello", home=tmp_path)
    assert_one_line_error(result, 7, "config.toml: model.file: unknown key")
