"""The UI keeps to the rights of the moment: every screen times out, a changed account
signs out, a password set by someone else is replaced first, an answer whose label rose
above the clearance is withdrawn."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

from textual.widgets import Input, Markdown, Static

from appliance.audit import AuditLog
from appliance.conversations import Conversations
from appliance.identity import Users
from appliance.policy import load_policy
from appliance.tui.audit import AuditScreen
from appliance.tui.chat import ChatScreen
from appliance.tui.login import LoginScreen
from appliance.tui.users import AccountForm, PasswordForm, UsersScreen
from tests.test_tui import (
    ScriptedEngine,
    ask,
    begin_log,
    close_services,
    make_app,
    run,
    sign_in,
    until,
)

__all__ = ["close_services"]  # the fixture that stops each app's service


def _logouts(home: Path) -> list[dict]:
    with AuditLog(home / "audit") as log:
        return [json.loads(row["leaf"]) for row in log.events(action="logout")]


def test_the_admin_and_officer_screens_time_out_too(tmp_path: Path) -> None:
    begin_log(tmp_path)
    with Users(tmp_path) as users:
        users.add("park", "admin", "public", "admin-pass-123", 10, must_change=False)
        users.add("lee", "officer", "public", "officer-pass-1", 10, must_change=False)
    app = make_app(tmp_path, ScriptedEngine([]), idle_seconds=2)

    async def scenario(pilot) -> None:
        for name, password, screen in (
            ("park", "admin-pass-123", UsersScreen),
            ("lee", "officer-pass-1", AuditScreen),
        ):
            await sign_in(pilot, name, password)
            assert isinstance(app.screen, screen)
            deadline = time.monotonic() + 60
            while not isinstance(app.screen, LoginScreen):  # nobody touches a key meanwhile
                assert time.monotonic() < deadline, "the session did not time out"
                app.check_session()  # what the app's timer runs every few seconds
                await pilot.pause(0.5)
            message = str(app.screen.query_one("#message", Static).render())
            assert message == app.words("login.idle")

    run(app, scenario)
    assert [(e["user"], e["details"]["reason"]) for e in _logouts(tmp_path)] == [
        ("park", "idle"),
        ("lee", "idle"),
    ]


def test_locking_an_account_ends_its_open_session(tmp_path: Path) -> None:
    begin_log(tmp_path)
    with Users(tmp_path) as users:
        users.add("lee", "officer", "public", "officer-pass-1", 10, must_change=False)
    app = make_app(tmp_path, ScriptedEngine([]))

    async def scenario(pilot) -> None:
        await sign_in(pilot, "lee", "officer-pass-1")
        assert isinstance(app.screen, AuditScreen)
        with Users(tmp_path) as users:  # another officer, elsewhere
            users.lock("lee")
        await pilot.press("f2")  # the next action meets the change
        await until(pilot, lambda: isinstance(app.screen, LoginScreen))
        message = str(app.screen.query_one("#message", Static).render())
        assert "changed or locked" in message

    run(app, scenario)
    assert _logouts(tmp_path)[-1]["details"] == {"reason": "account changed"}


def test_a_reset_password_is_replaced_before_the_chat_opens(tmp_path: Path) -> None:
    begin_log(tmp_path)
    with Users(tmp_path) as users:
        users.add("kim", "operator", "public", "set-by-admin-1", 10)  # must change
    app = make_app(tmp_path, ScriptedEngine(["ok"]))

    async def scenario(pilot) -> None:
        await sign_in(pilot, "kim", "set-by-admin-1")
        form = app.screen
        assert isinstance(form, PasswordForm)
        form.query_one("#password", Input).value = "kims-own-pass-1"
        form.query_one("#repeat", Input).value = "kims-own-pass-1"
        form.query_one("#repeat", Input).focus()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ChatScreen))

    run(app, scenario)
    with Users(tmp_path) as users:
        assert users.account("kim").must_change is False  # type: ignore[union-attr]
        assert users.sign_in("kim", "kims-own-pass-1", max_failures=5, lockout_minutes=1).principal
    opened, notice = Conversations.open(tmp_path, "kim", "kims-own-pass-1")
    opened.close()
    assert notice is None  # the store is keyed to the password kim chose


def test_an_admin_adding_an_officer_files_a_request(tmp_path: Path) -> None:
    begin_log(tmp_path)
    with Users(tmp_path) as users:
        users.add("park", "admin", "public", "admin-pass-123", 10, must_change=False)
    app = make_app(tmp_path, ScriptedEngine([]))

    async def scenario(pilot) -> None:
        await sign_in(pilot, "park", "admin-pass-123")
        await pilot.press("a")
        form = app.screen
        assert isinstance(form, AccountForm)
        form.query_one("#name", Input).value = "eve"
        form.query_one("#role").value = "officer"
        for field in ("#password", "#repeat"):
            form.query_one(field, Input).value = "admin-knows-this"
        form.query_one("#repeat", Input).focus()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, UsersScreen))
        result = str(app.screen.query_one("#result", Static).render())
        assert "an officer approves it" in result

    run(app, scenario)
    with Users(tmp_path) as users:
        assert users.account("eve") is None
        assert [request.name for request in users.requests()] == ["eve"]


def test_an_answer_whose_label_rises_above_the_clearance_is_withdrawn(tmp_path: Path) -> None:
    begin_log(tmp_path)
    with Users(tmp_path) as users:
        users.add("kim", "operator", "restricted", "operator-pass-1", 10, must_change=False)
    engine = ScriptedEngine(["The plan ", "is as follows. ", "Ⅱ급비밀"], delay=0.05)
    app = make_app(tmp_path, engine, "defense-kr")

    async def scenario(pilot) -> None:
        await sign_in(pilot, "kim", "operator-pass-1")
        chat = app.screen
        await ask(pilot, "계획을 알려주세요")
        await until(pilot, lambda: not chat.busy)
        assert "Ⅱ급비밀" in str(chat.query_one("#notice").render())  # the service's reason
        assert not chat.query(Markdown)  # nothing of the answer reached the screen
        assert chat.turns == 0

    run(app, scenario)
    store, _ = Conversations.open(tmp_path, "kim", "operator-pass-1")
    with contextlib.closing(store):
        levels = {level.id for level in load_policy(tmp_path / "policy.toml").levels}
        assert store.summaries(levels) == []  # and nothing was saved


def test_user_text_in_messages_is_never_markup(tmp_path: Path) -> None:
    begin_log(tmp_path)
    with Users(tmp_path) as users:
        users.add("kim", "operator", "public", "operator-pass-1", 10, must_change=False)
    app = make_app(tmp_path, ScriptedEngine([]))

    async def scenario(pilot) -> None:
        await sign_in(pilot, "[/]", "[b]x[/b]")
        message = str(app.screen.query_one("#message", Static).render())
        assert message.endswith("wrong user name or password")

    run(app, scenario)
