"""The chat screen: answers stream into Markdown under classification banners.

A worker thread runs the turn through the session pipeline and only appends
text to a buffer; a 50 ms timer on the UI thread moves the buffer into the
Markdown stream, so the screen is never written once per token. Each finished
turn is saved to the user's encrypted conversation store, as the session
checked it (redacted). An answer stopped because its label rose above the
user's clearance is withdrawn from the screen; it is never saved.
"""

from __future__ import annotations

import secrets
import threading
from typing import ClassVar

from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message as TextualMessage
from textual.widgets import Footer, Markdown, Static, TextArea
from textual.widgets.markdown import MarkdownStream

from appliance.audit import Event
from appliance.config import GenerationParams
from appliance.conversations import Conversations
from appliance.errors import ApplianceError, AuthenticationError
from appliance.session import Conversation, Session, Turn
from appliance.tui.audit import AuditScreen
from appliance.tui.banner import Banner
from appliance.tui.panels import ConversationsPanel
from appliance.tui.screen import ApplianceScreen
from appliance.tui.text import localize_bindings

FLUSH_SECONDS = 0.05


class PromptArea(TextArea):
    """Multi-line prompt: Enter sends, Ctrl+J starts a new line, Up/Down at the edges
    walk the prompt history."""

    DEFAULT_CSS = """
    PromptArea { height: auto; min-height: 3; max-height: 8; }
    """

    class Submitted(TextualMessage):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class Recall(TextualMessage):
        def __init__(self, step: int) -> None:
            super().__init__()
            self.step = step

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            self.post_message(self.Submitted(self.text))
        elif event.key in ("ctrl+j", "shift+enter"):
            self.insert("\n")
        elif event.key == "up" and self.cursor_location[0] == 0:
            self.post_message(self.Recall(-1))
        elif event.key == "down" and self.cursor_location[0] == self.document.line_count - 1:
            self.post_message(self.Recall(1))
        else:
            await super()._on_key(event)
            return
        event.stop()
        event.prevent_default()


