"""One streamed answer: text pieces as the model produces them, cancellable."""

from __future__ import annotations

import codecs
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Literal

FinishReason = Literal["stop", "length", "cancelled"]


@dataclass
class GenerationStats:
    prompt_tokens: int
    dropped_messages: int = 0  # older turns left out so the prompt fits
    completion_tokens: int = 0
    finish_reason: FinishReason | None = None
    time_to_first_token: float | None = None  # seconds from start to the first token
    seconds: float = 0.0
    # The generated tokens, end-of-generation excluded (reproducibility checks).
    # A backend that cannot name a token (llama-server streams a character split
    # across byte tokens as one piece) records it as -1.
    token_ids: list[int] = field(default_factory=list)
    # Which remote endpoint answered (engine/remote.py): its name and the sha256 of
    # the certificate it presented; None for the local backends.
    endpoint: str | None = None
    endpoint_certificate: str | None = None

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0


class Generation(Iterator[str]):
    """Iterate to receive text; call `cancel()` from any thread to stop.

    Text arrives as complete UTF-8 characters (a Korean syllable split across
    tokens is held until whole), without the whitespace a model often emits
    before its answer, and never includes a stop string or the start of one.
    """

    def __init__(
        self,
        tokens: Iterator[int],
        piece_of: Callable[[int], bytes],
        is_end: Callable[[int], bool],
        *,
        max_tokens: int,
        stop_strings: tuple[str, ...],
        stats: GenerationStats,
        on_finish: Callable[[], None],
        on_cancel: Callable[[], None] | None = None,
    ) -> None:
        """`on_cancel` is called by `cancel()`, in the cancelling thread: a backend
        waiting for its next token (a socket read) is woken by it."""
        self.stats = stats
        self._cancel = threading.Event()
        self._on_cancel = on_cancel
        self._finish = _Once(on_finish)
        # A module-level generator, not a method: it holds no reference back to
        # this object, so an abandoned answer is freed (and the engine released)
        # as soon as its last reference goes.
        self._pieces = _pieces(
            tokens, piece_of, is_end, max_tokens, stop_strings, stats, self._cancel, self._finish
        )

    def cancel(self) -> None:
        self._cancel.set()
        if self._on_cancel is not None:
            self._on_cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def __iter__(self) -> Generation:
        return self

    def __next__(self) -> str:
        return next(self._pieces)

    def text(self) -> str:
        """Consume the rest of the answer and return it whole."""
        return "".join(self)

    def close(self) -> None:
        """Stop generating and free the engine for the next answer."""
        self._pieces.close()
        self._finish()

    def __del__(self) -> None:
        if hasattr(self, "_pieces"):
            self.close()


class _Once:
    """Call a function the first time only, whoever gets there first."""

    def __init__(self, function: Callable[[], None]) -> None:
        self._function: Callable[[], None] | None = function
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            function, self._function = self._function, None
        if function is not None:
            function()


def _pieces(
    tokens: Iterator[int],
    piece_of: Callable[[int], bytes],
    is_end: Callable[[int], bool],
    max_tokens: int,
    stop_strings: tuple[str, ...],
    stats: GenerationStats,
    cancel: threading.Event,
    finish: Callable[[], None],
) -> Generator[str, None, None]:
    start = time.perf_counter()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    held = ""  # text that could be the start of a stop string
    started = False  # leading whitespace before the answer is dropped
    try:
        stats.finish_reason = "length"
        for token in tokens:
            if cancel.is_set():
                stats.finish_reason = "cancelled"
                break
            if is_end(token):
                stats.finish_reason = "stop"
                break
            stats.completion_tokens += 1
            stats.token_ids.append(token)
            if stats.time_to_first_token is None:
                stats.time_to_first_token = time.perf_counter() - start
            held += decoder.decode(piece_of(token))
            ready, held, stopped = _split_at_stop(held, stop_strings)
            if not started:
                ready = ready.lstrip()
                started = bool(ready)
            if ready:
                yield ready
            if stopped:
                stats.finish_reason = "stop"
                held = ""
                break
            if stats.completion_tokens >= max_tokens:
                break
        if cancel.is_set():
            stats.finish_reason = "cancelled"
        tail = "" if stats.finish_reason == "cancelled" else held + decoder.decode(b"", True)
        if not started:
            tail = tail.lstrip()
        if tail:
            yield tail
    finally:
        stats.seconds = time.perf_counter() - start
        close = getattr(tokens, "close", None)
        if close is not None:
            close()
        finish()


def _split_at_stop(text: str, stop_strings: tuple[str, ...]) -> tuple[str, str, bool]:
    """Split text into (safe to show, held back, a stop string was reached)."""
    if not stop_strings:
        return text, "", False
    found = [index for stop in stop_strings if (index := text.find(stop)) >= 0]
    if found:
        return text[: min(found)], "", True
    hold = 0
    for stop in stop_strings:
        for length in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:length]):
                hold = max(hold, length)
                break
    return text[: len(text) - hold], text[len(text) - hold :], False
