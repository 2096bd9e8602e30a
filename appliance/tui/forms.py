"""Modal forms: an account (name, role, clearance), a password typed twice, and one's
own new password (after the current one)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import Input, Select, Static

from appliance.identity import ROLES
from appliance.tui.text import localize_bindings

if TYPE_CHECKING:
    from appliance.tui.app import ApplianceApp


class _Form(ModalScreen[dict[str, str] | None]):
    """Fields, then a password typed twice; Enter on the last field submits, Esc cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Close", id="panel.close"),
    ]
    DEFAULT_CSS = """
    _Form { align: center middle; }
    #form { width: 60; height: auto; border: round $primary; padding: 0 1; background: $surface; }
    #error { color: $error; height: auto; }
    #hint { color: $text-muted; }
    """
    password_key: ClassVar[str] = "login.password"  # the words of the first password field

    def __init__(self, app: ApplianceApp, title: str) -> None:
        super().__init__()
        self.owner = app
        self.title_text = title

    def fields(self) -> ComposeResult:
        yield from ()

    def compose(self) -> ComposeResult:
        words = self.owner.words
        with Vertical(id="form"):
            yield Static(f"[b]{escape(self.title_text)}[/]")
            yield from self.fields()
            yield Input(placeholder=words(self.password_key), password=True, id="password")
            yield Input(placeholder=words("users.repeat"), password=True, id="repeat")
            yield Static("", id="error", markup=False)

    def on_mount(self) -> None:
        localize_bindings(self, self.owner.ui_language)
        self.focus_next()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "repeat":
            self.focus_next()
            return
        password = self.query_one("#password", Input).value
        repeat = self.query_one("#repeat", Input)
        if password != repeat.value:
            repeat.value = ""
            self.query_one("#error", Static).update(self.owner.words("users.mismatch"))
            return
        values = {**self.values(), "password": password}
        problem = self.accept(values)
        if problem is not None:  # the form stays open, with the reason under it
            self.query_one("#error", Static).update(problem)
            return
        self.dismiss(values)

    def values(self) -> dict[str, str]:
        return {}

    def accept(self, values: dict[str, str]) -> str | None:
        """Why the form cannot close with `values`, or None: it closes."""
        return None

    def action_cancel(self) -> None:
        self.dismiss(None)


class AccountForm(_Form):
    def __init__(self, app: ApplianceApp) -> None:
        super().__init__(app, app.words("users.form_title"))

    def fields(self) -> ComposeResult:
        words = self.owner.words
        levels = self.owner.levels
        language = self.owner.ui_language
        yield Input(placeholder=words("users.name"), id="name")
        yield Select(
            [(words(f"role.{role}"), role) for role in ROLES],
            prompt=words("users.role"),
            id="role",
            value="operator",
        )
        yield Select(
            [(level.name(language), level.id) for level in levels],
            prompt=words("users.clearance"),
            id="clearance",
            value=levels[0].id,
        )

    def values(self) -> dict[str, str]:
        return {
            "name": self.query_one("#name", Input).value.strip(),
            "role": str(self.query_one("#role", Select).value),
            "clearance": str(self.query_one("#clearance", Select).value),
        }


class PasswordForm(_Form):
    def __init__(self, app: ApplianceApp, name: str) -> None:
        super().__init__(app, app.words("users.password_title", name=name))
        self.account_name = name

    def values(self) -> dict[str, str]:
        return {"name": self.account_name}


class OwnPasswordForm(_Form):
    """The current password, then the new one twice. `change(current, new)` makes the
    change and says why it failed (the form stays open), or None (the form closes)."""

    password_key = "password.new"

    def __init__(
        self, app: ApplianceApp, name: str, change: Callable[[str, str], str | None]
    ) -> None:
        super().__init__(app, app.words("password.title", name=name))
        self.change = change

    def fields(self) -> ComposeResult:
        words = self.owner.words
        yield Static(words("password.hint"), id="hint")
        yield Input(placeholder=words("password.current"), password=True, id="current")

    def values(self) -> dict[str, str]:
        return {"current": self.query_one("#current", Input).value}

    def accept(self, values: dict[str, str]) -> str | None:
        problem = self.change(values["current"], values["password"])
        if problem is not None:
            self.query_one("#current", Input).value = ""
            self.query_one("#current", Input).focus()
        return problem