class ChatScreen(ApplianceScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel answer", id="cancel"),
        Binding("ctrl+n", "reset", "New conversation", id="reset"),
        Binding("f6", "conversations", "Conversations", id="conversations", priority=True),
        Binding("f5", "audit", "Audit log", id="audit"),
    ]
    DEFAULT_CSS = """
    #log { height: 1fr; padding: 0 1; }
    .user { color: $accent; text-style: bold; margin-top: 1; }
    #notice { color: $error; height: auto; padding: 0 1; }
    #status { height: auto; background: $panel; color: $text-muted; padding: 0 1; }
    """

    def __init__(self, session: Session, conversations: Conversations | None = None) -> None:
        super().__init__()
        self.session = session
        self.conversations = conversations
        self.conversation_id: str | None = None
        self.conversation = Conversation()  # redacted messages and the highest label so far
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._turn: Turn | None = None
        self._answer: Markdown | None = None
        self._stream: MarkdownStream | None = None
        self._prompt = ""
        self._sent: list[str] = []  # prompts of this session, for Up and Down
        self._recall = 0

    def compose(self) -> ComposeResult:
        yield Banner(id="top")
        yield VerticalScroll(id="log")
        yield Static("", id="notice", markup=False)
        yield PromptArea(
            placeholder=self.owner.words("chat.placeholder"), id="prompt", soft_wrap=True
        )
        yield Static(self._status(), id="status", markup=False)
        yield Banner(id="bottom")
        yield Footer()

    def on_mount(self) -> None:
        localize_bindings(self, self.owner.ui_language)
        self._show_banners()
        self.set_interval(FLUSH_SECONDS, self._flush)
        self.query_one("#prompt", PromptArea).focus()

    def on_unmount(self) -> None:
        if self.conversations is not None:
            self.conversations.close()

    @property
    def busy(self) -> bool:
        """An answer is being written (the idle timeout waits for it)."""
        return self._turn is not None

    def allows(self, binding_id: str) -> bool:
        """What the command palette offers: the audit log only to roles that may read it."""
        return binding_id != "audit" or self.session.principal.may("audit.read")

    def _status(self) -> str:
        owner, principal = self.owner, self.session.principal
        context = owner.context
        role = owner.words("chat.dev") if principal.dev else principal.role
        network = owner.words(
            "chat.airgapped" if context.airgap == "air-gapped" else "chat.network"
        )
        return (
            f"{principal.user} ({role}) · {context.policy.describe()} · {network} · {context.model}"
        )

    def _show_banners(self) -> None:
        language = self.owner.ui_language
        for banner in self.query(Banner):
            banner.show(self.session.level, self.conversation.label, language)

    def _notice(self, text: str) -> None:
        self.query_one("#notice", Static).update(text)

    # -- asking ---------------------------------------------------------------------------

    def on_prompt_area_submitted(self, event: PromptArea.Submitted) -> None:
        prompt = event.text.strip()
        if not prompt or self._turn is not None:
            return
        self.query_one("#prompt", PromptArea).clear()
        self._prompt = prompt
        self._sent.append(prompt)
        self._recall = len(self._sent)
        self._notice("")
        self._show_prompt(prompt)
        self._answer = Markdown()
        self.query_one("#log", VerticalScroll).mount(self._answer)
        self._stream = Markdown.get_stream(self._answer)
        self._run(prompt)

    def _show_prompt(self, prompt: str) -> None:
        self.query_one("#log", VerticalScroll).mount(Static(prompt, classes="user", markup=False))

    @work(thread=True, exclusive=True, group="turn")
    def _run(self, prompt: str) -> None:
        """The worker: turn text into the buffer; every widget change goes via the UI thread."""
        app = self.app
        try:
            max_tokens = self.owner.context.max_tokens
            params = GenerationParams(max_tokens=max_tokens, seed=secrets.randbits(32))
            turn = self.session.turn(self.conversation, prompt, params)
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
        withdrawn = turn.outcome == "denied"
        if withdrawn:  # what was shown may be above the clearance: none of it stays
            with self._lock:
                self._pending = []
        await self._flush()
        if self._stream is not None:
            await self._stream.stop()
        if self._answer is not None:
            if withdrawn:
                await self._answer.remove()
            else:
                await self._answer.update(turn.text)
        self._answer = self._stream = None
        self._turn = None
        self._show_banners()
        if error is not None or turn.outcome != "ok":
            if error is not None:
                self._failed(error, False)
            if withdrawn:
                self._notice(f"{self.owner.words('chat.withdrawn')} {error or ''}".strip())
            self._restore_prompt()
            return
        self._save()

    def _failed(self, error: ApplianceError, before_answer: bool) -> None:
        self._notice(f"{self.owner.words('chat.refused')}: {error}")
        if before_answer:
            self._turn = None
            self._restore_prompt()
        if isinstance(error, AuthenticationError):  # the session recorded the logout
            self.owner.sign_out(None, notice=str(error))

    def _restore_prompt(self) -> None:
        prompt = self.query_one("#prompt", PromptArea)
        prompt.text = self._prompt
        prompt.move_cursor(prompt.document.end)
        prompt.focus()

    # -- conversations --------------------------------------------------------------------

    def _save(self) -> None:
        conversation = self.conversation
        if self.conversations is None or conversation.label is None:
            return
        try:
            self.conversation_id = self.conversations.save(
                self.conversation_id, conversation.messages, conversation.label.id
            )
        except ApplianceError as exc:
            self._notice(str(exc))

    def action_conversations(self) -> None:
        if self.conversations is None:
            self._notice(self.owner.words("chat.not_saved"))
            return
        if self._turn is not None:
            return
        clearance = self.session.clearance
        visible = {level.id for level in self.session.policy.levels if level.rank <= clearance.rank}
        self.app.push_screen(
            ConversationsPanel(self.owner, self.conversations, visible), self._open_conversation
        )

    async def _open_conversation(self, conversation_id: str | None) -> None:
        if conversation_id is None or self.conversations is None:
            return
        try:
            messages, label = self.conversations.load(conversation_id)
        except ApplianceError as exc:
            self._notice(str(exc))
            return
        self.action_reset()
        self.conversation_id = conversation_id
        self.conversation = Conversation(None, messages, self.session.policy.level(label))
        log = self.query_one("#log", VerticalScroll)
        for message in messages:
            if message.role == "user":
                self._show_prompt(message.content)
            elif message.role == "assistant":
                await log.mount(Markdown(message.content))
        log.scroll_end(animate=False)
        self._show_banners()

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
        self._notice(f"{principal.user} ({principal.role}) {self.owner.words('chat.audit_denied')}")

    def on_prompt_area_recall(self, event: PromptArea.Recall) -> None:
        """Walk back and forth through the prompts sent in this session."""
        if not self._sent:
            return
        self._recall = max(0, min(len(self._sent), self._recall + event.step))
        field = self.query_one("#prompt", PromptArea)
        field.text = self._sent[self._recall] if self._recall < len(self._sent) else ""
        field.move_cursor(field.document.end)

    def action_reset(self) -> None:
        if self._turn is None:
            self.conversation = Conversation()
            self.conversation_id = None
            self.query_one("#log", VerticalScroll).remove_children()
            self._show_banners()
