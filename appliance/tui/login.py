"""The sign-in screen: user name and password; clear messages for failures and lockout."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from appliance.errors import ApplianceError
from appliance.session import authenticate, development_mode

if TYPE_CHECKING:
    from appliance.tui.app import ApplianceApp


class LoginScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("ctrl+q", "app.quit", "Quit", id="quit")]
    DEFAULT_CSS = """
    LoginScreen { align: center middle; }
    #box { width: 60; height: auto; border: round $primary; padding: 1 2; }
    #title { text-style: bold; margin-bottom: 1; }
    #message { color: $error; margin-top: 1; }
    #message.dev { color: $warning; }
    """

    @property
    def owner(self) -> ApplianceApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        policy = self.owner.context.policy
        with Vertical(id="box"):
            yield Static(f"Sovereign AI appliance · {policy.describe()}", id="title")
            yield Input(placeholder="user name", id="user")
            yield Input(placeholder="password", password=True, id="password")
            yield Static("", id="message")
        yield Footer()

    def on_mount(self) -> None:
        context = self.owner.context
        message = self.query_one("#message", Static)
        try:
            dev = development_mode(context.home, context.policy, context.account)
        except ApplianceError as exc:
            message.update(str(exc))
            return
        if dev is not None:
            message.add_class("dev")
            message.update(
                "No accounts exist: leave both fields empty and press Enter to continue in "
                "DEVELOPMENT MODE."
            )
        self.query_one("#user", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        user = self.query_one("#user", Input).value.strip()
        if event.input.id == "user" and user:
            self.query_one("#password", Input).focus()
            return
        password_field = self.query_one("#password", Input)
        password, password_field.value = password_field.value, ""
        message = self.query_one("#message", Static)
        context = self.owner.context
        try:
            if not user:
                principal = development_mode(context.home, context.policy, context.account)
                if principal is None:
                    message.update("Enter your user name.")
                    return
            else:
                principal = authenticate(context.home, context.policy, context.log, user, password)
        except ApplianceError as exc:
            message.remove_class("dev")
            message.update(str(exc))
            return
        message.update("")
        self.owner.start_session(principal)
