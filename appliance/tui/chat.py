"""The chat screen: answers stream into Markdown under classification banners.

A worker thread runs the turn through the session pipeline and only appends
text to a buffer; a 50 ms timer on the UI thread moves the buffer into the
Markdown stream, so the screen is never written once per token.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Input, Markdown, Static
from textual.widgets.markdown import MarkdownStream

from appliance.audit import Event
from appliance.config import GenerationParams
from appliance.engine import Message
from appliance.errors import ApplianceError, AuthenticationError
from appliance.policy import Level
from appliance.session import Session, Turn
from appliance.tui.audit import AuditScreen
from appliance.tui.banner import Banner

if TYPE_CHECKING:
    from appliance.tui.app import ApplianceApp

FLUSH_SECONDS = 0.05
IDLE_CHECK_SECONDS = 15.0


class ChatScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel answer", id="cancel"),
        Binding("ctrl+n", "reset", "New conversation", id="reset"),
        Binding("f5", "audit", "Audit log", id="audit"),
        Binding("up", "history(-1)", "Previous prompt", show=False, id="history.previous"),
        Binding("down", "history(1)", "Next prompt", show=False, id="history.next"),
        Binding("ctrl+q", "app.quit", "Quit", id="quit"),
    ]
    DEFAULT_CSS = """
    #log { height: 1fr; padding: 0 1; }
    .user { color: $accent; text-style: bold; margin-top: 1; }
    #notice { color: $error; height: auto; padding: 0 1; }
    #status { height: 1; background: $panel; color: $text-muted; padding: 0 1; }
    """

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self.history: list[Message] = []
        self.label: Level | None = None
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._turn: Turn | None = None
        self._answer: Markdown | None = None
        self._stream: MarkdownStream | None = None
        self._prompt = ""
        self._sent: list[str] = []  # prompts of this session, for Up and Down
        self._recall = 0

    @property
    def owner(self) -> ApplianceApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Banner(id="top")
        yield VerticalScroll(id="log")
        yield Static("", id="notice")
        yield Input(placeholder="Ask… (Enter sends, Esc cancels)", id="prompt")
        yield Static(self._status(), id="status")
        yield Banner(id="bottom")
        yield Footer()

    def on_mount(self) -> None:
        self._show_banners()
        self.set_interval(FLUSH_SECONDS, self._flush)
        self.set_interval(IDLE_CHECK_SECONDS, self._check_idle)
        self.query_one("#prompt", Input).focus()

    def _status(self) -> str:
        context, principal = self.owner.context, self.session.principal
        role = "DEVELOPMENT MODE" if principal.dev else principal.role
        network = "air-gapped" if context.airgap == "air-gapped" else "NETWORK PRESENT"
        return (
            f"{principal.user} ({role}) · {context.policy.describe()} · {network} · {context.model}"
        )

    def _show_banners(self) -> None:
        language = self.session.policy.language
        for banner in self.query(Banner):
            banner.show(self.session.level, self.label, language)

    # -- asking ---------------------------------------------------------------------------

    def on_input_submitted(self, event: Input.Submitted) -> None:
        prompt = event.value.strip()
        if not prompt or self._turn is not None:
            return
        event.input.value = ""
        self._prompt = prompt
        self._sent.append(prompt)
        self._recall = len(self._sent)
        self.query_one("#notice", Static).update("")
        log = self.query_one("#log", VerticalScroll)
        log.mount(Static(prompt, classes="user", markup=False))
        self._answer = Markdown()
        log.mount(self._answer)
        self._stream = Markdown.get_stream(self._answer)
        self.history.append(Message("user", prompt))
        self._run(list(self.history))

    @work(thread=True, exclusive=True, group="turn")
    def _run(self, messages: list[Message]) -> None:
        """The worker: turn text into the buffer; every widget change goes via the UI thread."""
        app = self.app
        try:
            params = GenerationParams(max_tokens=512, seed=secrets.randbits(32))
            turn = self.session.turn(messages, params)
        except ApplianceError as exc:
            app.call_from_thread(self._failed, exc, True)
            return
        self._turn = turn
        error: ApplianceError | None = None
        try:
            for piece in turn:
                with self._lock:
                    self._pending.append(piece)
        except ApplianceError as exc:
            error = exc
        finally:
            try:
                turn.close()
            except ApplianceError as exc:
                error = error or exc
        app.call_from_thread(self._finished, turn, error)  # type: ignore[arg-type]

    async def _flush(self) -> None:
        with self._lock:
            text, self._pending = "".join(self._pending), []
        if text and self._stream is not None:
            await self._stream.write(text)
            self.query_one("#log", VerticalScroll).scroll_end(animate=False)

    async def _finished(self, turn: Turn, error: ApplianceError | None) -> None:
        await self._flush()
        if self._stream is not None:
            await self._stream.stop()
        if self._answer is not None:
            await self._answer.update(turn.text)
        self._turn = None
        self.label = turn.label
        self._show_banners()
        cancelled = turn.outcome == "cancelled"
        if error is not None or cancelled:
            self.history.pop()
            if error is not None:
                self._failed(error, False)
            self._restore_prompt()
            return
        self.history.append(Message("assistant", turn.text))

    def _failed(self, error: ApplianceError, before_answer: bool) -> None:
        self.query_one("#notice", Static).update(str(error))
        if before_answer:
            self.history.pop()
            self._turn = None
            self._restore_prompt()
        if isinstance(error, AuthenticationError):  # idle: sign in again
            self.owner.sign_out()

    def _restore_prompt(self) -> None:
        prompt = self.query_one("#prompt", Input)
        prompt.value = self._prompt
        prompt.focus()

    def _check_idle(self) -> None:
        """Back to sign-in once the policy's idle timeout passes with no turn running."""
        if self._turn is None and self.session.idle():
            self.session.sign_out("idle")
            self.owner.sign_out()

    def on_key(self) -> None:
        self.session.last_active = time.monotonic()  # typing counts as activity

    # -- actions ----------------------------------------------------------------------------

    def action_cancel(self) -> None:
        if self._turn is not None:
            self._turn.cancel()

    def action_audit(self) -> None:
        """Officers and admins only; an operator's attempt is refused and audited."""
        principal = self.session.principal
        if principal.may("audit.read"):
            self.app.push_screen(AuditScreen(principal))
            return
        details = {"permission": "audit.read", "screen": "audit"}
        event = Event(self.session.actor, "policy_block", "audit log", "denied", details=details)
        self.session.audit.record(event)
        self.query_one("#notice", Static).update(
            f"{principal.user} ({principal.role}) may not open the audit log"
        )

    def action_history(self, step: int) -> None:
        """Walk back and forth through the prompts sent in this session."""
        if not self._sent:
            return
        self._recall = max(0, min(len(self._sent), self._recall + step))
        field = self.query_one("#prompt", Input)
        field.value = self._sent[self._recall] if self._recall < len(self._sent) else ""
        field.cursor_position = len(field.value)

    def action_reset(self) -> None:
        if self._turn is None:
            self.history.clear()
            self.query_one("#log", VerticalScroll).remove_children()
