"""The operator's documents screen: what they may read; add a file, details, remove.

The service parses, labels and stores each file and checks every request
(role, collection, clearance); the screen shows what it sends. The UI is the
user's own client, so it reads the file the user names itself and sends it.
An add runs in a thread worker that reports through messages and never waits
for the UI thread: while the service parses, the worker holds the link's turn,
and a UI thread that asked the link for something meanwhile (the status panel)
would otherwise wait for the worker as the worker waited for it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.markup import escape
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Input, ProgressBar, Select, Static

from appliance.errors import ApplianceError, AuthenticationError
from appliance.policy import Level
from appliance.service import RemoteDocuments
from appliance.textsafe import printable
from appliance.tui.banner import Banner, label_style
from appliance.tui.link import Link
from appliance.tui.messages import KINDS
from appliance.tui.screen import ApplianceScreen
from appliance.tui.text import localize_bindings

if TYPE_CHECKING:
    from appliance.tui.app import ApplianceApp

MAX_READ = 1 << 30  # bounds the read; the policy's own limit is the service's to check
# In the order RemoteDocuments.add reports them.
STAGES = ("upload", "parse", "label", "terms", "embed", "store")
COLUMNS = ("label", "name", "collection", "format", "pages", "date")
NAME_CELLS = 30  # a long file name is cut so the table fits 80 columns


class DocumentForm(ModalScreen[dict[str, str] | None]):
    """A file's path, the level declared (blank: the policy's) and a shared collection
    (blank: the user's own). Enter in a field adds, Esc closes."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Close", id="panel.close"),
    ]
    DEFAULT_CSS = """
    DocumentForm { align: center middle; }
    #form { width: 70; height: auto; border: round $primary; padding: 0 1; background: $surface; }
    #hint { color: $text-muted; }
    #error { color: $error; height: auto; }
    """

    def __init__(self, app: ApplianceApp, levels: list[Level]) -> None:
        super().__init__()
        self.owner = app
        self.levels = levels

    def compose(self) -> ComposeResult:
        words = self.owner.words
        language = self.owner.ui_language
        with Vertical(id="form"):
            yield Static(f"[b]{escape(words('documents.form_title'))}[/]")
            yield Input(placeholder=words("documents.path"), id="path")
            yield Select(
                [(level.name(language), level.id) for level in self.levels],
                prompt=words("documents.level"),
                id="level",
            )
            yield Input(placeholder=words("documents.target"), id="collection")
            yield Static(words("documents.form_hint"), id="hint")
            yield Static("", id="error", markup=False)

    def on_mount(self) -> None:
        localize_bindings(self, self.owner.ui_language)
        self.query_one("#path", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        words = self.owner.words
        error = self.query_one("#error", Static)
        text = self.query_one("#path", Input).value.strip()
        if not text:
            error.update(words("documents.need_path"))
            return
        path = Path(text).expanduser()
        shown = printable(str(path))
        try:  # the cheap checks here, so a mistyped path can be fixed in place
            regular = path.is_file()  # a FIFO or a device would hang or never end a read
            size = path.stat().st_size if regular else 0
        except OSError as exc:
            error.update(words("documents.unreadable", path=shown, reason=exc.strerror))
            return
        if not regular:
            error.update(words("documents.not_file", path=shown))
        elif size > MAX_READ:
            error.update(words("documents.too_large", path=shown, mib=MAX_READ >> 20))
        else:
            level = self.query_one("#level", Select).value
            self.dismiss(
                {
                    "path": str(path),
                    "level": level if isinstance(level, str) else "",
                    "collection": self.query_one("#collection", Input).value.strip(),
                }
            )

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmPanel(ModalScreen[bool]):
    """One question; Enter answers yes, Esc no."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "answer(True)", "Remove", id="documents.confirm_yes"),
        Binding("escape", "answer(False)", "Close", id="panel.close"),
    ]
    DEFAULT_CSS = """
    ConfirmPanel { align: center middle; }
    #panel { width: 70; height: auto; border: round $error; padding: 0 1; background: $surface; }
    #hint { color: $text-muted; }
    """

    def __init__(self, app: ApplianceApp, question: str) -> None:
        super().__init__()
        self.owner = app
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="panel"):
            yield Static(self.question, id="question", markup=False)
            yield Static(self.owner.words("documents.confirm_hint"), id="hint")

    def on_mount(self) -> None:
        localize_bindings(self, self.owner.ui_language)

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class DocumentPanel(ModalScreen[None]):
    """A document's details as the service described them."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,enter", "close", "Close", id="panel.close"),
    ]
    DEFAULT_CSS = """
    DocumentPanel { align: center middle; }
    #panel { width: 76; height: auto; max-height: 20; border: round $primary; padding: 0 1;
             background: $surface; }
    """

    def __init__(self, app: ApplianceApp, lines: list[str]) -> None:
        super().__init__()
        self.owner = app
        self.lines = lines

    def compose(self) -> ComposeResult:
        words = self.owner.words
        with Vertical(id="panel"):
            yield Static(f"[b]{escape(words('documents.details'))}[/]  {words('panel.esc')}")
            yield Static("\n".join(self.lines), markup=False, id="body")

    def on_mount(self) -> None:
        localize_bindings(self, self.owner.ui_language)

    def action_close(self) -> None:
        self.dismiss(None)


