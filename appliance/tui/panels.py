"""Help (F1) and status (F4): what the keys do here, and the appliance's own checks."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from appliance.errors import ApplianceError
from appliance.policy.airgap import attest

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

    def __init__(self, title: str, lines: list[str]) -> None:
        super().__init__()
        self.title_text = title
        self.lines = lines

    def compose(self) -> ComposeResult:
        with Vertical(id="panel"):
            yield Static(f"[b]{self.title_text}[/]  (Esc closes)")
            yield Static("\n".join(self.lines), markup=False, id="body")


class HelpPanel(_Panel):
    """The keys of the screen below, as its bindings declare them."""

    def __init__(self, screen_bindings: list[tuple[str, str]]) -> None:
        lines = [f"{key:>10}  {description}" for key, description in screen_bindings]
        super().__init__("Keys", [*lines, "", "     ctrl+p  command palette"])


class StatusPanel(_Panel):
    """The appliance's own checks: network, policy, audit log, model."""

    def __init__(self, app: ApplianceApp) -> None:
        context = app.context
        network = attest()
        lines = [
            f"network   {'air-gapped' if network.airgapped else 'NOT air-gapped'}",
            *(f"          - {reason}" for reason in network.reasons[:4]),
            f"policy    {context.policy.describe()} (sha256 {context.policy.sha256[:16]}...)",
            f"model     {context.model}",
            f"audit     {_verify(app)}",
        ]
        super().__init__("Status", lines)


def _verify(app: ApplianceApp) -> str:
    try:
        report = app.context.log.verify()
    except ApplianceError as exc:
        return f"FAILED: {exc}"
    return f"verified, {report.events} events, {report.checkpoints} signed checkpoints"
