"""The IT admin's users screen: accounts in a table; add, lock, unlock, set a password.

Every change goes through `AccountAdmin`, as `appliance users ...` does, so
it is checked and audited the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Input, Select, Static

from appliance.accounts import AccountAdmin
from appliance.errors import ApplianceError
from appliance.identity import ROLES, Principal
from appliance.tui.audit import AuditScreen
from appliance.tui.screen import ApplianceScreen
from appliance.tui.text import localize_bindings

if TYPE_CHECKING:
    from appliance.tui.app import ApplianceApp

COLUMNS = ("user", "role", "clearance", "state", "failures")


class UsersScreen(ApplianceScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "add", "Add", id="users.add"),
        Binding("l", "lock", "Lock", id="users.lock"),
        Binding("u", "unlock", "Unlock", id="users.unlock"),
        Binding("p", "password", "Set password", id="users.passwd"),
        Binding("f5", "audit", "Audit log", id="audit"),
        Binding("escape", "app.sign_out", "Sign out", id="sign_out"),
    ]
    DEFAULT_CSS = """
    #table { height: 1fr; }
    #result { height: auto; padding: 0 1; }
    """

    def __init__(self, principal: Principal) -> None:
        super().__init__()
        self.principal = principal

    @property
    def admin(self) -> AccountAdmin:
        context = self.owner.context
        return AccountAdmin(context.home, context.policy, context.log, self.principal)

    def compose(self) -> ComposeResult:
        yield DataTable(id="table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="result")
        yield Footer()

    def on_mount(self) -> None:
        localize_bindings(self, self.owner.ui_language)
        self.query_one(DataTable).add_columns(*COLUMNS)
        self._load()
        self.query_one(DataTable).focus()

    def _load(self) -> None:
        table = self.query_one(DataTable)
        table.clear()
        words = self.owner.words
        for account in self.admin.accounts():
            state = words("users.state_locked" if account.locked else "users.state_active")
            table.add_row(
                account.name,
                account.role,
                account.clearance,
                state,
                str(account.failures),
                key=account.name,
            )

    def _selected(self) -> str | None:
        table = self.query_one(DataTable)
        if table.row_count == 0:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def _report(self, text: str, *, error: bool = False) -> None:
        style = "b red" if error else "b green"
        self.query_one("#result", Static).update(f"[{style}]{escape(text)}[/]")
        self._load()

    def action_add(self) -> None:
        self.app.push_screen(AccountForm(self.owner), self._added)

    def _added(self, form: dict[str, str] | None) -> None:
        if form is None:
            return
        try:
            clearance = self.admin.add(
                form["name"], form["role"], form["clearance"], form["password"]
            )
        except ApplianceError as exc:
            self._report(str(exc), error=True)
            return
        added = self.owner.words(
            "users.added", name=form["name"], role=form["role"], clearance=clearance
        )
        self._report(added)

    def action_lock(self) -> None:
        self._set_locked(locked=True)

    def action_unlock(self) -> None:
        self._set_locked(locked=False)

    def _set_locked(self, *, locked: bool) -> None:
        name = self._selected()
        if name is None:
            return
        try:
            self.admin.set_locked(name, locked=locked)
        except ApplianceError as exc:
            self._report(str(exc), error=True)
            return
        self._report(self.owner.words("users.locked" if locked else "users.unlocked", name=name))

    def action_password(self) -> None:
        name = self._selected()
        if name is not None:
            self.app.push_screen(PasswordForm(self.owner, name), self._password_set)

    def _password_set(self, form: dict[str, str] | None) -> None:
        if form is None:
            return
        try:
            self.admin.set_password(form["name"], form["password"])
        except ApplianceError as exc:
            self._report(str(exc), error=True)
            return
        self._report(self.owner.words("users.password_set", name=form["name"]))

    def action_audit(self) -> None:
        self.app.push_screen(AuditScreen(self.principal))


class _Form(ModalScreen[dict[str, str] | None]):
    """Fields, then a password typed twice; Enter on the last field submits, Esc cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Close", id="panel.close"),
    ]
    DEFAULT_CSS = """
    _Form { align: center middle; }
    #form { width: 60; height: auto; border: round $primary; padding: 0 1; background: $surface; }
    #error { color: $error; height: auto; }
    """

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
            yield Input(placeholder=words("login.password"), password=True, id="password")
            yield Input(placeholder=words("users.repeat"), password=True, id="repeat")
            yield Static("", id="error")

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
        self.dismiss({**self.values(), "password": password})

    def values(self) -> dict[str, str]:
        return {}

    def action_cancel(self) -> None:
        self.dismiss(None)


class AccountForm(_Form):
    def __init__(self, app: ApplianceApp) -> None:
        super().__init__(app, app.words("users.form_title"))

    def fields(self) -> ComposeResult:
        words = self.owner.words
        levels = self.owner.context.policy.levels
        language = self.owner.ui_language
        yield Input(placeholder=words("users.name"), id="name")
        yield Select(
            [(role, role) for role in ROLES],
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
