"""The application: sign in, then the screen of the user's role.

The UI is a client of the appliance service, whether a real one owns the
home or the UI started it in its own process (`service.embedded_service`):
the service signs users in, runs the policy and writes the audit log. It ends
a session that is idle or whose account changed; the UI checks in with it
every few seconds and returns to sign-in when it has.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from textual import events, work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.command import CommandPalette
from textual.screen import Screen

from appliance.config import export_folder
from appliance.errors import ApplianceError, AuthenticationError
from appliance.policy import Level
from appliance.tui.audit import AuditScreen
from appliance.tui.chat import ChatScreen
from appliance.tui.link import Link, greet, levels_of
from appliance.tui.login import LoginScreen
from appliance.tui.messages import say
from appliance.tui.panels import HelpPanel, StatusPanel
from appliance.tui.text import localize_bindings, words
from appliance.tui.users import UsersScreen

CHECK_SECONDS = 5.0


@dataclass
class AppContext:
    """What the UI is started with."""

    service: Path  # the socket of the appliance service it is a client of
    language: str | None = None  # None: the service's (the site's, else the policy's)
    keymap: dict[str, str] = field(default_factory=dict)  # binding id -> keys; else the site's
    max_tokens: int = 512  # the longest answer, in tokens
    trusted: str | None = None  # an officer's trusted checkpoint, for F2
    exports: Path | None = None  # drafts and audit exports; None: the site's folder


class ApplianceApp(App[None]):
    TITLE = "Sovereign AI appliance"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f1", "help", "Help", id="help"),
        Binding("f4", "status", "Status", id="status"),
        Binding("ctrl+q", "quit", "Quit", id="quit"),
        # Textual's own, declared here so that its footer words follow the UI's language.
        Binding("ctrl+p", "command_palette", "palette", show=False, priority=True, id="palette"),
    ]

    def __init__(self, context: AppContext) -> None:
        super().__init__()
        self.context = context
        self.hello: dict[str, Any] = greet(context.service)
        self.levels: list[Level] = levels_of(self.hello)
        self.ui_language = context.language or str(self.hello.get("language") or "en")
        self.link: Link | None = None  # the signed-in session
        self._active = False  # a key or click since the last check with the service
        localize_bindings(self, self.ui_language)
        self.title = self.words("login.title")  # the terminal's title, too
        keymap = context.keymap or self.hello.get("keymap") or {}
        if keymap:
            self.set_keymap(keymap)

    def words(self, key: str, **fields: object) -> str:
        return words(self.ui_language, key, **fields)

    def say(self, error: ApplianceError) -> str:
        """An error or refusal in the UI's language, its levels by their names."""
        names = {level.id: level.name(self.ui_language) for level in self.levels}
        return say(error, self.ui_language, names)

    def level(self, level_id: str) -> Level:
        for level in self.levels:
            if level.id == level_id:
                return level
        return self.levels[-1]  # unknown to this UI: shown as the highest, never lower

    def exports(self) -> Path:
        """Where drafts and audit exports go: --exports, else the site's export folder
        (from the service), else ~/appliance-exports."""
        exports = self.hello.get("exports")
        return self.context.exports or export_folder(exports if isinstance(exports, str) else None)

    @property
    def policy_name(self) -> str:
        return str(self.hello.get("policy"))

    def on_mount(self) -> None:
        self.push_screen(LoginScreen())
        self.set_interval(CHECK_SECONDS, self.check_session)

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key | events.MouseDown):  # activity, whichever screen
            self._active = True
        await super().on_event(event)

    def check_session(self) -> None:
        """Ask the service whether the session holds; a timer runs it on every screen."""
        link = self.link
        if link is not None:
            active, self._active = self._active, False
            self._check(link, active)

    @work(thread=True, group="check")
    def _check(self, link: Link, active: bool) -> None:
        try:
            link.check(active=active)
        except ApplianceError as exc:
            self.call_from_thread(self.session_ended, link, exc)

    def session_ended(self, link: Link, error: ApplianceError) -> None:
        """The service ended the session (idle, account changed, stopped): sign-in again."""
        if self.link is not link:
            return
        if isinstance(self.screen, ChatScreen):
            self.screen.action_cancel()
        code = getattr(error, "code", None)
        if code in ("idle", "no_sign_in"):
            notice = self.words("login.idle")
        elif isinstance(error, AuthenticationError):
            notice = self.words("login.changed")
        else:
            notice = self.say(error)
        self.sign_out(notice=notice)

    def start_session(self, link: Link) -> None:
        """The screen of the role: operators chat, officers audit, admins manage users."""
        self.link = link
        self._active = False
        principal = link.principal
        if principal.may("ask"):
            self.push_screen(ChatScreen(link))
        elif principal.may("users.manage"):
            self.push_screen(UsersScreen(link))
        else:
            self.push_screen(AuditScreen(link))

    def sign_out(self, notice: str | None = None) -> None:
        """Back to sign-in; the service records the logout."""
        link, self.link = self.link, None
        if link is not None:
            self.run_worker(link.sign_out, thread=True, group="sign_out")
        while not isinstance(self.screen, LoginScreen):
            self.pop_screen()
        if notice is not None:
            self.screen.show_message(notice)

    def on_unmount(self) -> None:
        link, self.link = self.link, None
        if link is not None:
            link.sign_out()

    def action_help(self) -> None:
        keys = [
            (binding.key, binding.description)
            for _, binding in self.screen._bindings  # with their localized descriptions
            if binding.show
        ]
        app_keys = [(b.key, b.description) for _, b in self._bindings if b.show and b.id]
        self.push_screen(HelpPanel(self, [*keys, *app_keys]))

    def action_command_palette(self) -> None:
        """Textual's command palette, its prompt in the UI's language."""
        if self.use_command_palette and not CommandPalette.is_open(self):  # type: ignore[arg-type]
            placeholder = self.words("palette.search")
            self.push_screen(CommandPalette(placeholder=placeholder, id="--command-palette"))

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
        if self.link is not None and "sign_out" not in offered:
            yield SystemCommand(self.words("sign_out"), "", self.action_sign_out)

    def action_sign_out(self) -> None:
        self.sign_out()
