"""The IT admin's users screen: accounts in a table; add, lock, unlock, set a password.

Every change is a request to the service's `AccountAdmin`, as `appliance
users ...` makes, so it is checked and audited the same way. Adding an officer files a request
that an officer approves; a refused or stale action is reported, and an
account changed since sign-in signs out.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.markup import escape
from textual.widgets import DataTable, Footer, Static

from appliance.errors import ApplianceError, AuthenticationError
from appliance.identity import REQUEST_HOURS
from appliance.service import RemoteAccounts
from appliance.tui.audit import AuditScreen
from appliance.tui.forms import AccountForm, PasswordForm
from appliance.tui.link import Link
from appliance.tui.password import change_own_password
from appliance.tui.screen import ApplianceScreen
from appliance.tui.text import localize_bindings

COLUMNS = ("user", "role", "clearance", "state", "failures")  # users.column.*


class UsersScreen(ApplianceScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "add", "Add", id="users.add"),
        Binding("l", "lock", "Lock", id="users.lock"),
        Binding("u", "unlock", "Unlock", id="users.unlock"),
        Binding("p", "password", "Set password", id="users.passwd"),
        Binding("f5", "audit", "Audit log", id="audit"),
        Binding("f8", "own_password", "Password", id="password"),
        Binding("escape", "app.sign_out", "Sign out", id="sign_out"),
    ]
    DEFAULT_CSS = """
    #table { height: 1fr; }
    #result { height: auto; padding: 0 1; }
    """

    def __init__(self, link: Link) -> None:
        super().__init__()
        self.link = link
        self.admin = RemoteAccounts(link)

    def compose(self) -> ComposeResult:
        yield DataTable(id="table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="result")
        yield Footer()

    def on_mount(self) -> None:
        localize_bindings(self, self.owner.ui_language)
        words = self.owner.words
        self.query_one(DataTable).add_columns(*(words(f"users.column.{c}") for c in COLUMNS))
        self._load()
        self.query_one(DataTable).focus()

    def _load(self) -> None:
        table = self.query_one(DataTable)
        table.clear()
        words = self.owner.words
        try:
            accounts = self.admin.accounts()
        except AuthenticationError as exc:
            self.owner.session_ended(self.link, exc)
            return
        for account in accounts:
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

    def _refused(self, exc: ApplianceError) -> None:
        if isinstance(exc, AuthenticationError):  # this account changed: it signs out
            self.owner.session_ended(self.link, exc)
            return
        self._report(self.owner.say(exc), error=True)

    def action_add(self) -> None:
        self.app.push_screen(AccountForm(self.owner), self._added)

    def _added(self, form: dict[str, str] | None) -> None:
        if form is None:
            return
        name, role = form["name"], form["role"]
        try:
            if role == "officer":  # an officer approves it and sets the first password
                self.admin.request_officer(name, form["clearance"])
                done = self.owner.words("users.requested", name=name, hours=REQUEST_HOURS)
            else:
                clearance = self.admin.add(name, role, form["clearance"], form["password"])
                done = self.owner.words("users.added", name=name, role=role, clearance=clearance)
        except ApplianceError as exc:
            self._refused(exc)
            return
        self._report(done)

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
            self._refused(exc)
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
            self._refused(exc)
            return
        self._report(self.owner.words("users.password_set", name=form["name"]))

    def action_audit(self) -> None:
        self.app.push_screen(AuditScreen(self.link))

    def action_own_password(self) -> None:
        """Change one's own password (F8); the service then ends the session."""
        change_own_password(self.owner, self.link)
