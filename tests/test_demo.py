"""`appliance demo`: the home `make run` opens, and the UI and CLI on it with the real model."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from appliance.cli import build_parser
from appliance.cli.ui import service_for
from appliance.config import load_home_config
from appliance.policy import load_policy
from appliance.tui import AppContext, ApplianceApp
from appliance.tui.chat import ChatScreen
from tests.conftest import TEST_SETTINGS, assert_one_line_error, run_cli
from tests.test_tui import SIZE, answer_of, answered, ask, sign_in, until


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    home = tmp_path_factory.mktemp("parent") / "demo"
    made = run_cli("demo", "--home", str(home), home=home.parent / "unused")
    assert made.returncode == 0, made.stderr
    passwords = dict(re.findall(r"^\s+\w+\s+(demo-\w+)\s+(\S+)", made.stdout, re.M))
    return home, passwords


def test_the_demo_home_is_complete_and_says_it_is_a_demo(demo) -> None:
    home, passwords = demo
    assert sorted(passwords) == ["demo-admin", "demo-officer", "demo-operator"]
    assert all(len(p) >= 12 for p in passwords.values())
    policy = load_policy(home / "policy.toml")
    assert policy.describe() == "defense-kr-demo v4"
    assert policy.language == "ko"
    assert policy.require_content
    assert not policy.require_airgap
    config = load_home_config(home)
    assert config.demo
    assert config.model == home / "models" / "gemma3-270m-q4_k_m.sealed"
    assert [p.stat().st_mode & 0o777 for p in config.identities] == [0o600]
    assert not list((home / "models").glob("*.gguf"))  # only the sealed model stays


def test_making_it_again_keeps_it(demo) -> None:
    home, _ = demo
    before = (home / "identity" / "users.db").read_bytes()
    again = run_cli("demo", "--home", str(home), home=home)
    assert again.returncode == 0
    assert "is ready" in again.stdout
    assert "demo-operator" not in again.stdout
    assert (home / "identity" / "users.db").read_bytes() == before


def test_a_directory_with_other_contents_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    result = run_cli("demo", "--home", str(tmp_path), home=tmp_path)
    assert_one_line_error(result, 2, "is not empty and is not a demo home")
    assert (tmp_path / "notes.txt").read_text() == "keep me"


@pytest.mark.model
def test_the_cli_asks_the_sealed_model_as_the_demo_operator(demo, tmp_path: Path) -> None:
    home, passwords = demo
    secret = tmp_path / "password"
    secret.write_text(passwords["demo-operator"] + "\n")
    secret.chmod(0o600)
    options = ["--user", "demo-operator", "--password-file", str(secret)]
    result = run_cli("ask", "Say hello.", "--max-tokens", "8", "--seed", "1", *options, home=home)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert "gemma3-270m-q4_k_m@" in result.stderr  # unsealed with the configured site key
    officer = tmp_path / "officer"
    officer.write_text(passwords["demo-officer"] + "\n")
    officer.chmod(0o600)
    verify = run_cli(
        "audit", "verify", "--json", "--user", "demo-officer", "--password-file", str(officer),
        home=home,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stderr
    assert json.loads(verify.stdout)["ok"] is True


@pytest.mark.model
def test_the_ui_on_the_demo_home_streams_a_real_answer_in_korean(demo, monkeypatch) -> None:
    home, passwords = demo
    monkeypatch.setenv("APPLIANCE_HOME", str(home))
    args = build_parser().parse_args(
        ["ui", "--threads", str(TEST_SETTINGS.threads), "--context", "1024"]
    )

    async def scenario(pilot) -> None:
        app = pilot.app
        assert "데모 환경" in str(app.screen.query_one("#demo").render())
        await sign_in(pilot, "demo-operator", passwords["demo-operator"])
        assert isinstance(app.screen, ChatScreen)
        assert [str(b.render()) for b in app.screen.query("Banner")] == ["공개 · UNCLASSIFIED"] * 2
        await ask(pilot, "What is the capital of France?")
        await until(pilot, lambda: answered(app), seconds=120)
        assert answer_of(app).strip()

    async def main(app: ApplianceApp) -> None:
        async with app.run_test(size=SIZE) as pilot:
            await scenario(pilot)

    with service_for(args) as path:  # none runs: the UI starts one in its own process
        context = AppContext(path, max_tokens=32)  # a short answer is enough to see it
        asyncio.run(main(ApplianceApp(context)))
