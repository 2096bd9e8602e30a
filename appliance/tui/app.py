"""The application: sign in, then chat; an idle session returns to sign-in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from textual.app import App
from textual.binding import Binding, BindingType

from appliance.audit import AuditLog
from appliance.engine import Engine
from appliance.identity import Principal
from appliance.policy import Policy
from appliance.session import Session
from appliance.tui.audit import AuditScreen
from appliance.tui.chat import ChatScreen
from appliance.tui.login import LoginScreen
from appliance.tui.panels import HelpPanel, StatusPanel


@dataclass
class AppContext:
    """What the UI is started with: opened and checked before anything is drawn."""

    home: Path
    policy: Policy
    log: AuditLog
    engine: Engine
    model: str  # the audit log's name for it
    airgap: str  # the attestation, for the status bar
    account: str  # the local account (development mode)


class ApplianceApp(App[None]):
    TITLE = "Sovereign AI appliance"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f1", "help", "Help", id="help"),
        Binding("f4", "status", "Status", id="status"),
    ]

    def __init__(self, context: AppContext) -> None:
        super().__init__()
        self.context = context

    def on_mount(self) -> None:
        self.push_screen(LoginScreen())

    def start_session(self, principal: Principal) -> None:
        policy = self.context.policy
        clearance = policy.level(principal.clearance)
        default = policy.level(policy.default_level)
        level = default if default.rank <= clearance.rank else policy.lowest
        if not principal.may("ask") and principal.may("audit.read"):
            self.push_screen(AuditScreen(principal))  # officers and admins do not chat
            return
        session = Session(
            self.context.engine, self.context.log, policy, principal, self.context.model, level
        )
        self.push_screen(ChatScreen(session))

    def action_help(self) -> None:
        keys = [
            (binding.key, binding.description)
            for binding in self.screen.BINDINGS
            if isinstance(binding, Binding) and binding.show
        ]
        self.push_screen(HelpPanel([*keys, ("f1", "Help"), ("f4", "Status")]))

    def action_status(self) -> None:
        self.push_screen(StatusPanel(self))

    def sign_out(self) -> None:
        while not isinstance(self.screen, LoginScreen):
            self.pop_screen()
