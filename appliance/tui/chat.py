"""The chat screen: answers stream into Markdown under classification banners.

The service runs each turn (DLP, labels, audit) and keeps the conversation;
a worker thread reads its answer into a buffer, and a 50 ms timer on the UI
thread moves the buffer into the Markdown stream, so the screen is never
written once per token. The service saves each finished turn to the user's
encrypted conversation store, as it checked it (redacted). An answer the
policy stops after text was shown is withdrawn from the screen.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from typing import Any, ClassVar

from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message as TextualMessage
from textual.widgets import Footer, Markdown, Static, TextArea
from textual.widgets.markdown import MarkdownStream

from appliance.errors import ApplianceError, AuthenticationError
from appliance.policy import Level
from appliance.service import Answer
from appliance.tui.audit import AuditScreen
from appliance.tui.banner import Banner
from appliance.tui.documents import DocumentsScreen
from appliance.tui.link import CONVERSATION, Link
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
        Binding("f7", "documents", "Documents", id="documents", priority=True),
    ]
    DEFAULT_CSS = """
    #log { height: 1fr; padding: 0 1; }
    .user { color: $accent; text-style: bold; margin-top: 1; }
    #notice { color: $error; height: auto; padding: 0 1; }
    #status { height: auto; background: $panel; color: $text-muted; padding: 0 1; }
    """

    def __init__(self, link: Link) -> None:
        super().__init__()
        self.link = link
        self.label: Level | None = None  # the highest label this conversation reached
        self.turns = 0  # finished exchanges in this conversation
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._answer_stream: Answer | None = None  # the answer being written
        self._answering = False
        self._cancelled = False  # Escape before the service took the question
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

    @property
    def level(self) -> Level:
        """The session's level, chosen at sign-in."""
        return self.owner.level(self.link.level_id)

    @property
    def busy(self) -> bool:
        """An answer is being written."""
        return self._answering

    def allows(self, binding_id: str) -> bool:
        """What the command palette offers: the audit log and the documents only to roles
        that may use them."""
        needs = {"audit": "audit.read", "documents": "documents.use"}.get(binding_id)
        return needs is None or self.link.principal.may(needs)

    def _status(self) -> str:
        owner, principal = self.owner, self.link.principal
        role = owner.words("chat.dev") if principal.dev else principal.role
        network = owner.words("chat.airgapped" if owner.hello.get("airgapped") else "chat.network")
        model = owner.hello.get("model")
        return f"{principal.user} ({role}) · {owner.policy_name} · {network} · {model}"

    def _show_banners(self) -> None:
        language = self.owner.ui_language
        for banner in self.query(Banner):
            banner.show(self.level, self.label, language)

    def _notice(self, text: str) -> None:
        self.query_one("#notice", Static).update(text)

    # -- asking ---------------------------------------------------------------------------

    def on_prompt_area_submitted(self, event: PromptArea.Submitted) -> None:
        prompt = event.text.strip()
        if not prompt or self._answering:
            return
        self._answering, self._cancelled = True, False
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
        """The worker: answer text into the buffer; every widget change goes via the UI thread."""
        app = self.app
        options: dict[str, Any] = {
            "conversation": CONVERSATION,
            "max_tokens": self.owner.context.max_tokens,
            "seed": secrets.randbits(32),
            "save": True if self.link.saves_conversations else None,
        }
        result: dict[str, Any] | None = None
        error: ApplianceError | None = None
        shown = False
        try:
            with self.link.asking(prompt, **options) as answer:
                self._answer_stream = answer
                if self._cancelled:
                    answer.cancel()
                for piece in answer:
                    shown = True
                    with self._lock:
                        self._pending.append(piece)
                result = answer.result
        except ApplianceError as exc:
            error = exc
        finally:
            self._answer_stream = None
        app.call_from_thread(self._finished, result, error, shown)  # type: ignore[arg-type]

    async def _flush(self) -> None:
        with self._lock:
            text, self._pending = "".join(self._pending), []
        if text and self._stream is not None:
            await self._stream.write(text)
            self.query_one("#log", VerticalScroll).scroll_end(animate=False)

    async def _finished(
        self, result: dict[str, Any] | None, error: ApplianceError | None, shown: bool
    ) -> None:
        withdrawn = error is not None and shown  # stopped by the policy after text was shown
        if withdrawn:
            with self._lock:
                self._pending = []
        await self._flush()
        if self._stream is not None:
            await self._stream.stop()
        if self._answer is not None and (withdrawn or result is None):
            await self._answer.remove()
        self._answer = self._stream = None
        self._answering = False
        if result is not None and isinstance(result.get("label"), str):
            label = self.owner.level(result["label"])
            if self.label is None or label.rank > self.label.rank:
                self.label = label
        self._show_banners()
        if error is not None or result is None or result.get("outcome") != "ok":
            if error is not None:
                self._failed(error, withdrawn=withdrawn)
            self._restore_prompt()
            return
        self.turns += 1
        if isinstance(result.get("save_error"), str):
            self._notice(result["save_error"])

    def _failed(self, error: ApplianceError, *, withdrawn: bool = False) -> None:
        notice = f"{self.owner.words('chat.refused')}: {error}"
        if withdrawn:
            notice = f"{self.owner.words('chat.withdrawn')} {error}"
        self._notice(notice)
        if isinstance(error, AuthenticationError):  # the service ended the session
            self.owner.session_ended(self.link, error)

    def _restore_prompt(self) -> None:
        prompt = self.query_one("#prompt", PromptArea)
        prompt.text = self._prompt
        prompt.move_cursor(prompt.document.end)
        prompt.focus()

    # -- conversations --------------------------------------------------------------------

    def action_conversations(self) -> None:
        if not self.link.saves_conversations:
            self._notice(self.owner.words("chat.not_saved"))
            return
        if not self._answering:
            self.app.push_screen(ConversationsPanel(self.owner, self.link), self._open_conversation)

    async def _open_conversation(self, conversation_id: str | None) -> None:
        if conversation_id is None:
            return
        try:
            opened = self.link.call(
                "conversations", call="open", saved_id=conversation_id, conversation=CONVERSATION
            )
        except ApplianceError as exc:
            self._notice(str(exc))
            return
        self._clear()
        messages = opened.get("messages") or []
        self.label = self.owner.level(str(opened.get("label")))
        log = self.query_one("#log", VerticalScroll)
        for message in messages:
            if message.get("role") == "user":
                self._show_prompt(str(message.get("content")))
            elif message.get("role") == "assistant":
                await log.mount(Markdown(str(message.get("content"))))
        self.turns = sum(message.get("role") == "user" for message in messages)
        log.scroll_end(animate=False)
        self._show_banners()

    # -- actions ----------------------------------------------------------------------------

    def action_cancel(self) -> None:
        if self._answering:
            self._cancelled = True
            answer = self._answer_stream
            if answer is not None:
                answer.cancel()

    def action_audit(self) -> None:
        """Officers and admins only; an operator's attempt is refused (and audited) by
        the service."""
        principal = self.link.principal
        if principal.may("audit.read"):
            self.app.push_screen(AuditScreen(self.link))
            return
        with contextlib.suppress(ApplianceError):
            self.link.call("audit", call="key")
        self._notice(f"{principal.user} ({principal.role}) {self.owner.words('chat.audit_denied')}")

    def action_documents(self) -> None:
        """Operators' own documents; another role's attempt is refused (and audited) by
        the service."""
        if self._answering:  # the answer holds the link until it ends
            return
        principal = self.link.principal
        if principal.may("documents.use"):
            self.app.push_screen(DocumentsScreen(self.link))
            return
        with contextlib.suppress(ApplianceError):
            self.link.call("docs", call="list")
        notice = self.owner.words("chat.documents_denied")
        self._notice(f"{principal.user} ({principal.role}) {notice}")

    def on_prompt_area_recall(self, event: PromptArea.Recall) -> None:
        """Walk back and forth through the prompts sent in this session."""
        if not self._sent:
            return
        self._recall = max(0, min(len(self._sent), self._recall + event.step))
        field = self.query_one("#prompt", PromptArea)
        field.text = self._sent[self._recall] if self._recall < len(self._sent) else ""
        field.move_cursor(field.document.end)

    def action_reset(self) -> None:
        if not self._answering:
            try:
                self.link.call("reset", conversation=CONVERSATION)
            except ApplianceError as exc:
                self._notice(str(exc))
                return
            self._clear()
            self._show_banners()

    def _clear(self) -> None:
        self.label, self.turns = None, 0
        self.query_one("#log", VerticalScroll).remove_children()
