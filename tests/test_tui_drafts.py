"""Work products in the UI (Textual's real Pilot, a real embedded service): a task
preset picked with F3 reaches the engine as the system prompt; F9 saves the
conversation as a marked draft in the export folder; Enter while an answer is
written says so."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from textual.widgets import Input, OptionList, Static

from appliance.audit import AuditLog
from appliance.identity import Users
from appliance.policy import load_policy
from appliance.tui.chat import ChatScreen
from appliance.tui.drafts import SaveDraftForm, TaskPicker
from tests.test_drafts import ANSWER, RecordingEngine
from tests.test_tui import (  # noqa: F401 (close_services: a fixture)
    ScriptedEngine,
    answered,
    ask,
    begin_log,
    close_services,
    make_app,
    run,
    sign_in,
    started,
    until,
)


@pytest.fixture
def accounts(tmp_path: Path) -> Path:
    begin_log(tmp_path)
    with Users(tmp_path) as users:
        users.add("kim", "operator", "restricted", "operator-pass-1", 10, must_change=False)
    return tmp_path


def notice(app) -> str:
    return str(app.screen.query_one("#notice", Static).render())


def test_a_preset_and_a_saved_draft(accounts: Path) -> None:
    engine = RecordingEngine([ANSWER])
    app = make_app(accounts, engine, "defense-kr")
    letter = load_policy(accounts / "policy.toml").task("letter")

    async def scenario(pilot) -> None:
        await sign_in(pilot, "kim", "operator-pass-1")
        await until(pilot, lambda: isinstance(app.screen, ChatScreen))
        await pilot.press("f9")  # nothing to save yet
        assert notice(app) == "저장할 답변이 아직 없습니다."
        await pilot.press("f3")
        await until(pilot, lambda: isinstance(app.screen, TaskPicker))
        options = app.screen.query_one(OptionList)
        ids = [options.get_option_at_index(i).id for i in range(options.option_count)]
        options.highlighted = ids.index("letter")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ChatScreen))
        assert "공문 초안" in str(app.screen.query_one("#status", Static).render())
        await ask(pilot, "대외비 훈련 일정 변경 공문")
        await until(pilot, lambda: answered(app))
        assert engine.systems == [letter.system]  # what the engine was given
        await pilot.press("f9")
        await until(pilot, lambda: isinstance(app.screen, SaveDraftForm))
        app.screen.query_one("#name", Input).value = "훈련일정"
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ChatScreen))
        assert notice(app).startswith("초안 저장됨:")

    run(app, scenario)
    saved = accounts / "exports" / "훈련일정.hwpx"
    with zipfile.ZipFile(saved) as package:
        xml = package.read("Contents/section0.xml").decode("utf-8")
    assert "대외비" in xml
    assert "제1대대" in xml
    with AuditLog(accounts / "audit") as log:
        (event,) = [json.loads(row["leaf"]) for row in log.events(action="draft")]
        (asked,) = [json.loads(row["leaf"]) for row in log.events(action="ask")]
    assert (event["user"], event["label"], event["details"]["task"]) == (
        "kim",
        "restricted",
        "letter",
    )
    assert asked["details"]["task"] == "letter"
    assert len(event["details"]["conversation"]) == 32  # the saved conversation it came from


def test_enter_while_an_answer_is_written_says_so(accounts: Path) -> None:
    app = make_app(accounts, ScriptedEngine(["one ", "two ", "three "] * 20, delay=0.05))

    async def scenario(pilot) -> None:
        await sign_in(pilot, "kim", "operator-pass-1")
        await until(pilot, lambda: isinstance(app.screen, ChatScreen))
        await ask(pilot, "Tell me a long story")
        await until(pilot, lambda: started(app))
        await ask(pilot, "and another")
        await pilot.pause()
        assert "still being written" in notice(app)
        assert "Esc" in notice(app)
        await until(pilot, lambda: answered(app))

    run(app, scenario)
