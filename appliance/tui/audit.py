"""The security officer's audit screen: filter events, verify the log, export it.

The service reads the log and checks the role; the screen shows what it
sends and writes an export where its user asked (`AppContext.exports`).
F2 verifies against the officer's trusted checkpoint when the UI was given
one, and says what a verify on this host cannot prove.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.markup import escape
from textual.widgets import DataTable, Footer, Input, Static

from appliance.config import ensure_dir
from appliance.errors import ApplianceError, AuthenticationError
from appliance.textsafe import printable
from appliance.tui.link import Link
from appliance.tui.login import LoginScreen
from appliance.tui.password import change_own_password
from appliance.tui.screen import ApplianceScreen
from appliance.tui.text import localize_bindings

COLUMNS = ("seq", "time", "user", "role", "action", "label", "outcome")  # audit.column.*
SHOWN = 500  # the newest events matching the filter


class AuditScreen(ApplianceScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f2", "verify", "Verify", id="audit.verify"),
        Binding("f3", "export", "Export", id="audit.export"),
        Binding("f8", "password", "Password", id="password"),
        Binding("escape", "back", "Back", id="back"),
    ]
    DEFAULT_CSS = """
    #table { height: 1fr; }
    #result { height: auto; padding: 0 1; }
    """

    def __init__(self, link: Link) -> None:
        super().__init__()
        self.link = link

    def compose(self) -> ComposeResult:
        yield Input(placeholder=self.owner.words("audit.filter"), id="filter")
        yield DataTable(id="table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="result")
        yield Footer()

    def on_mount(self) -> None:
        localize_bindings(self, self.owner.ui_language)
        words = self.owner.words
        self.query_one(DataTable).add_columns(*(words(f"audit.column.{c}") for c in COLUMNS))
        self._load("")
        self.query_one("#filter", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._load(event.value.strip())

    def _load(self, term: str) -> None:
        """The newest SHOWN events whose user, role, action, label or outcome is `term`."""
        table = self.query_one(DataTable)
        table.clear()
        try:
            shown = self.link.call(
                "audit", call="show", term=term or None, newest=True, limit=SHOWN
            )
        except ApplianceError as exc:
            self._failed("audit.failed", exc)
            return
        records = [json.loads(event["leaf"]) | {"seq": event["seq"]} for event in shown["events"]]
        for record in reversed(records):
            when = datetime.fromtimestamp(record["time_us"] / 1e6, UTC).strftime("%m-%d %H:%M:%S")
            fields = (
                record["user"],
                record["role"],
                record["action"],
                record.get("label") or "-",
                record["outcome"],
            )
            # Text, not str: DataTable reads a str as markup, and these fields hold
            # what users chose (a user "[/]" would end the screen with a MarkupError).
            table.add_row(
                str(record["seq"]), when, *(Text(printable(str(field))) for field in fields)
            )
        table.move_cursor(row=len(records) - 1)

    def action_back(self) -> None:
        """Back to the chat, or, where this is the role's own screen, sign out."""
        if isinstance(self.app.screen_stack[-2], LoginScreen):
            self.owner.sign_out()
        else:
            self.app.pop_screen()

    def action_verify(self) -> None:
        result = self.query_one("#result", Static)
        try:
            found = self.link.call("audit", call="verify", trusted=self.owner.context.trusted)
        except ApplianceError as exc:
            self._failed("audit.failed", exc)
            return
        report: dict[str, Any] = found.get("report") or {}
        summary = self.owner.words(
            "audit.events",
            events=report.get("events"),
            first=report.get("first_seq"),
            last=report.get("last_seq"),
            checkpoints=report.get("checkpoints"),
        )
        state = escape(printable(str(found.get("state", ""))))
        result.update(f"[b green]{self.owner.words('audit.verified')}[/] {summary}\n{state}")

    def action_export(self) -> None:
        result = self.query_one("#result", Static)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = ensure_dir(self.owner.exports()) / f"audit-{stamp}.jsonl"
        try:
            done = self.link.export_to(target)  # the UI writes what it asked for
        except ApplianceError as exc:
            self._failed("audit.export_failed", exc)
            return
        result.update(
            escape(self.owner.words("audit.exported", events=done["events"], path=target))
        )
        self._load(self.query_one("#filter", Input).value.strip())

    def action_password(self) -> None:
        """Change one's own password (F8); the service then ends the session."""
        change_own_password(self.owner, self.link)

    def _failed(self, heading: str, exc: ApplianceError) -> None:
        if isinstance(exc, AuthenticationError):  # the service ended the session
            self.owner.session_ended(self.link, exc)
            return
        message = escape(printable(self.owner.say(exc)))
        self.query_one("#result", Static).update(f"[b red]{self.owner.words(heading)}[/] {message}")