class DocumentsScreen(ApplianceScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "add", "Add file", id="documents.add"),
        Binding("enter", "show", "Details", id="documents.show"),
        Binding("delete", "remove", "Remove", id="documents.remove"),
        Binding("escape", "back", "Back", id="back"),
    ]
    DEFAULT_CSS = """
    #table { height: 1fr; }
    #progress { height: 1; padding: 0 1; display: none; }
    #progress.shown { display: block; }
    #stage { width: 14; }
    #result { height: auto; max-height: 3; padding: 0 1; }
    #result.error { color: $error; }
    #result.done { color: $success; }
    """

    class Progressed(Message):
        """How far the add has come, as the service (or the upload) reported it."""

        def __init__(self, stage: str, done: int, total: int) -> None:
            super().__init__()
            self.stage, self.done, self.total = stage, done, total

    class Finished(Message):
        """The add ended: the service's result, its error, or why the file was not sent."""

        def __init__(
            self,
            result: dict[str, Any] | None,
            error: ApplianceError | None = None,
            problem: str | None = None,
        ) -> None:
            super().__init__()
            self.result, self.error, self.problem = result, error, problem

    def __init__(self, link: Link) -> None:
        super().__init__()
        self.link = link
        self.documents = RemoteDocuments(link)
        self.listed: dict[str, dict[str, Any]] = {}  # the rows, by document id
        self.adding = False  # an add is in flight: the link is the worker's meanwhile
        self.last_progress: tuple[str, int, int] | None = None

    def compose(self) -> ComposeResult:
        yield Banner(id="top")
        yield DataTable(id="table", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="progress"):
            yield Static("", id="stage", markup=False)
            yield ProgressBar(total=len(STAGES), show_eta=False, id="bar")
        yield Static("", id="result", markup=False)
        yield Banner(id="bottom")
        yield Footer()

    def on_mount(self) -> None:
        localize_bindings(self, self.owner.ui_language)
        table = self.query_one(DataTable)
        for column in COLUMNS:
            table.add_column(self.owner.words(f"documents.{column}"), key=column)
        self._load()
        if not self.listed and not self.query_one("#result", Static).has_class("error"):
            self._say(self.owner.words("documents.empty"))
        table.focus()

    # -- the list -------------------------------------------------------------------------

    def _load(self, select: str | None = None) -> None:
        """The documents the service lists for this user, newest first."""
        table = self.query_one(DataTable)
        table.clear()
        self.listed = {}
        try:
            listed = self.documents.list().get("documents") or []
        except ApplianceError as exc:
            self._refused(exc)
            listed = []
        listed.sort(key=lambda document: int(document.get("added_us") or 0), reverse=True)
        language = self.owner.ui_language
        for document in listed:
            key = str(document["id"])
            self.listed[key] = document
            level = self.owner.level(str(document.get("label")))
            added = time.localtime(int(document.get("added_us") or 0) / 1e6)
            pages = document.get("pages")
            name = Text(printable(str(document.get("name"))))  # Text: a name is never markup
            name.truncate(NAME_CELLS, overflow="ellipsis")
            table.add_row(
                Text(level.name(language), style=label_style(level)),
                name,
                Text(printable(str(document.get("collection")))),
                Text(printable(str(document.get("format")))),
                str(pages) if pages is not None else "-",
                time.strftime("%Y-%m-%d", added),
                key=key,
            )
        if select in self.listed:
            table.move_cursor(row=table.get_row_index(select))
        self._show_banners()

    def _show_banners(self) -> None:
        """The session's level, and the highest label listed when it is higher: the names
        of documents are shown under their label."""
        labels = [self.owner.level(str(d.get("label"))) for d in self.listed.values()]
        highest = max(labels, key=lambda level: level.rank, default=None)
        for banner in self.query(Banner):
            banner.show(self.owner.level(self.link.level_id), highest, self.owner.ui_language)

    def _selected(self) -> dict[str, Any] | None:
        table = self.query_one(DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.listed.get(str(key))

    def _say(self, text: str, *, kind: str = "") -> None:
        result = self.query_one("#result", Static)
        result.set_classes(kind)
        result.update(text)

    def _refused(self, exc: ApplianceError) -> None:
        """The service's reason, on one line; a session it ended returns to sign-in."""
        if isinstance(exc, AuthenticationError):
            self.owner.session_ended(self.link, exc)
            return
        refused = self.owner.words("documents.refused")
        self._say(f"{refused}: {printable(self.owner.say(exc))}", kind="error")

    def _busy(self) -> bool:
        if self.adding:
            self._say(self.owner.words("documents.busy"), kind="error")
        return self.adding

    # -- adding ---------------------------------------------------------------------------

    def action_add(self) -> None:
        if self._busy():
            return
        clearance = self.owner.level(self.link.principal.clearance)
        levels = [level for level in self.owner.levels if level.rank <= clearance.rank]
        self.app.push_screen(DocumentForm(self.owner, levels), self._start)

    def _start(self, form: dict[str, str] | None) -> None:
        if form is None or self.adding:
            return
        self.adding = True
        self.last_progress = None
        self.query_one("#progress").add_class("shown")
        self.query_one("#bar", ProgressBar).update(total=len(STAGES), progress=0)
        self.query_one("#stage", Static).update(self.owner.words("documents.stage.upload"))
        self._say("")
        self._add(Path(form["path"]), form["level"] or None, form["collection"] or None)

    @work(thread=True, exclusive=True, group="documents.add")
    def _add(self, path: Path, level: str | None, collection: str | None) -> None:
        """The worker: read the file, send it; everything it learns goes out as messages."""
        words = self.owner.words
        shown = printable(str(path))
        try:
            with path.open("rb") as handle:
                data = handle.read(MAX_READ + 1)
        except OSError as exc:
            problem = words("documents.unreadable", path=shown, reason=exc.strerror)
            self.post_message(self.Finished(None, problem=problem))
            return
        if len(data) > MAX_READ:  # it grew since the form looked
            problem = words("documents.too_large", path=shown, mib=MAX_READ >> 20)
            self.post_message(self.Finished(None, problem=problem))
            return

        def progress(stage: str, done: int, total: int) -> None:
            self.post_message(self.Progressed(stage, done, total))

        try:
            result = self.documents.add(
                path.name, data, level=level, collection=collection, progress=progress
            )
        except ApplianceError as exc:
            self.post_message(self.Finished(None, error=exc))
            return
        self.post_message(self.Finished(result))

    def on_documents_screen_progressed(self, message: Progressed) -> None:
        if message.stage not in STAGES:
            return
        self.last_progress = (message.stage, message.done, message.total)
        fraction = min(1.0, message.done / message.total) if message.total > 0 else 1.0
        bar = self.query_one("#bar", ProgressBar)
        bar.update(progress=STAGES.index(message.stage) + fraction)
        stage = self.query_one("#stage", Static)
        stage.update(self.owner.words(f"documents.stage.{message.stage}"))

    def on_documents_screen_finished(self, message: Finished) -> None:
        self.adding = False
        if message.error is not None:
            self._refused(message.error)
            return
        if message.problem is not None or message.result is None:
            self._say(message.problem or "", kind="error")
            return
        document: dict[str, Any] = message.result.get("document") or {}
        self.query_one("#bar", ProgressBar).update(progress=len(STAGES))
        self.query_one("#stage", Static).update(self.owner.words("documents.stage.done"))
        self._load(select=str(document.get("id")))
        fields = {
            "name": printable(str(document.get("name"))),
            "collection": printable(str(document.get("collection"))),
            "label": self.owner.level(str(document.get("label"))).name(self.owner.ui_language),
            "chunks": (message.result.get("chunks") or {}).get("added", 0),
        }
        done = "documents.unchanged" if message.result.get("unchanged") else "documents.added"
        self._say(self.owner.words(done, **fields), kind="done")

    # -- details and removing --------------------------------------------------------------

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_show()

    def action_show(self) -> None:
        selected = self._selected()
        if selected is None or self._busy():
            return
        try:
            shown = self.documents.show(str(selected["id"]))
        except ApplianceError as exc:
            self._refused(exc)
            return
        self.app.push_screen(DocumentPanel(self.owner, self._details(shown)))

    def _details(self, shown: dict[str, Any]) -> list[str]:
        words, language = self.owner.words, self.owner.ui_language
        document: dict[str, Any] = shown.get("document") or {}
        by_id = {level.id: level for level in self.owner.levels}

        def name(level_id: object) -> str:
            level = by_id.get(str(level_id))
            return level.name(language) if level else printable(str(level_id))

        markings = [name(marking) for marking in shown.get("markings") or []]
        findings = [
            f"{_kind(str(k), language)} {v}" for k, v in (shown.get("findings") or {}).items()
        ]
        none = words("documents.none")
        declared = words(
            "documents.declared",
            declared=name(shown.get("declared")),
            found=name(shown.get("found")),
        )
        pages = document.get("pages")
        size = words("documents.bytes", count=f"{int(document.get('bytes') or 0):,}")
        added = time.localtime(int(document.get("added_us") or 0) / 1e6)
        return [
            f"{words('documents.name')}: {printable(str(document.get('name')))}",
            f"  {printable(str(document.get('title') or ''))}",
            f"{words('documents.label')}: {name(document.get('label'))} ({declared})",
            f"{words('documents.markings')}: {', '.join(markings) or none}",
            f"{words('documents.findings')}: {', '.join(findings) or none}",
            f"{words('documents.chunks')}: {len(shown.get('chunks') or [])}",
            f"{words('documents.collection')}: {printable(str(document.get('collection')))}",
            f"{words('documents.format')}: {printable(str(document.get('format')))}, "
            f"{words('documents.pages')}: {pages if pages is not None else '-'}, {size}",
            f"{words('documents.date')}: {time.strftime('%Y-%m-%d %H:%M', added)}, "
            f"{printable(str(document.get('added_by')))}",
            f"id: {printable(str(document.get('id')))}",
        ]

    def action_remove(self) -> None:
        selected = self._selected()
        if selected is None or self._busy():
            return
        label = self.owner.level(str(selected.get("label"))).name(self.owner.ui_language)
        name = printable(str(selected.get("name")))
        question = self.owner.words("documents.confirm", name=name, label=label)
        self.app.push_screen(
            ConfirmPanel(self.owner, question), lambda yes: self._remove(selected, yes)
        )

    def _remove(self, document: dict[str, Any], yes: bool | None) -> None:
        if not yes:
            return
        try:
            self.documents.remove(str(document["id"]))
        except ApplianceError as exc:
            self._refused(exc)
            return
        self._load()
        self._say(
            self.owner.words("documents.removed", name=printable(str(document.get("name")))),
            kind="done",
        )

    def action_back(self) -> None:
        if not self._busy():
            self.app.pop_screen()


def _kind(detector: str, language: str) -> str:
    """A DLP detector's id, or in Korean its name."""
    if language == "ko" and detector in KINDS:
        return KINDS[detector][1]
    return printable(detector)
