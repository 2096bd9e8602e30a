"""The terminal UI through Textual's Pilot: sign-in, streamed answers, cancel, refusals.

A scripted engine stands in for the model where the test needs known output;
one test streams a real answer from the embedded model.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Markdown, OptionList, Select, Static

from appliance.audit import Actor, AuditLog, audit_dir
from appliance.engine import GenerationStats
from appliance.homestate import record_state
from appliance.identity import Users, has_users
from appliance.policy import load_policy, shipped_policy
from appliance.policy.airgap import attest
from appliance.service import embedded_service
from appliance.tui import AppContext, ApplianceApp
from appliance.tui.audit import AuditScreen
from appliance.tui.chat import ChatScreen
from appliance.tui.login import LoginScreen
from appliance.tui.prompt import PromptArea
from appliance.tui.users import AccountForm, UsersScreen

SIZE = (80, 24)
_SERVICES: dict[int, contextlib.ExitStack] = {}  # each app's service, by id(app)


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
    slots = 1
    adapters: dict[str, str] = {}  # noqa: RUF012 - read only

    def __init__(self, pieces: list[str], delay: float = 0.0) -> None:
        self.pieces = pieces
        self.delay = delay
        self.prompts: list[str] = []
        self.histories: list[list[str]] = []  # what the model saw, turn by turn

    def chat(self, messages, params, *, adapter=None) -> ScriptedGeneration:
        self.prompts.append(messages[-1].content)
        self.histories.append([m.content for m in messages if m.role != "system"])
        return ScriptedGeneration(list(self.pieces), self.delay)


def make_app(
    home: Path,
    engine,
    policy_name: str = "default",
    *,
    idle_seconds: float | None = None,
    **options,
) -> ApplianceApp:
    """The UI as a client of the service on `home`, started in this process as `appliance
    ui` does where none runs; "defense-kr" is served as if the host were air-gapped (its
    requirement is lifted: these tests run on a networked workstation)."""
    text = shipped_policy(policy_name).read_text(encoding="utf-8")
    (home / "policy.toml").write_text(
        text.replace("require_airgap = true", "require_airgap = false"), encoding="utf-8"
    )
    if has_users(home):  # as `appliance setup` and `users add` leave it
        signed(home)
    policy = load_policy(home / "policy.toml")
    if idle_seconds is not None:  # a policy file says minutes, one at least
        policy = dataclasses.replace(policy, idle_timeout_minutes=idle_seconds / 60)
    stack = contextlib.ExitStack()
    log = stack.enter_context(AuditLog(home / "audit"))
    path = stack.enter_context(embedded_service(home, policy, log, engine, "scripted"))
    app = ApplianceApp(AppContext(path, exports=home / "exports", **options))
    _SERVICES[id(app)] = stack  # closed by run(), or after the test
    return app


@pytest.fixture(autouse=True)
def close_services() -> Iterator[None]:
    """Stop the services of apps a test made but did not run() (snapshots run their own)."""
    yield
    while _SERVICES:
        _SERVICES.popitem()[1].close()


def run(app: ApplianceApp, scenario: Callable[..., Awaitable[None]]) -> None:
    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await scenario(pilot)

    try:
        asyncio.run(main())
    finally:
        _SERVICES.pop(id(app)).close()


async def until(pilot, condition: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the UI did not get there"
        await pilot.pause(0.05)


def started(app: ApplianceApp) -> bool:
    """The service took the question up (it is being answered)."""
    answer = getattr(app.screen, "_answer_stream", None)
    return answer is not None and answer.started


def outcomes(home: Path) -> list[str]:
    with AuditLog(home / "audit") as log:
        return [json.loads(row["leaf"])["outcome"] for row in log.events(action="answer")]


async def ask(pilot, text: str) -> None:
    prompt = pilot.app.screen.query_one("#prompt", PromptArea)
    prompt.text = text
    prompt.focus()
    await pilot.press("enter")


def answered(app: ApplianceApp, turns: int = 1) -> bool:
    """`turns` exchanges in the conversation, and the screen done with the last one."""
    screen = app.screen
    return isinstance(screen, ChatScreen) and screen.turns == turns and not screen.busy


def answer_of(app: ApplianceApp) -> str:
    return app.screen.query(Markdown).last().source


def begin_log(home: Path) -> Path:
    """Begin the home's audit log before any account is made, as `appliance setup` does (a
    new log is begun only in a home without accounts); return the home."""
    AuditLog(audit_dir(home)).close()
    return home


@pytest.fixture
def accounts(tmp_path: Path) -> Path:
    begin_log(tmp_path)
    with Users(tmp_path) as users:
        users.add("kim", "operator", "restricted", "operator-pass-1", 10, must_change=False)
    return tmp_path


def signed(home: Path) -> Path:
    """Sign the home's state after accounts were made behind the appliance's back, as the
    commands that make them do; return the home."""
    with AuditLog(audit_dir(home)) as log:
        record_state(home, log, Actor("setup", "admin"), "user_add")
    return home


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
        await until(pilot, lambda: answered(app))
        assert answer_of(app) == "The capital of France is **Paris**."
        banners = [str(b.render()) for b in app.screen.query("Banner")]
        assert banners == ["공개 · UNCLASSIFIED"] * 2
        status = str(app.screen.query_one("#status", Static).render())
        network = "air-gapped" if attest().airgapped else "NETWORK PRESENT"
        assert status.startswith(f"kim (operator) · default v4 · {network}")

    run(app, scenario)
    assert engine.prompts == ["What is the capital of France?"]


def test_a_wrong_password_and_then_the_wait_are_explained(accounts: Path) -> None:
    app = make_app(accounts, ScriptedEngine([]))

    async def scenario(pilot) -> None:
        message = app.screen.query_one("#message", Static)
        await sign_in(pilot, "kim", "wrong")
        assert str(message.render()) == "Sign-in failed: wrong user name or password"
        for _ in range(4):
            await sign_in(pilot, "kim", "wrong")
        assert "the next attempt with this name must wait until" in str(message.render())
        for _ in range(10):  # each failure doubles the wait: one soon meets it
            await sign_in(pilot, "kim", "wrong")
            if "too many wrong passwords for this user name" in str(message.render()):
                break
        assert "try again after" in str(message.render())
        assert isinstance(app.screen, LoginScreen)

    run(app, scenario)


def test_escape_cancels_and_puts_the_prompt_back(accounts: Path) -> None:
    engine = ScriptedEngine(["word "] * 400, delay=0.02)
    app = make_app(accounts, engine)

    async def scenario(pilot) -> None:
        await sign_in(pilot, "kim", "operator-pass-1")
        await ask(pilot, "Tell me a long story")
        await until(pilot, lambda: started(app))
        await pilot.press("escape")
        await until(pilot, lambda: not app.screen.busy)
        assert app.screen.query_one("#prompt", PromptArea).text == "Tell me a long story"
        assert app.screen.turns == 0

    run(app, scenario)
    assert outcomes(accounts) == ["cancelled"]


def test_a_blocked_prompt_shows_the_reason(accounts: Path) -> None:
    engine = ScriptedEngine(["never shown"])
    app = make_app(accounts, engine, "defense-kr")

    async def scenario(pilot) -> None:
        await sign_in(pilot, "kim", "operator-pass-1")
        await ask(pilot, "주민번호 900101-1234568 확인")
        await until(pilot, lambda: bool(str(app.screen.query_one("#notice").render())))
        notice = str(app.screen.query_one("#notice", Static).render())
        assert "주민등록번호" in notice  # the Korean UI says why in Korean
        assert app.screen.query_one("#prompt", PromptArea).text == "주민번호 900101-1234568 확인"

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
    app = make_app(tmp_path, engine, max_tokens=32)

    async def scenario(pilot) -> None:
        await pilot.press("enter")  # development mode
        await ask(pilot, "What is the capital of France?")
        await until(pilot, lambda: answered(app), seconds=120)
        assert answer_of(app).strip()

    run(app, scenario)
    with AuditLog(tmp_path / "audit") as log:
        answers = [json.loads(row["leaf"]) for row in log.events(action="answer")]
    assert 1 <= answers[-1]["details"]["completion_tokens"] <= 32


def test_a_session_whose_account_changed_returns_to_sign_in(accounts: Path) -> None:
    app = make_app(accounts, ScriptedEngine(["ok"]))

    async def scenario(pilot) -> None:
        await sign_in(pilot, "kim", "operator-pass-1")
        assert isinstance(app.screen, ChatScreen)
        with Users(accounts) as users:  # an admin locks kim meanwhile
            users.lock("kim")
        app.check_session()  # what the app's timer runs, whatever the screen
        await until(pilot, lambda: isinstance(app.screen, LoginScreen))
        message = str(app.screen.query_one("#message", Static).render())
        assert message == app.words("login.changed")

    run(app, scenario)
    with AuditLog(accounts / "audit") as log:
        logouts = [json.loads(row["leaf"]) for row in log.events(action="logout")]
    assert logouts[-1]["details"] == {"reason": "account changed"}
    assert logouts[-1]["user"] == "kim"


def test_an_officer_opens_the_audit_log_and_verifies_it(accounts: Path) -> None:
    with Users(accounts) as users:
        users.add("lee", "officer", "secret", "officer-pass-1", 10, must_change=False)
    app = make_app(accounts, ScriptedEngine(["ok"]))

    async def scenario(pilot) -> None:
        await sign_in(pilot, "lee", "officer-pass-1")
        assert isinstance(app.screen, AuditScreen)
        table = app.screen.query_one(DataTable)
        actions = [str(table.get_row_at(i)[4]) for i in range(table.row_count)]
        assert actions[0] == "log_created"
        assert {"state", "login"} <= set(actions)
        await pilot.press("f2")
        result = str(app.screen.query_one("#result", Static).render())
        assert result.startswith("Verified ")
        screen = app.screen
        screen.query_one("#filter", Input).value = "login"
        screen.query_one("#filter", Input).focus()
        await pilot.press("enter")
        assert {str(table.get_row_at(i)[4]) for i in range(table.row_count)} == {"login"}
        await pilot.press("f3")  # the UI writes the export; the service records its sha256
        assert "Exported" in str(screen.query_one("#result", Static).render())

    run(app, scenario)
    (written,) = (accounts / "exports").iterdir()
    assert written.stat().st_mode & 0o777 == 0o600
    with AuditLog(accounts / "audit") as log:
        exports = [json.loads(row["leaf"])["details"] for row in log.events(action="export")]
    assert exports[-1]["delivered"]["sha256"] == hashlib.sha256(written.read_bytes()).hexdigest()


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
    assert refused[-1]["details"] == {"permission": "audit.read"}
    assert refused[-1]["user"] == "kim"


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
        assert "policy    default v4" in body
        assert "network   " in body
        assert "audit" not in body  # an operator does not read the log
        await pilot.press("escape")
        assert isinstance(app.screen, ChatScreen)

    run(app, scenario)


def test_up_and_down_recall_earlier_prompts(accounts: Path) -> None:
    app = make_app(accounts, ScriptedEngine(["ok"]))

    async def scenario(pilot) -> None:
        await sign_in(pilot, "kim", "operator-pass-1")
        for turns, text in enumerate(("first question", "second question"), start=1):
            await ask(pilot, text)
            await until(pilot, lambda turns=turns: answered(app, turns))
        field = app.screen.query_one("#prompt", PromptArea)
        await pilot.press("up")
        assert field.text == "second question"
        await pilot.press("up", "up")
        assert field.text == "first question"  # the oldest stays
        await pilot.press("down", "down")
        assert field.text == ""

    run(app, scenario)


def test_conversations_are_saved_and_reopened_after_signing_in_again(accounts: Path) -> None:
    engine = ScriptedEngine(["Paris."])
    app = make_app(accounts, engine)

    async def scenario(pilot) -> None:
        await sign_in(pilot, "kim", "operator-pass-1")
        await ask(pilot, "What is the capital of France?")
        await until(pilot, lambda: answered(app))
        await pilot.press("ctrl+n")
        assert app.screen.turns == 0
        app.sign_out()
        await pilot.pause()
        await sign_in(pilot, "kim", "operator-pass-1")
        await pilot.press("f6")
        options = app.screen.query_one(OptionList)
        assert options.option_count == 1
        assert "What is the capital of France?" in str(options.get_option_at_index(0).prompt)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ChatScreen) and app.screen.turns)
        prompts = [str(s.render()) for s in app.screen.query(".user")]
        assert prompts == ["What is the capital of France?"]
        assert answer_of(app) == "Paris."
        await ask(pilot, "And of Italy?")  # the service continues the saved conversation
        await until(pilot, lambda: answered(app, 2))

    run(app, scenario)
    assert engine.histories[-1] == ["What is the capital of France?", "Paris.", "And of Italy?"]


def test_development_mode_saves_no_conversations(tmp_path: Path) -> None:
    app = make_app(tmp_path, ScriptedEngine(["ok"]))

    async def scenario(pilot) -> None:
        await pilot.press("enter")
        await pilot.press("f6")
        assert isinstance(app.screen, ChatScreen)
        notice = str(app.screen.query_one("#notice", Static).render())
        assert notice == "Conversations are not saved in development mode."

    run(app, scenario)
    assert not (tmp_path / "conversations").exists()


def test_a_multi_line_prompt_is_sent_whole(accounts: Path) -> None:
    engine = ScriptedEngine(["ok"])
    app = make_app(accounts, engine)

    async def scenario(pilot) -> None:
        await sign_in(pilot, "kim", "operator-pass-1")
        await pilot.press("f", "i", "r", "s", "t", "ctrl+j", "s", "e", "c", "o", "n", "d")
        assert app.screen.query_one("#prompt", PromptArea).text == "first\nsecond"
        await pilot.press("enter")
        await until(pilot, lambda: answered(app))

    run(app, scenario)
    assert engine.prompts == ["first\nsecond"]


def test_an_admin_manages_users_and_each_change_is_audited(accounts: Path) -> None:
    with Users(accounts) as users:
        users.add("park", "admin", "public", "admin-pass-123", 10, must_change=False)
    app = make_app(accounts, ScriptedEngine([]))

    async def scenario(pilot) -> None:
        await sign_in(pilot, "park", "admin-pass-123")
        assert isinstance(app.screen, UsersScreen)
        table = app.screen.query_one(DataTable)
        assert [table.get_row_at(i)[0] for i in range(table.row_count)] == ["kim", "park"]
        await pilot.press("a")
        form = app.screen
        assert isinstance(form, AccountForm)
        form.query_one("#name", Input).value = "choi"
        form.query_one("#clearance", Select).value = "secret"
        form.query_one("#password", Input).value = "new-operator-1"
        form.query_one("#repeat", Input).value = "mistyped-one-1"
        form.query_one("#repeat", Input).focus()
        await pilot.press("enter")
        assert str(form.query_one("#error", Static).render()) == "The passwords differ."
        form.query_one("#repeat", Input).value = "new-operator-1"
        await pilot.press("enter")
        assert isinstance(app.screen, UsersScreen)
        result = str(app.screen.query_one("#result", Static).render())
        assert result == "Created choi (operator, cleared to secret)."
        table.move_cursor(row=0)  # choi sorts first
        await pilot.press("l")
        assert table.get_row_at(0)[:4] == ["choi", "operator", "secret", "locked"]
        await pilot.press("u")
        assert table.get_row_at(0)[3] == "active"

    run(app, scenario)
    with Users(accounts) as users:
        assert users.sign_in("choi", "new-operator-1", max_failures=5, lockout_minutes=1).principal
    with AuditLog(accounts / "audit") as log:
        changes = [
            (leaf["action"], leaf["object"], leaf["user"])
            for leaf in (json.loads(row["leaf"]) for row in log.events())
            if leaf["action"].startswith("user_")
        ]
    assert changes == [
        ("user_add", "choi", "park"),
        ("user_lock", "choi", "park"),
        ("user_unlock", "choi", "park"),
    ]


def test_the_palette_offers_only_what_the_screen_and_role_allow(accounts: Path) -> None:
    with Users(accounts) as users:
        users.add("lee", "officer", "secret", "officer-pass-1", 10, must_change=False)
    app = make_app(accounts, ScriptedEngine([]))

    def titles() -> set[str]:
        return {command.title for command in app.get_system_commands(app.screen)}

    async def scenario(pilot) -> None:
        assert titles() == {"Help", "Status", "Quit"}  # signed out
        await sign_in(pilot, "kim", "operator-pass-1")
        assert titles() == {
            "Cancel answer", "New conversation", "Conversations", "Documents", "Task preset",
            "Answer from documents", "Save draft", "Open source", "Help", "Status", "Quit",
            "Sign out", "Password",
        }  # fmt: skip
        app.sign_out()
        await pilot.pause()
        await sign_in(pilot, "lee", "officer-pass-1")
        assert titles() == {
            "Verify", "Export", "Back", "Help", "Status", "Quit", "Sign out", "Password"
        }  # fmt: skip

    run(app, scenario)


def test_the_defense_kr_policy_speaks_korean(accounts: Path) -> None:
    app = make_app(accounts, ScriptedEngine(["ok"]), "defense-kr")

    async def scenario(pilot) -> None:
        assert app.screen.query_one("#user", Input).placeholder == "사용자 이름"
        await sign_in(pilot, "kim", "wrong")
        message = str(app.screen.query_one("#message", Static).render())
        assert message == "로그인 실패: 사용자 이름 또는 비밀번호가 틀렸습니다."
        await sign_in(pilot, "kim", "operator-pass-1")
        assert isinstance(app.screen, ChatScreen)
        descriptions = {b.description for _, b in app.screen._bindings}
        assert {"답변 취소", "새 대화", "감사 로그"} <= descriptions
        network = "망분리됨" if attest().airgapped else "네트워크 연결됨"
        assert network in str(app.screen.query_one("#status", Static).render())

    run(app, scenario)


def test_the_config_can_choose_english_and_remap_keys(accounts: Path) -> None:
    engine = ScriptedEngine(["word "] * 400, delay=0.02)
    app = make_app(accounts, engine, "defense-kr", language="en", keymap={"cancel": "f9"})

    async def scenario(pilot) -> None:
        assert app.screen.query_one("#user", Input).placeholder == "user name"
        await sign_in(pilot, "kim", "operator-pass-1")
        await ask(pilot, "Tell me a long story")
        await until(pilot, lambda: started(app))
        await pilot.press("f9")
        await until(pilot, lambda: not app.screen.busy)
        assert app.screen.query_one("#prompt", PromptArea).text == "Tell me a long story"

    run(app, scenario)
