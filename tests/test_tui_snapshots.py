"""SVG snapshots of the UI at 80x24 (pytest-textual-snapshot; update with --snapshot-update)."""

from __future__ import annotations

from pathlib import Path

from appliance.identity import Users
from appliance.tui import ApplianceApp
from tests.test_tui import (
    ScriptedEngine,
    answered,
    begin_log,
    close_services,
    sign_in,
    until,
)
from tests.test_tui import make_app as make_any_app

__all__ = ["close_services"]  # the fixture that stops each app's service


def make_app(home: Path, engine: ScriptedEngine) -> ApplianceApp:
    """The app, drawn as on an air-gapped host whatever this one is."""
    app = make_any_app(home, engine)
    app.hello["airgapped"] = True
    return app


def _home(tmp_path: Path) -> Path:
    begin_log(tmp_path)
    with Users(tmp_path) as users:
        users.add("kim", "operator", "restricted", "operator-pass-1", 10, must_change=False)
    return tmp_path


def test_login_screen(snap_compare, tmp_path: Path) -> None:
    assert snap_compare(make_app(_home(tmp_path), ScriptedEngine([])), terminal_size=(80, 24))


def test_chat_under_banners(snap_compare, tmp_path: Path) -> None:
    app = make_app(_home(tmp_path), ScriptedEngine(["Paris is the **capital** of France."]))

    async def ask(pilot) -> None:
        await sign_in(pilot, "kim", "operator-pass-1")
        prompt = pilot.app.screen.query_one("#prompt")
        prompt.cursor_blink = False  # a blinking cursor would make the picture depend on time
        prompt.text = "What is the capital of France?"
        await pilot.press("enter")
        await until(pilot, lambda: answered(pilot.app))

    assert snap_compare(app, terminal_size=(80, 24), run_before=ask)


def test_audit_screen(snap_compare, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("appliance.audit.store.now_us", lambda: 1_800_000_000_000_000)
    home = _home(tmp_path)
    with Users(home) as users:
        users.add("lee", "officer", "secret", "officer-pass-1", 10, must_change=False)
    app = make_app(home, ScriptedEngine([]))

    async def verify(pilot) -> None:
        await sign_in(pilot, "lee", "officer-pass-1")
        await pilot.press("f2")

    assert snap_compare(app, terminal_size=(80, 24), run_before=verify)
