"""An answer as it is written: text from the worker thread goes into a buffer, and
a 50 ms timer on the UI thread moves the buffer into a Markdown stream, so the
screen is never written once per token."""

from __future__ import annotations

import threading

from textual.containers import VerticalScroll
from textual.widgets import Markdown
from textual.widgets.markdown import MarkdownStream

FLUSH_SECONDS = 0.05


class AnswerView:
    """The answer being written into the conversation's log, one at a time."""

    def __init__(self, log: VerticalScroll) -> None:
        self.log = log
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._answer: Markdown | None = None
        self._stream: MarkdownStream | None = None

    def start(self) -> None:
        self._answer = Markdown()
        self.log.mount(self._answer)
        self._stream = Markdown.get_stream(self._answer)

    def feed(self, piece: str) -> None:
        """From the worker thread."""
        with self._lock:
            self._pending.append(piece)

    async def flush(self) -> None:
        with self._lock:
            text, self._pending = "".join(self._pending), []
        if text and self._stream is not None:
            await self._stream.write(text)
            self.log.scroll_end(animate=False)

    async def end(self, *, keep: bool) -> None:
        """The answer ended; `keep=False` takes it off the screen (it failed, or the
        policy withdrew it after text was shown, whose unshown tail is dropped)."""
        if not keep:
            with self._lock:
                self._pending = []
        await self.flush()
        if self._stream is not None:
            await self._stream.stop()
        if self._answer is not None and not keep:
            await self._answer.remove()
        self._answer = self._stream = None
