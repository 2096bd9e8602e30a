"""The sign-in screen: user name and password; clear messages for failures and waits.

A password that someone else set (setup, a new account, a reset) must be
replaced before the user's screen opens: the new one is typed twice, set as
the user's own, and the user is signed in again with it.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Vertical
from textual.widgets import Footer, Input, Static

from appliance.accounts import AccountAdmin
from appliance.conversations import Conversations
from appliance.errors import ApplianceError
from appliance.identity import Principal
from appliance.session import authenticate, development_mode
from appliance.tui.forms import PasswordForm
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
        policy = owner.context.policy
        with Vertical(id="box"):
            yield Static(f"{owner.words('login.title')} · {policy.describe()}", id="title")
            if owner.context.demo:
                yield Static(owner.words("login.demo"), id="demo")
            yield Input(placeholder=owner.words("login.user"), id="user")
            yield Input(placeholder=owner.words("login.password"), password=True, id="password")
            yield Static("", id="message", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        localize_bindings(self, self.owner.ui_language)
        context = self.owner.context
        message = self.query_one("#message", Static)
        try:
            dev = development_mode(context.home, context.policy, context.account)
        except ApplianceError as exc:
            message.update(str(exc))
            return
        if dev is not None:
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
        message = self.query_one("#message", Static)
        owner = self.owner
        context = owner.context
        conversations = None
        try:
            if not user:
                principal = development_mode(context.home, context.policy, context.account)
                if principal is None:
                    message.update(owner.words("login.need_user"))
                    return
            else:
                principal = authenticate(context.home, context.policy, context.log, user, password)
                if principal.must_change:
                    self._must_change(principal)
                    return
                conversations = self._conversations(principal, password)
        except ApplianceError as exc:
            self._failed(exc)
            return
        self._start(principal, conversations)

    def _must_change(self, principal: Principal) -> None:
        self.show_message(self.owner.words("login.must_change"))
        form = PasswordForm(self.owner, principal.user)
        self.app.push_screen(form, lambda result: self._changed(principal, result))

    def _changed(self, principal: Principal, form: dict[str, str] | None) -> None:
        if form is None:
            return
        context = self.owner.context
        new = form["password"]
        try:
            AccountAdmin(context.home, context.policy, context.log, principal).set_password(
                principal.user, new
            )
            fresh = authenticate(context.home, context.policy, context.log, principal.user, new)
            conversations = self._conversations(fresh, new)
        except ApplianceError as exc:
            self._failed(exc)
            return
        self._start(fresh, conversations)

    def _conversations(self, principal: Principal, password: str) -> Conversations | None:
        """The password opens an operator's saved conversations."""
        if not principal.may("ask"):
            return None
        conversations, notice = Conversations.open(
            self.owner.context.home, principal.user, password
        )
        if notice:
            self.owner.notify(notice, severity="warning", timeout=15)
        return conversations

    def _failed(self, exc: ApplianceError) -> None:
        self.show_message(f"{self.owner.words('login.failed')}: {exc}")

    def _start(self, principal: Principal, conversations: Conversations | None) -> None:
        self.query_one("#message", Static).update("")
        self.query_one("#user", Input).value = ""
        self.owner.start_session(principal, conversations)

    def on_screen_resume(self) -> None:
        self.query_one("#user", Input).focus()

    def show_message(self, text: str) -> None:
        message = self.query_one("#message", Static)
        message.remove_class("dev")
        message.update(text)
