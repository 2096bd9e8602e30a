"""Work products from the chat screen: F3 picks a task preset of the policy, F9
saves the conversation as a draft (HWPX, DOCX or Markdown) in the user's export
folder. The service renders and audits the draft; the UI writes its bytes."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import Checkbox, Input, OptionList, Select, Static
from textual.widgets.option_list import Option

from appliance.tui.text import localize_bindings

if TYPE_CHECKING:
    from appliance.tui.app import ApplianceApp

FORMATS = (("hwpx", "HWPX (한글)"), ("docx", "DOCX (Word)"), ("md", "Markdown"))
NO_TASK = "-"  # the picker's option for a conversation without a preset
MAX_NAME = 120


@dataclass(frozen=True)
class DraftChoice:
    name: str  # the file name, its suffix included
    format: str
    whole: bool  # every exchange, not only the last answer


class SaveDraftForm(ModalScreen[DraftChoice | None]):
    """A file name, a format and the scope; Enter saves, Esc cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Close", id="panel.close"),
    ]
    DEFAULT_CSS = """
    SaveDraftForm { align: center middle; }
    #form { width: 64; height: auto; border: round $primary; padding: 0 1; background: $surface; }
    #error { color: $error; height: auto; }
    """

    def __init__(self, app: ApplianceApp, folder: str) -> None:
        super().__init__()
        self.owner = app
        self.folder = folder

    def compose(self) -> ComposeResult:
        words = self.owner.words
        stamp = time.strftime("%Y%m%d-%H%M")
        with Vertical(id="form"):
            yield Static(f"[b]{escape(words('draft.title'))}[/]")
            yield Static(escape(words("draft.folder", folder=self.folder)))
            yield Input(value=f"{words('draft.default_name')}-{stamp}", id="name")
            yield Select(
                [(label, fmt) for fmt, label in FORMATS],
                value="hwpx",
                allow_blank=False,
                id="format",
            )
            yield Checkbox(words("draft.whole"), id="whole")
            yield Static(escape(words("draft.hint")))
            yield Static("", id="error")

    def on_mount(self) -> None:
        localize_bindings(self, self.owner.ui_language)
        self.query_one("#name", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        name = event.value.strip()
        if not name or "/" in name or name in (".", "..") or len(name) > MAX_NAME:
            self.query_one("#error", Static).update(self.owner.words("draft.bad_name"))
            return
        fmt = str(self.query_one("#format", Select).value)
        if not name.lower().endswith(f".{fmt}"):
            name = f"{name}.{fmt}"
        self.dismiss(DraftChoice(name, fmt, self.query_one("#whole", Checkbox).value))

    def action_cancel(self) -> None:
        self.dismiss(None)


class TaskPicker(ModalScreen[str | None]):
    """The policy's task presets, by name in the UI's language; Enter picks one."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", id="panel.close"),
    ]
    DEFAULT_CSS = """
    TaskPicker { align: center middle; }
    #panel { width: 50; height: auto; max-height: 20; border: round $primary; padding: 0 1;
             background: $surface; }
    """

    def __init__(self, app: ApplianceApp, current: str | None) -> None:
        super().__init__()
        self.owner = app
        self.current = current

    def compose(self) -> ComposeResult:
        words = self.owner.words
        options = [Option(words("task.none"), id=NO_TASK)]
        options += [
            Option(Content(task_name(self.owner, task["id"])), id=str(task["id"]))
            for task in tasks_of(self.owner.hello)
        ]
        with Vertical(id="panel"):
            yield Static(f"[b]{escape(words('task.title'))}[/]")
            yield OptionList(*options, id="list")

    def on_mount(self) -> None:
        localize_bindings(self, self.owner.ui_language)
        options = self.query_one(OptionList)
        ids = [options.get_option_at_index(i).id for i in range(options.option_count)]
        options.highlighted = ids.index(self.current) if self.current in ids else 0
        options.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_close(self) -> None:
        self.dismiss(None)


def tasks_of(hello: dict[str, Any]) -> list[dict[str, Any]]:
    tasks = hello.get("tasks")
    return [t for t in tasks if isinstance(t, dict)] if isinstance(tasks, list) else []


def task_name(app: ApplianceApp, task_id: str | None) -> str:
    """A preset's name in the UI's language (its id if the service did not describe it)."""
    for task in tasks_of(app.hello):
        if task.get("id") == task_id:
            return str(task.get("ko" if app.ui_language == "ko" else "en") or task_id)
    return str(task_id)
