"""The chat screen: answers stream into Markdown under classification banners.

The service runs each turn (DLP, labels, audit) and keeps the conversation; a
worker thread reads its answer into the `AnswerView`. The service saves each
finished turn to the user's encrypted conversation store, as it checked it
(redacted). An answer the policy stops after text was shown is withdrawn from
the screen.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Footer, Markdown, Static

from appliance.config import ensure_dir
from appliance.errors import ApplianceError, AuthenticationError
from appliance.identity import ROLES
from appliance.policy import Level
from appliance.service import Answer, RemoteDocuments
from appliance.tui.answer_view import FLUSH_SECONDS, AnswerView
from appliance.tui.audit import AuditScreen
from appliance.tui.banner import Banner
from appliance.tui.documents import DocumentsScreen
from appliance.tui.drafts import NO_TASK, DraftChoice, SaveDraftForm, TaskPicker, task_name
from appliance.tui.link import CONVERSATION, Link
from appliance.tui.panels import ConversationsPanel
from appliance.tui.password import change_own_password
from appliance.tui.prompt import PromptArea
from appliance.tui.screen import ApplianceScreen
from appliance.tui.sources import PassagePanel, SourcePicker, SourcesView
from appliance.tui.text import localize_bindings


class ChatScreen(ApplianceScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel answer", id="cancel"),
        Binding("ctrl+n", "reset", "New conversation", id="reset"),
        Binding("f6", "conversations", "Conversations", id="conversations", priority=True),
        Binding("f5", "audit", "Audit log", id="audit"),
        Binding("f3", "task", "Task preset", id="task"),
        Binding("f2", "grounded", "Answer from documents", id="grounded"),
        Binding("f9", "save_draft", "Save draft", id="draft"),
        Binding("f10", "sources", "Open source", id="sources"),
        Binding("f7", "documents", "Documents", id="documents", priority=True),
        Binding("f8", "password", "Password", id="password"),
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
        self.preset: str | None = None  # the policy's task preset this conversation follows
        self.grounded = False  # answers from the user's documents, sources listed under them
        self._sources: list[dict[str, Any]] = []  # the last answer's, for F10
        self._answer_stream: Answer | None = None  # the answer being written
        self._answering = False
        self._cancelled = False  # Escape before the service took the question
        self._view: AnswerView | None = None
        self._prompt = ""

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
        self._view = AnswerView(self.query_one("#log", VerticalScroll))
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
        needs = {
            "audit": "audit.read", "documents": "documents.use", "draft": "drafts.save",
            "grounded": "documents.use", "sources": "documents.use",
        }.get(binding_id)  # fmt: skip
        return needs is None or self.link.principal.may(needs)

    def _status(self) -> str:
        owner, principal = self.owner, self.link.principal
        role = owner.words("chat.dev") if principal.dev else self._role()
        network = owner.words("chat.airgapped" if owner.hello.get("airgapped") else "chat.network")
        model = owner.hello.get("model")
        status = f"{principal.user} ({role}) · {owner.policy_name} · {network} · {model}"
        if self.grounded:
            status += f" · {owner.words('grounded.status')}"
        return status + (f" · {task_name(owner, self.preset)}" if self.preset else "")

    def _role(self) -> str:
        role = self.link.principal.role
        return self.owner.words(f"role.{role}") if role in ROLES else role

    def _show_banners(self) -> None:
        language = self.owner.ui_language
        for banner in self.query(Banner):
            banner.show(self.level, self.label, language)

    def _notice(self, text: str) -> None:
        self.query_one("#notice", Static).update(text)

    # -- asking ---------------------------------------------------------------------------

    def on_prompt_area_submitted(self, event: PromptArea.Submitted) -> None:
        prompt = event.text.strip()
        if self._answering:  # the prompt stays in its field for when the answer ends
            self._notice(self.owner.words("chat.still_answering"))
            return
        if not prompt:
            return
        self._answering, self._cancelled = True, False
        field = self.query_one("#prompt", PromptArea)
        field.clear()
        field.remember(prompt)
        self._prompt = prompt
        self._notice("")
        self._show_prompt(prompt)
        assert self._view is not None  # made at mount
        self._view.start()
        self._run(prompt)

    def _show_prompt(self, prompt: str) -> None:
        self.query_one("#log", VerticalScroll).mount(Static(prompt, classes="user", markup=False))

    @work(thread=True, exclusive=True, group="turn")
    def _run(self, prompt: str) -> None:
        """The worker: answer text into the buffer; every widget change goes via the UI thread."""
        app, view = self.app, self._view
        assert view is not None
        options: dict[str, Any] = {
            "conversation": CONVERSATION,
            "max_tokens": self.owner.context.max_tokens,
            "seed": secrets.randbits(32),
            "save": True if self.link.saves_conversations else None,
            "task": self.preset,
            "docs": True if self.grounded else None,
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
                    view.feed(piece)
                result = answer.result
        except ApplianceError as exc:
            error = exc
        finally:
            self._answer_stream = None
        app.call_from_thread(self._finished, result, error, shown)  # type: ignore[arg-type]

    async def _flush(self) -> None:
        if self._view is not None:
            await self._view.flush()

    async def _finished(
        self, result: dict[str, Any] | None, error: ApplianceError | None, shown: bool
    ) -> None:
        withdrawn = error is not None and shown  # stopped by the policy after text was shown
        if self._view is not None:
            await self._view.end(keep=not withdrawn and result is not None)
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
        sources = result.get("sources")
        listed = sources if isinstance(sources, list) else []
        self._sources = [source for source in listed if isinstance(source, dict)]
        if self._sources:
            log = self.query_one("#log", VerticalScroll)
            await log.mount(SourcesView(self._sources, self.owner.ui_language))
            log.scroll_end(animate=False)
        if isinstance(result.get("save_error"), str):
            self._notice(result["save_error"])

    def _failed(self, error: ApplianceError, *, withdrawn: bool = False) -> None:
        said = self.owner.say(error)  # in the UI's language, from its code and parameters
        notice = f"{self.owner.words('chat.refused')}: {said}"
        if withdrawn:
            notice = f"{self.owner.words('chat.withdrawn')} {said}"
        self._notice(notice)
        if isinstance(error, AuthenticationError):  # the service ended the session
            self.owner.session_ended(self.link, error)

    def _restore_prompt(self) -> None:
        self.query_one("#prompt", PromptArea).restore(self._prompt)

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
            self._notice(self.owner.say(exc))
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
        self._notice(f"{principal.user} ({self._role()}) {self.owner.words('chat.audit_denied')}")

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
        self._notice(f"{principal.user} ({self._role()}) {notice}")

    def action_sources(self) -> None:
        """The last answer's sources, to open one at its passage."""
        if self._answering:  # the answer holds the link until it ends
            return
        if not self._sources:
            self._notice(self.owner.words("sources.none"))
            return
        self.app.push_screen(SourcePicker(self.owner, self._sources), self._open_source)

    def on_sources_view_picked(self, message: SourcesView.Picked) -> None:
        if not self._answering:
            self.app.push_screen(SourcePicker(self.owner, message.sources), self._open_source)

    def _open_source(self, source: dict[str, Any] | None) -> None:
        if source is None:
            return
        try:  # as the documents screen does: the service checks the user may read it
            shown = RemoteDocuments(self.link).show(str(source.get("document")), text=True)
        except ApplianceError as exc:
            self._failed(exc)
            return
        self.app.push_screen(PassagePanel(self.owner, source, shown))

    def action_grounded(self) -> None:
        """Answers from the user's documents, or not; roles without documents are refused
        (and audited) by the service at the first question."""
        if not self.link.principal.may("documents.use"):
            return
        self.grounded = not self.grounded
        self.query_one("#status", Static).update(self._status())
        self._notice(self.owner.words("grounded.on" if self.grounded else "grounded.off"))

    def action_task(self) -> None:
        """Pick a preset; a conversation keeps its system prompt, so a new one starts."""
        if not self._answering:
            self.app.push_screen(TaskPicker(self.owner, self.preset), self._pick_task)

    def _pick_task(self, picked: str | None) -> None:
        if picked is None:
            return
        task = None if picked == NO_TASK else picked
        if task == self.preset:
            return
        if self.turns and not self._reset():
            return
        self.preset = task
        self.query_one("#status", Static).update(self._status())
        name = task_name(self.owner, task) if task else self.owner.words("task.none")
        self._notice(self.owner.words("task.picked", task=name))

    def action_save_draft(self) -> None:
        if self._answering:
            self._notice(self.owner.words("chat.still_answering"))
        elif not self.turns:
            self._notice(self.owner.words("draft.nothing"))
        else:
            form = SaveDraftForm(self.owner, str(self.owner.exports()))
            self.app.push_screen(form, self._save_draft)

    def _save_draft(self, choice: DraftChoice | None) -> None:
        if choice is None:
            return
        try:
            target = ensure_dir(self.owner.exports()) / choice.name
            if os.path.lexists(target):
                self._notice(self.owner.words("draft.exists", path=target))
                return
            saved = self.link.draft_to(
                target, conversation=CONVERSATION, format=choice.format, whole=choice.whole
            )
        except ApplianceError as exc:
            self._notice(self.owner.say(exc))
            return
        label = self.owner.level(str(saved.get("label"))).name(self.owner.ui_language)
        copy = saved.get("copy")
        key = "draft.saved_copy" if copy else "draft.saved"
        self._notice(self.owner.words(key, path=target, label=label, copy=copy))

    def action_reset(self) -> None:
        if not self._answering:
            self._reset()

    def _reset(self) -> bool:
        try:
            self.link.call("reset", conversation=CONVERSATION)
        except ApplianceError as exc:
            self._notice(self.owner.say(exc))
            return False
        self._clear()
        self._show_banners()
        return True

    def _clear(self) -> None:
        self.label, self.turns = None, 0
        self._sources = []
        self.query_one("#log", VerticalScroll).remove_children()

    def action_password(self) -> None:
        """Change one's own password (F8); the service then ends the session."""
        change_own_password(self.owner, self.link)
