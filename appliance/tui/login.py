"""The sign-in screen: user name and password; clear messages for failures and waits.

Each sign-in is a new connection to the appliance service. A password that
someone else set (setup, a new account, a reset) must be replaced before the
user's screen opens: the new one is typed twice, set as the user's own, and
the user is signed in again with it.
"""

from __future__ import annotations

import contextlib
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Vertical
from textual.widgets import Footer, Input, Static

from appliance.errors import ApplianceError
from appliance.tui.forms import PasswordForm
from appliance.tui.link import Link
from appliance.tui.messages import notice
from appliance.tui.screen import ApplianceScreen
from appliance.tui.text import localize_bindings


class LoginScreen(ApplianceScreen):
    BINDINGS: ClassVar[list[BindingType]] = []
    DEFAULT_CSS = """
    LoginScreen { align: center middle; }
    #box { width: 60; height: auto; border: round $primary; padding: 1 2; }
    #title { text-style: bold; margin-bottom: 1; }
    #message { color: $error; margin-top: 1; }
    #message.dev { color: $warning; }
    #demo { background: $warning; color: $background; text-style: bold; margin-bottom: 1; }
    """

    def compose(self) -> ComposeResult:
        owner = self.owner
        with Vertical(id="box"):
            yield Static(f"{owner.words('login.title')} · {owner.policy_name}", id="title")
            if owner.hello.get("demo"):
                yield Static(owner.words("login.demo"), id="demo")
            yield Input(placeholder=owner.words("login.user"), id="user")
            yield Input(placeholder=owner.words("login.password"), password=True, id="password")
            yield Static("", id="message", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        localize_bindings(self, self.owner.ui_language)
        if self.owner.hello.get("development"):
            message = self.query_one("#message", Static)
            message.add_class("dev")
            message.update(self.owner.words("login.dev"))
        self.query_one("#user", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        user = self.query_one("#user", Input).value.strip()
        if event.input.id == "user" and user:
            self.query_one("#password", Input).focus()
            return
        password_field = self.query_one("#password", Input)
        password, password_field.value = password_field.value, ""
        if not user and not self.owner.hello.get("development"):
            self.show_message(self.owner.words("login.need_user"))
            return
        link: Link | None = None
        try:
            link = Link(self.owner.context.service)
            link.sign_in(user or None, password if user else None)
        except ApplianceError as exc:
            self._failed(exc, link)
            return
        if link.principal.must_change:
            self._must_change(link)
            return
        self._start(link)

    def _must_change(self, link: Link) -> None:
        self.show_message(self.owner.words("login.must_change"))
        form = PasswordForm(self.owner, link.principal.user)
        self.app.push_screen(form, lambda result: self._changed(link, result))

    def _changed(self, link: Link, form: dict[str, str] | None) -> None:
        if form is None:
            link.sign_out()
            return
        new = form["password"]
        try:
            link.passwd(new)
            link.sign_in(link.principal.user, new)
        except ApplianceError as exc:
            self._failed(exc, link)
            return
        self._start(link)

    def _failed(self, exc: ApplianceError, link: Link | None) -> None:
        if link is not None:
            with contextlib.suppress(ApplianceError):
                link.close()
        self.show_message(f"{self.owner.words('login.failed')}: {self.owner.say(exc)}")

    def _start(self, link: Link) -> None:
        self.query_one("#message", Static).update("")
        self.query_one("#user", Input).value = ""
        sent = link.signed_in.get("notice")
        if isinstance(sent, str) and sent:
            self.owner.notify(notice(sent, self.owner.ui_language), severity="warning", timeout=15)
        self.owner.start_session(link)

    def on_screen_resume(self) -> None:
        self.query_one("#user", Input).focus()

    def show_message(self, text: str) -> None:
        message = self.query_one("#message", Static)
        message.remove_class("dev")
        message.update(text)
