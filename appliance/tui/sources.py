"""The sources under a grounded answer, and each one opened at its passage.

The service sends them with the answer's result (`sources`, docs/formats/
protocol.md); each line names what the answer was given, cited or not. F10
(or a click on the list) picks one and opens it at its passage: the
document's text as the service shows it to this user (`docs show`, the same
checks as the documents screen), the passage given to the answer marked, with
the passages before and after it for context.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.markup import escape
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from appliance.textsafe import printable
from appliance.tui.text import localize_bindings, words

if TYPE_CHECKING:
    from appliance.tui.app import ApplianceApp

CONTEXT = 1  # passages shown before and after the one given


class SourcesView(Static):
    DEFAULT_CSS = """
    SourcesView { color: $text-muted; padding: 0 0 0 2; height: auto; }
    SourcesView:hover { color: $text; }
    """

    class Picked(Message):
        """The reader clicked the list: pick one of these sources."""

        def __init__(self, sources: list[dict[str, Any]]) -> None:
            super().__init__()
            self.sources = sources

    def __init__(self, sources: list[dict[str, Any]], language: str) -> None:
        super().__init__(sources_text(sources, language), markup=False, classes="sources")
        self.sources = sources

    def on_click(self, event: events.Click) -> None:
        self.post_message(self.Picked(self.sources))


def sources_text(sources: list[dict[str, Any]], language: str) -> str:
    lines = [words(language, "sources.title")]
    lines.extend(source_line(source, language) for source in sources)
    return "\n".join(lines)


def source_line(source: dict[str, Any], language: str) -> str:
    details = [printable(str(source.get("label_name")))]
    if source.get("effective"):
        details.append(words(language, "sources.effective", date=source["effective"]))
    if source.get("superseded"):
        details.append(words(language, "sources.superseded"))
    place = f", {printable(str(source['place']))}" if source.get("place") else ""
    title = printable(str(source.get("title")))
    return f"[{source.get('n')}] {title}{place} ({', '.join(details)})"


class SourcePicker(ModalScreen[dict[str, Any] | None]):
    """The last answer's sources; Enter opens one at its passage."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", id="panel.close"),
    ]
    DEFAULT_CSS = """
    SourcePicker { align: center middle; }
    #panel { width: 76; height: auto; max-height: 20; border: round $primary; padding: 0 1;
             background: $surface; }
    """

    def __init__(self, app: ApplianceApp, sources: list[dict[str, Any]]) -> None:
        super().__init__()
        self.owner = app
        self.sources = sources

    def compose(self) -> ComposeResult:
        language = self.owner.ui_language
        options = [
            Option(Content(source_line(source, language)), id=str(index))
            for index, source in enumerate(self.sources)
        ]
        with Vertical(id="panel"):
            yield Static(f"[b]{escape(self.owner.words('sources.pick'))}[/]")
            yield OptionList(*options, id="list")

    def on_mount(self) -> None:
        localize_bindings(self, self.owner.ui_language)
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.sources[int(event.option.id or 0)])

    def action_close(self) -> None:
        self.dismiss(None)


class PassagePanel(ModalScreen[None]):
    """One source opened at its passage, within the document as the user may read it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,enter", "close", "Close", id="panel.close"),
    ]
    DEFAULT_CSS = """
    PassagePanel { align: center middle; }
    #panel { width: 90%; height: 80%; border: round $primary; padding: 0 1;
             background: $surface; }
    #passage { height: 1fr; }
    """

    def __init__(self, app: ApplianceApp, source: dict[str, Any], shown: dict[str, Any]) -> None:
        super().__init__()
        self.owner = app
        self.source = source
        self.shown = shown

    def compose(self) -> ComposeResult:
        language = self.owner.ui_language
        heading = source_line(self.source, language)
        with Vertical(id="panel"):
            yield Static(f"[b]{escape(heading)}[/]  {escape(self.owner.words('panel.esc'))}")
            with VerticalScroll(id="passage"):
                yield Static(passage_text(self.shown, self.source, language), id="text")

    def on_mount(self) -> None:
        localize_bindings(self, self.owner.ui_language)
        self.query_one("#passage", VerticalScroll).focus()

    def action_close(self) -> None:
        self.dismiss(None)


def passage_text(shown: dict[str, Any], source: dict[str, Any], language: str) -> Text:
    """The given passage in bold, CONTEXT passages either side dimmed; or a sentence
    saying the passage is no longer there (the document changed since the answer)."""
    chunks = [c for c in shown.get("chunks") or [] if isinstance(c, dict)]
    ids = [c.get("id") for c in chunks]
    if source.get("chunk") not in ids:
        return Text(words(language, "sources.gone"))
    at = ids.index(source.get("chunk"))
    text = Text()
    for index in range(max(at - CONTEXT, 0), min(at + CONTEXT + 1, len(chunks))):
        lines = str(chunks[index].get("text") or "").split("\n")
        body = "\n".join(printable(line) for line in lines)  # no terminal controls
        text.append(body, style="bold" if index == at else "dim")
        text.append("\n\n")
    return text
