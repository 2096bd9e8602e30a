"""The terminal UI through Textual's Pilot: sign-in, streamed answers, cancel, refusals.

A scripted engine stands in for the model where the test needs known output;
one test streams a real answer from the embedded model.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Markdown, Static

from appliance.audit import AuditLog
from appliance.engine import GenerationStats
from appliance.identity import Users
from appliance.policy import load_policy, shipped_policy
from appliance.tui import AppContext, ApplianceApp
from appliance.tui.audit import AuditScreen
from appliance.tui.chat import ChatScreen
from appliance.tui.login import LoginScreen

SIZE = (80, 24)


class ScriptedGeneration:
    """What Engine.chat returns, with scripted pieces; cancel() stops it."""

    def __init__(self, pieces: list[str], delay: float) -> None:
        self.pieces = pieces
        self.delay = delay
        self.stats = GenerationStats(prompt_tokens=3)
        self.cancelled = threading.Event()

    def __iter__(self):
        return self

    def __next__(self) -> str:
        if self.cancelled.is_set() or not self.pieces:
            self.stats.finish_reason = "cancelled" if self.cancelled.is_set() else "stop"
            raise StopIteration
        time.sleep(self.delay)
        self.stats.completion_tokens += 1
        return self.pieces.pop(0)

    def cancel(self) -> None:
        self.cancelled.set()

    def close(self) -> None:
        pass


class ScriptedEngine:
    def __init__(self, pieces: list[str], delay: float = 0.0) -> None:
        self.pieces = pieces
        self.delay = delay
        self.prompts: list[str] = []

    def chat(self, messages, params) -> ScriptedGeneration:
        self.prompts.append(messages[-1].content)
        return ScriptedGeneration(list(self.pieces), self.delay)


def make_app(home: Path, engine, policy_name: str = "default") -> ApplianceApp:
    policy = load_policy(shipped_policy(policy_name))
    log = AuditLog(home / "audit")
    context = AppContext(home, policy, log, engine, "scripted", "air-gapped", "tester")
    return ApplianceApp(context)


def run(app: ApplianceApp, scenario: Callable[..., Awaitable[None]]) -> None:
    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await scenario(pilot)

    asyncio.run(main())
    app.context.log.close()


async def until(pilot, condition: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the UI did not get there"
        await pilot.pause(0.05)


async def ask(pilot, text: str) -> None:
    prompt = pilot.app.screen.query_one("#prompt", Input)
    prompt.value = text
    await pilot.press("enter")


def answer_of(app: ApplianceApp) -> str:
    return app.screen.query(Markdown).last().source


@pytest.fixture
def accounts(tmp_path: Path) -> Path:
    with Users(tmp_path) as users:
        users.add("kim", "operator", "restricted", "operator-pass-1", 10)
    return tmp_path


async def sign_in(pilot, user: str, password: str) -> None:
    screen = pilot.app.screen
    screen.query_one("#user", Input).value = user
    screen.query_one("#password", Input).value = password
    screen.query_one("#password", Input).focus()
    await pilot.press("enter")


def test_sign_in_then_a_streamed_answer_under_banners(accounts: Path) -> None:
    engine = ScriptedEngine(["The capital ", "of France ", "is **Paris**."])
    app = make_app(accounts, engine)

    async def scenario(pilot) -> None:
        assert isinstance(app.screen, LoginScreen)
        await sign_in(pilot, "kim", "operator-pass-1")
        assert isinstance(app.screen, ChatScreen)
        await ask(pilot, "What is the capital of France?")
        await until(pilot, lambda: len(app.screen.history) == 2)
        assert answer_of(app) == "The capital of France is **Paris**."
        banners = [str(b.render()) for b in app.screen.query("Banner")]
        assert banners == ["공개 · UNCLASSIFIED"] * 2
        status = str(app.screen.query_one("#status", Static).render())
        assert status.startswith("kim (operator) · default v1 · air-gapped")

    run(app, scenario)
    assert engine.prompts == ["What is the capital of France?"]


def test_a_wrong_password_and_then_the_lockout_are_explained(accounts: Path) -> None:
    app = make_app(accounts, ScriptedEngine([]))

    async def scenario(pilot) -> None:
        message = app.screen.query_one("#message", Static)
        await sign_in(pilot, "kim", "wrong")
        assert str(message.render()) == "wrong user name or password"
        for _ in range(4):
            await sign_in(pilot, "kim", "wrong")
        assert "locked for 15 minutes" in str(message.render())
        await sign_in(pilot, "kim", "operator-pass-1")
        assert "is locked until" in str(message.render())
        assert isinstance(app.screen, LoginScreen)

    run(app, scenario)


def test_escape_cancels_and_puts_the_prompt_back(accounts: Path) -> None:
    engine = ScriptedEngine(["word "] * 400, delay=0.02)
    app = make_app(accounts, engine)

    async def scenario(pilot) -> None:
        await sign_in(pilot, "kim", "operator-pass-1")
        await ask(pilot, "Tell me a long story")
        await until(pilot, lambda: "word" in answer_of(app))
        await pilot.press("escape")
        await until(pilot, lambda: app.screen._turn is None)
        assert app.screen.query_one("#prompt", Input).value == "Tell me a long story"
        assert app.screen.history == []
        assert answer_of(app).count("word") < 400

    run(app, scenario)


def test_a_blocked_prompt_shows_the_reason(accounts: Path) -> None:
    (accounts / "policy.toml").write_bytes(shipped_policy("defense-kr").read_bytes())
    engine = ScriptedEngine(["never shown"])
    app = make_app(accounts, engine, "defense-kr")

    async def scenario(pilot) -> None:
        await sign_in(pilot, "kim", "operator-pass-1")
        await ask(pilot, "주민번호 900101-1234568 확인")
        await until(pilot, lambda: bool(str(app.screen.query_one("#notice").render())))
        notice = str(app.screen.query_one("#notice", Static).render())
        assert "contains a resident registration number" in notice
        assert app.screen.query_one("#prompt", Input).value == "주민번호 900101-1234568 확인"

    run(app, scenario)
    assert engine.prompts == []  # the model never saw it


def test_development_mode_is_labelled(tmp_path: Path) -> None:
    app = make_app(tmp_path, ScriptedEngine(["ok"]))

    async def scenario(pilot) -> None:
        assert "DEVELOPMENT MODE" in str(app.screen.query_one("#message", Static).render())
        await pilot.press("enter")
        assert isinstance(app.screen, ChatScreen)
        assert "(DEVELOPMENT MODE)" in str(app.screen.query_one("#status", Static).render())

    run(app, scenario)


@pytest.mark.model
def test_a_real_answer_streams_from_the_embedded_model(engine, tmp_path: Path) -> None:
    app = make_app(tmp_path, engine)

    async def scenario(pilot) -> None:
        await pilot.press("enter")  # development mode
        await ask(pilot, "What is the capital of France?")
        await until(pilot, lambda: len(app.screen.history) == 2, seconds=120)
        assert answer_of(app).strip()
        assert app.screen.history[1].content == answer_of(app)

    run(app, scenario)
    with AuditLog(tmp_path / "audit") as log:
        answers = [json.loads(row["leaf"]) for row in log.events(action="answer")]
    assert answers[-1]["details"]["completion_tokens"] >= 1


def test_an_idle_session_returns_to_sign_in(accounts: Path) -> None:
    app = make_app(accounts, ScriptedEngine(["ok"]))

    async def scenario(pilot) -> None:
        await sign_in(pilot, "kim", "operator-pass-1")
        chat = app.screen
        assert isinstance(chat, ChatScreen)
        chat.session.last_active -= chat.session.policy.idle_timeout_minutes * 60 + 1
        chat._check_idle()  # what the screen's timer runs
        await pilot.pause()
        assert isinstance(app.screen, LoginScreen)

    run(app, scenario)
    with AuditLog(accounts / "audit") as log:
        logouts = [json.loads(row["leaf"]) for row in log.events(action="logout")]
    assert logouts[-1]["details"] == {"reason": "idle"}
    assert logouts[-1]["user"] == "kim"


def test_an_officer_opens_the_audit_log_and_verifies_it(accounts: Path) -> None:
    with Users(accounts) as users:
        users.add("lee", "officer", "secret", "officer-pass-1", 10)
    app = make_app(accounts, ScriptedEngine(["ok"]))

    async def scenario(pilot) -> None:
        await sign_in(pilot, "lee", "officer-pass-1")
        assert isinstance(app.screen, AuditScreen)
        table = app.screen.query_one(DataTable)
        actions = [table.get_row_at(i)[4] for i in range(table.row_count)]
        assert actions[:2] == ["log_created", "login"]
        await pilot.press("f2")
        result = str(app.screen.query_one("#result", Static).render())
        assert result.startswith("Verified ")
        screen = app.screen
        screen.query_one("#filter", Input).value = "login"
        screen.query_one("#filter", Input).focus()
        await pilot.press("enter")
        assert {table.get_row_at(i)[4] for i in range(table.row_count)} == {"login"}

    run(app, scenario)


def test_an_operator_cannot_open_the_audit_log(accounts: Path) -> None:
    app = make_app(accounts, ScriptedEngine(["ok"]))

    async def scenario(pilot) -> None:
        await sign_in(pilot, "kim", "operator-pass-1")
        await pilot.press("f5")
        assert isinstance(app.screen, ChatScreen)
        notice = str(app.screen.query_one("#notice", Static).render())
        assert notice == "kim (operator) may not open the audit log"

    run(app, scenario)
    with AuditLog(accounts / "audit") as log:
        refused = [json.loads(row["leaf"]) for row in log.events(action="policy_block")]
    assert refused[-1]["details"] == {"permission": "audit.read", "screen": "audit"}


def test_help_lists_the_keys_of_the_screen_and_status_shows_the_checks(accounts: Path) -> None:
    app = make_app(accounts, ScriptedEngine(["ok"]))

    async def scenario(pilot) -> None:
        await sign_in(pilot, "kim", "operator-pass-1")
        await pilot.press("f1")
        body = str(app.screen.query_one("#body", Static).render())
        assert "escape  Cancel answer" in body
        assert "f5  Audit log" in body
        await pilot.press("escape")
        assert isinstance(app.screen, ChatScreen)
        await pilot.press("f4")
        body = str(app.screen.query_one("#body", Static).render())
        assert "policy    default v1" in body
        assert "audit     verified" in body
        await pilot.press("escape")
        assert isinstance(app.screen, ChatScreen)

    run(app, scenario)


def test_up_and_down_recall_earlier_prompts(accounts: Path) -> None:
    app = make_app(accounts, ScriptedEngine(["ok"]))

    async def scenario(pilot) -> None:
        await sign_in(pilot, "kim", "operator-pass-1")
        for turns, text in enumerate(("first question", "second question"), start=1):
            await ask(pilot, text)
            await until(pilot, lambda turns=turns: len(app.screen.history) == 2 * turns)
        field = app.screen.query_one("#prompt", Input)
        await pilot.press("up")
        assert field.value == "second question"
        await pilot.press("up", "up")
        assert field.value == "first question"  # the oldest stays
        await pilot.press("down", "down")
        assert field.value == ""

    run(app, scenario)
