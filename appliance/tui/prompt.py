"""The prompt field: Enter sends, Ctrl+J starts a new line, Up and Down at its
first and last line walk back and forth through the prompts sent this session."""

from __future__ import annotations

from textual import events
from textual.message import Message as TextualMessage
from textual.widgets import TextArea


class PromptArea(TextArea):
    DEFAULT_CSS = """
    PromptArea { height: auto; min-height: 3; max-height: 8; }
    """

    class Submitted(TextualMessage):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.sent: list[str] = []  # this session's prompts, oldest first
        self._recall = 0

    def remember(self, prompt: str) -> None:
        """A prompt was sent: it is the newest one Up recalls."""
        self.sent.append(prompt)
        self._recall = len(self.sent)

    def restore(self, text: str) -> None:
        """Put a prompt back (its answer failed), the cursor at its end."""
        self.text = text
        self.move_cursor(self.document.end)
        self.focus()

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            self.post_message(self.Submitted(self.text))
        elif event.key in ("ctrl+j", "shift+enter"):
            self.insert("\n")
        elif event.key == "up" and self.cursor_location[0] == 0:
            self._walk(-1)
        elif event.key == "down" and self.cursor_location[0] == self.document.line_count - 1:
            self._walk(1)
        else:
            await super()._on_key(event)
            return
        event.stop()
        event.prevent_default()

    def _walk(self, step: int) -> None:
        if not self.sent:
            return
        self._recall = max(0, min(len(self.sent), self._recall + step))
        self.text = self.sent[self._recall] if self._recall < len(self.sent) else ""
        self.move_cursor(self.document.end)
