"""The security officer's audit screen: filter events, verify the log, export it."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.markup import escape
from textual.widgets import DataTable, Footer, Input, Static

from appliance.audit import Actor
from appliance.audit.export import write_export
from appliance.config import ensure_dir
from appliance.errors import ApplianceError
from appliance.fsutil import atomic_writer
from appliance.identity import Principal
from appliance.textsafe import printable
from appliance.tui.login import LoginScreen
from appliance.tui.screen import ApplianceScreen
from appliance.tui.text import localize_bindings

if TYPE_CHECKING:
    pass

COLUMNS = ("seq", "time (UTC)", "user", "role", "action", "label", "outcome")
SHOWN = 500  # the newest events matching the filter


class AuditScreen(ApplianceScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f2", "verify", "Verify", id="audit.verify"),
        Binding("f3", "export", "Export", id="audit.export"),
        Binding("escape", "back", "Back", id="back"),
    ]
    DEFAULT_CSS = """
    #table { height: 1fr; }
    #result { height: auto; padding: 0 1; }
    """

    def __init__(self, principal: Principal) -> None:
        super().__init__()
        self.principal = principal

    def compose(self) -> ComposeResult:
        yield Input(placeholder=self.owner.words("audit.filter"), id="filter")
        yield DataTable(id="table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="result")
        yield Footer()

    def on_mount(self) -> None:
        localize_bindings(self, self.owner.ui_language)
        self.query_one(DataTable).add_columns(*COLUMNS)
        self._load("")
        self.query_one("#filter", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if self.owner.check_session():
            self._load(event.value.strip())

    def _load(self, term: str) -> None:
        """The newest SHOWN events whose user, role, action, label or outcome is `term`."""
        table = self.query_one(DataTable)
        table.clear()
        log = self.owner.context.log
        rows = log.events(term=term or None, limit=SHOWN, newest_first=True)
        records = [json.loads(row["leaf"]) | {"seq": row["seq"]} for row in rows]
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
        if not self.owner.check_session():
            return
        result = self.query_one("#result", Static)
        try:
            report = self.owner.context.log.verify()
        except ApplianceError as exc:
            result.update(
                f"[b red]{self.owner.words('audit.failed')}[/] {escape(printable(str(exc)))}"
            )
            return
        summary = self.owner.words(
            "audit.events",
            events=report.events,
            first=report.first_seq,
            last=report.last_seq,
            checkpoints=report.checkpoints,
        )
        result.update(f"[b green]{self.owner.words('audit.verified')}[/] {summary}")

    def action_export(self) -> None:
        if not self.owner.check_session():
            return
        context = self.owner.context
        result = self.query_one("#result", Static)
        directory = ensure_dir(context.home / "exports")
        target = directory / f"audit-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.jsonl"
        actor = Actor(self.principal.user, self.principal.role)
        try:
            with atomic_writer(target, mode=0o600) as sink:
                done = write_export(context.log, sink, actor)
        except ApplianceError as exc:
            result.update(
                f"[b red]{self.owner.words('audit.export_failed')}[/] {escape(printable(str(exc)))}"
            )
            return
        result.update(escape(self.owner.words("audit.exported", events=done.events, path=target)))
        self._load(self.query_one("#filter", Input).value.strip())
