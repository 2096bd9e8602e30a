"""The OpenAI completions stream, as the remote backend reads it.

`POST /v1/completions` with `stream: true` answers with server-sent events:
`data: {...}` lines, each a JSON object whose `choices[0].text` is the next
piece of the answer and whose `finish_reason` says when and why it ended, a
`usage` object (`stream_options.include_usage`) and `data: [DONE]`. Every
line is read with a size limit and every value's type is checked before use:
a stream that breaks the format ends the answer with one line.

Each text chunk goes to `Generation` as one unnamed token (UNNAMED, its
bytes queued for `piece_of`); the model's own end (`finish_reason` "stop")
as END, which `is_end` recognises, so the answer finishes as "stop".
"""

from __future__ import annotations

import http.client
import json
from collections import deque
from collections.abc import Iterator

from appliance.engine.stream import GenerationStats
from appliance.errors import EngineError

LINE_LIMIT = 1 << 20  # one server-sent event
ERROR_LIMIT = 1 << 16  # the body of a refused request
AFTER_FINISH = 8  # events read after the finish, for the usage
UNNAMED = -1  # a text chunk: the server names no token ids
END = -2  # the server said the model ended its answer (finish_reason "stop")


def stream_chunks(
    label: str,
    response: http.client.HTTPResponse,
    stats: GenerationStats,
    chunks: deque[bytes],
    limit: int,
) -> Iterator[int]:
    """The response's text chunks as unnamed tokens, then END if the model ended it."""
    if response.status != 200:
        message = error_text(response.read(ERROR_LIMIT))
        raise EngineError(
            f"{label}: the server refused the request (HTTP {response.status})"
            + (f": {message}" if message else "")
        )
    kind = response.getheader("Content-Type", "")
    if not kind.startswith("text/event-stream"):
        raise EngineError(f"{label}: the server did not stream its answer")
    finish: str | None = None
    usage: int | None = None
    after = 0
    while True:
        line = response.readline(LINE_LIMIT)
        if not line:
            break
        if not line.endswith(b"\n"):
            if len(line) >= LINE_LIMIT:
                raise _malformed(label, "an event larger than the appliance reads")
            break  # the connection closed in the middle of a line
        line = line.rstrip(b"\r\n")
        if not line.startswith(b"data:"):
            continue  # blank lines, comments, other fields
        payload = line[5:].strip()
        if payload == b"[DONE]":
            finish = finish or "length"
            break
        text, reason, count = _event(label, payload)
        usage = count if count is not None else usage
        if finish is not None:
            after += 1
            if after > AFTER_FINISH:
                break
            continue
        if text:
            chunks.append(text.encode("utf-8", "surrogatepass"))  # a lone surrogate: U+FFFD
            yield UNNAMED
        finish = reason
    if finish is None:
        raise EngineError(
            f"{label}: the connection closed before the answer was complete; the answer was lost"
        )
    if usage is not None and 0 <= usage <= limit:
        stats.completion_tokens = usage
    if finish == "stop":
        yield END
    elif finish != "length":
        raise EngineError(f"{label}: the server ended the answer early ({printable(finish)})")


def _event(label: str, payload: bytes) -> tuple[str, str | None, int | None]:
    """One event's text, finish reason and completion token count, checked."""
    try:
        event = json.loads(payload)
    except (ValueError, RecursionError):  # not JSON, or nested past Python's stack
        event = None
    if not isinstance(event, dict):
        raise _malformed(label, "an event that is not a JSON object")
    if event.get("error"):
        message = error_text(payload) or "no reason given"
        raise EngineError(f"{label}: the server failed while answering: {message}")
    choices = event.get("choices", [])
    usage = event.get("usage")
    if not isinstance(choices, list) or not (usage is None or isinstance(usage, dict)):
        raise _malformed(label, "choices or usage of the wrong type")
    count = usage.get("completion_tokens") if usage else None
    if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
        raise _malformed(label, "a token count that is not a number")
    if not choices:
        return "", None, count
    choice = choices[0]
    if len(choices) != 1 or not isinstance(choice, dict) or choice.get("index", 0) != 0:
        raise _malformed(label, "more than the one answer asked for")
    text, reason = choice.get("text"), choice.get("finish_reason")
    if not isinstance(text, str) or not (reason is None or isinstance(reason, str)):
        raise _malformed(label, "a text or finish reason of the wrong type")
    return text, reason, count


def _malformed(label: str, what: str) -> EngineError:
    return EngineError(f"{label}: the server sent {what}; the answer was lost")


def error_text(body: bytes) -> str:
    """The server's reason for a refusal (OpenAI's error.message, FastAPI's detail)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return printable(body.decode("utf-8", "replace"))
    error = data.get("error") if isinstance(data, dict) else None
    for candidate in (
        error.get("message") if isinstance(error, dict) else error,
        data.get("message") if isinstance(data, dict) else None,
        data.get("detail") if isinstance(data, dict) else None,
    ):
        if isinstance(candidate, str) and candidate.strip():
            return printable(candidate)
    return ""


def printable(text: str, limit: int = 300) -> str:
    """Server text made safe for one line: whitespace runs as one space, control, format
    and bidi characters as escapes, at most `limit` characters."""
    text = " ".join(text.split())
    shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"
