"""The application: sign in, then the screen of the user's role.

Whatever the screen, the policy's idle timeout and any change to the signed-in
account (locked, password reset) return to sign-in.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from textual import events
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen

from appliance.audit import Actor, AuditLog, Event
from appliance.conversations import Conversations
from appliance.engine import Engine
from appliance.errors import AuthenticationError
from appliance.identity import Principal, check_account
from appliance.policy import Policy
from appliance.session import Session
from appliance.tui.audit import AuditScreen
from appliance.tui.chat import ChatScreen
from appliance.tui.login import LoginScreen
from appliance.tui.panels import HelpPanel, StatusPanel
from appliance.tui.text import localize_bindings, words
from appliance.tui.users import UsersScreen

ACCOUNT_CHECK_SECONDS = 15.0


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
    language: str | None = None  # None: the policy's
    demo: bool = False  # a demonstration home: say so on every screen
    keymap: dict[str, str] = field(default_factory=dict)  # binding id -> keys
    max_tokens: int = 512  # the longest answer, in tokens


class ApplianceApp(App[None]):
    TITLE = "Sovereign AI appliance"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f1", "help", "Help", id="help"),
        Binding("f4", "status", "Status", id="status"),
        Binding("ctrl+q", "quit", "Quit", id="quit"),
    ]

    def __init__(self, context: AppContext) -> None:
        super().__init__()
        self.context = context
        self.ui_language = context.language or context.policy.language
        self.principal: Principal | None = None
        self.session: Session | None = None  # an operator's chat session
        self.last_active = time.monotonic()
        localize_bindings(self, self.ui_language)
        if context.keymap:
            self.set_keymap(context.keymap)

    def words(self, key: str, **fields: object) -> str:
        return words(self.ui_language, key, **fields)

    def on_mount(self) -> None:
        self.push_screen(LoginScreen())
        self.set_interval(ACCOUNT_CHECK_SECONDS, self.check_session)

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key | events.MouseDown):  # activity, whichever screen
            self.last_active = time.monotonic()
            if self.session is not None:
                self.session.last_active = self.last_active
        await super().on_event(event)

    def check_session(self) -> bool:
        """Sign out an idle session, or one whose account changed; whether it still holds.

        Screens call it before each action; a timer calls it on every screen.
        """
        principal = self.principal
        if principal is None:
            return False
        busy = bool(getattr(self.screen, "busy", False))  # an answer being written
        timeout = self.context.policy.idle_timeout_minutes * 60
        if not busy and time.monotonic() - self.last_active > timeout:
            self.sign_out("idle")
            return False
        try:
            check_account(self.context.home, principal)
        except AuthenticationError:
            cancel = getattr(self.screen, "action_cancel", None)
            if busy and cancel is not None:
                cancel()
            self.sign_out("account changed")
            return False
        return True

    def start_session(self, principal: Principal, conversations: Conversations | None) -> None:
        """The screen of the role: operators chat, officers audit, admins manage users."""
        self.principal = principal
        self.last_active = time.monotonic()
        policy = self.context.policy
        clearance = policy.level(principal.clearance)
        default = policy.level(policy.default_level)
        level = default if default.rank <= clearance.rank else policy.lowest
        if principal.may("ask"):
            context = self.context
            session = Session(
                context.home, context.engine, context.log, policy, principal, context.model, level
            )
            self.session = session
            self.push_screen(ChatScreen(session, conversations))
        elif principal.may("users.manage"):
            self.push_screen(UsersScreen(principal))
        else:
            self.push_screen(AuditScreen(principal))

    def sign_out(self, reason: str | None = "user", notice: str | None = None) -> None:
        """Back to sign-in; `reason` None when the logout is recorded already."""
        principal, self.principal, self.session = self.principal, None, None
        if principal is not None and reason is not None:
            actor = Actor(principal.user, principal.role)
            self.context.log.record(Event(actor, "logout", details={"reason": reason}))
        while not isinstance(self.screen, LoginScreen):
            self.pop_screen()
        if notice is None and reason in ("idle", "account changed"):
            notice = self.words("login.idle" if reason == "idle" else "login.changed")
        if notice is not None:
            self.screen.show_message(notice)

    def action_help(self) -> None:
        keys = [
            (binding.key, binding.description)
            for _, binding in self.screen._bindings  # with their localized descriptions
            if binding.show
        ]
        app_keys = [(b.key, b.description) for _, b in self._bindings if b.show and b.id]
        self.push_screen(HelpPanel(self, [*keys, *app_keys]))

    def action_status(self) -> None:
        self.push_screen(StatusPanel(self))

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        """Only the commands of the current screen that the signed-in role may use."""
        allows = getattr(screen, "allows", lambda binding_id: True)
        offered = set()
        for node in (screen, self):
            for _, binding in node._bindings:  # the localized descriptions
                if binding.show and binding.id not in offered and allows(binding.id):
                    offered.add(binding.id)
                    action = functools.partial(node.run_action, binding.action)
                    yield SystemCommand(binding.description, binding.key, action)
        if self.principal is not None and "sign_out" not in offered:
            yield SystemCommand(self.words("sign_out"), "", self.action_sign_out)

    def action_sign_out(self) -> None:
        self.sign_out()
