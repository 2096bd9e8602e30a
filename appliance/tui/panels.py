"""Pop-up panels: help (F1), status (F4) and the saved conversations (F6)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from appliance.errors import ApplianceError
from appliance.tui.link import Link
from appliance.tui.text import localize_bindings

if TYPE_CHECKING:
    from appliance.tui.app import ApplianceApp


class _Panel(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Close", id="panel.close"),
        Binding("f1", "app.pop_screen", "Close", show=False, id="panel.close-f1"),
        Binding("f4", "app.pop_screen", "Close", show=False, id="panel.close-f4"),
    ]
    DEFAULT_CSS = """
    _Panel { align: center middle; }
    #panel { width: 76; height: auto; max-height: 22; border: round $primary; padding: 0 1;
             background: $surface; }
    """

    def __init__(self, app: ApplianceApp, title: str, lines: list[str]) -> None:
        super().__init__()
        self.title_text = f"[b]{app.words(title)}[/]  {app.words('panel.esc')}"
        self.lines = lines

    def compose(self) -> ComposeResult:
        with Vertical(id="panel"):
            yield Static(self.title_text)
            yield Static("\n".join(self.lines), markup=False, id="body")


class HelpPanel(_Panel):
    """The keys of the screen below and of the app, as their bindings declare them."""

    def __init__(self, app: ApplianceApp, bindings: list[tuple[str, str]]) -> None:
        lines = [f"{key:>10}  {description}" for key, description in bindings]
        palette = f"{'ctrl+p':>10}  {app.words('panel.palette')}"
        super().__init__(app, "panel.keys", [*lines, "", palette])


class StatusPanel(_Panel):
    """The appliance's own checks, as its service reports them: network, policy, audit
    log (for roles that read it), model."""

    def __init__(self, app: ApplianceApp) -> None:
        hello, words = app.hello, app.words
        lines = [
            words("status.service", version=hello.get("appliance"), socket=app.context.service),
            words(
                "status.policy",
                policy=hello.get("policy"),
                sha256=str(hello.get("policy_sha256"))[:16],
            ),
            words("status.model", model=hello.get("model")),
        ]
        if app.link is not None:
            lines[1:1] = _network(app, app.link)
            if app.link.principal.may("audit.read"):
                lines.append(_verify(app, app.link))
        super().__init__(app, "panel.status", lines)


def _network(app: ApplianceApp, link: Link) -> list[str]:
    """The air gap as the service sees it; the reasons are the service's own words."""
    try:
        status = link.call("airgap", call="status")
    except ApplianceError as exc:
        return [app.words("status.network_unknown", reason=app.say(exc))]
    attestation = status.get("attestation") or {}
    reasons = [str(reason) for reason in attestation.get("reasons", [])][:4]
    gapped = attestation.get("airgapped")
    return [
        app.words("status.airgapped" if gapped else "status.not_airgapped"),
        *(f"          - {reason}" for reason in reasons),
    ]


def _verify(app: ApplianceApp, link: Link) -> str:
    try:
        report = link.call("audit", call="verify").get("report") or {}
    except ApplianceError as exc:
        return app.words("status.audit_failed", reason=app.say(exc))
    return app.words(
        "status.audit_verified", events=report.get("events"), checkpoints=report.get("checkpoints")
    )


class ConversationsPanel(ModalScreen[str | None]):
    """The user's saved conversations within their clearance: Enter opens, Delete removes."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", id="panel.close"),
        Binding("delete", "delete", "Delete", id="conversations.delete"),
    ]
    DEFAULT_CSS = """
    ConversationsPanel { align: center middle; }
    #panel { width: 76; height: auto; max-height: 20; border: round $primary; padding: 0 1;
             background: $surface; }
    #list { height: auto; max-height: 14; }
    """

    def __init__(self, app: ApplianceApp, link: Link) -> None:
        super().__init__()
        self.owner = app
        self.link = link

    def compose(self) -> ComposeResult:
        with Vertical(id="panel"):
            yield Static(f"[b]{self.owner.words('conversations.title')}[/]")
            yield OptionList(id="list")
            yield Static(self.owner.words("conversations.hint"), id="hint")

    def on_mount(self) -> None:
        localize_bindings(self, self.owner.ui_language)
        self._fill()
        self.query_one(OptionList).focus()

    def _fill(self) -> None:
        options = self.query_one(OptionList)
        options.clear_options()
        try:  # the service lists only those within the session's clearance
            listed = self.link.call("conversations", call="list").get("conversations") or []
        except ApplianceError as exc:
            listed = []
            self.owner.notify(self.owner.say(exc), severity="error")
        for summary in listed:
            when = time.strftime("%m-%d %H:%M", time.localtime(int(summary["updated_us"]) / 1e6))
            level = self.owner.level(str(summary["label"])).name(self.owner.ui_language)
            text = Content(f"{when}  {level}  {summary['title']}")  # titles are not markup
            options.add_option(Option(text, id=str(summary["id"])))
        if options.option_count == 0:
            options.add_option(Option(self.owner.words("conversations.empty"), disabled=True))
        else:
            options.highlighted = 0

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_delete(self) -> None:
        options = self.query_one(OptionList)
        if options.highlighted is None:
            return
        option = options.get_option_at_index(options.highlighted)
        if option.id is not None:
            try:
                self.link.call("conversations", call="delete", saved_id=option.id)
            except ApplianceError as exc:
                self.owner.notify(self.owner.say(exc), severity="error")
            self._fill()

    def action_close(self) -> None:
        self.dismiss(None)
