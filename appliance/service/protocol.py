"""The service's wire protocol: JSON lines over a UNIX stream socket.

Specified in docs/formats/protocol.md. Each message is one UTF-8 JSON object
on one line. The reader never holds more than MAX_LINE bytes of a message it
has not finished reading, and every field is checked (type, range, no unknown
key) before the server acts on it: a hostile client gets a clear error, never
a traceback or an unbounded buffer.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from appliance.errors import ApplianceError, ServiceError, UsageError

VERSION = 1
MAX_LINE = 1 << 20  # one message, newline included
MAX_TEXT = 256 << 10  # a prompt or system prompt, in characters
MAX_NAME = 128  # user names, conversation ids
_RECV = 64 << 10


class ProtocolError(ApplianceError):
    """The peer broke the protocol (framing, JSON, types): the connection ends."""

    exit_code = ServiceError.exit_code


def encode(message: Mapping[str, Any]) -> bytes:
    line = json.dumps(message, ensure_ascii=False, separators=(",", ":")) + "\n"
    return line.encode("utf-8")


def error_body(exc: ApplianceError) -> dict[str, Any]:
    """An error as the wire carries it: a stable id, its parameters, the English sentence."""
    return {
        "code": exc.code,
        "params": dict(exc.params),
        "message": exc.message,
        "exit": exc.exit_code,
    }


class LineReader:
    """Whole lines from a socket, each at most MAX_LINE bytes."""

    def __init__(self, sock: socket.socket, max_line: int = MAX_LINE) -> None:
        self.sock = sock
        self.max_line = max_line
        self._buffer = bytearray()

    def read(self) -> bytes | None:
        """The next line without its newline; None at a clean end of stream.

        A stream that ends inside a message is an error: a truncated request
        is never acted on.
        """
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line
            if len(self._buffer) >= self.max_line:
                raise ProtocolError(f"a message is longer than {self.max_line} bytes")
            chunk = self.sock.recv(min(_RECV, self.max_line - len(self._buffer)))
            if not chunk:
                if self._buffer:
                    raise ProtocolError("the stream ended inside a message")
                return None
            self._buffer += chunk


def decode(line: bytes) -> dict[str, Any]:
    try:
        message = json.loads(line.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ProtocolError("a message is not one JSON object in UTF-8") from None
    if not isinstance(message, dict):
        raise ProtocolError("a message is not a JSON object")
    return message


def _no_constant(name: str) -> None:
    raise ValueError(name)  # NaN and Infinity are not JSON


@dataclass(frozen=True)
class Request:
    """A client's request: its id, operation and checked arguments."""

    id: int
    op: str
    args: dict[str, Any]


# op -> {field: (type, required)}; every op but hello and sign_in needs its session.
_SESSION = {"session": (str, True)}
OPS: dict[str, dict[str, tuple[type, bool]]] = {
    "hello": {},
    "sign_in": {"user": (str, False), "password": (str, False), "level": (str, False)},
    "passwd": {**_SESSION, "password": (str, True)},
    "setup": {
        "admin": (str, True),
        "admin_password": (str, True),
        "officer": (str, True),
        "officer_password": (str, True),
        "escrow": (str, False),
    },
    "ask": {
        **_SESSION,
        "prompt": (str, True),
        "system": (str, False),
        "conversation": (str, False),
        "max_tokens": (int, False),
        "temperature": (float, False),
        "seed": (int, False),
        "ignore_eos": (bool, False),
        "save": (bool, False),
        "docs": (bool, False),
        "collection": (str, False),
        "task": (str, False),
        "file": (str, False),
        "file_size": (int, False),
        "file_sha256": (str, False),
    },
    "draft": {
        **_SESSION,
        "conversation": (str, True),
        "format": (str, True),
        "whole": (bool, False),
        "title": (str, False),
    },
    "reset": {**_SESSION, "conversation": (str, True)},
    "cancel": {**_SESSION, "request": (int, True)},
    "status": {**_SESSION},
    "doctor": {**_SESSION, "trusted": (str, False)},
    "check": {**_SESSION, "active": (bool, False)},
    "conversations": {
        **_SESSION,
        "call": (str, True),
        "saved_id": (str, False),
        "conversation": (str, False),
    },
    "users": {
        **_SESSION,
        "call": (str, True),
        "name": (str, False),
        "role": (str, False),
        "clearance": (str, False),
        "password": (str, False),
        "permission": (str, False),
        "locked": (bool, False),
        "os_uid": (int, False),
    },
    "sign_out": {**_SESSION},
    "backup": {**_SESSION},
    "airgap": {**_SESSION, "call": (str, True), "minutes": (int, False), "reason": (str, False)},
    "audit": {
        **_SESSION,
        "call": (str, True),
        "pubkey": (str, False),
        "trusted": (str, False),
        "since_us": (int, False),
        "user": (str, False),
        "action": (str, False),
        "limit": (int, False),
        "after": (int, False),
        "term": (str, False),
        "newest": (bool, False),
        "decrypt": (bool, False),
        "before_us": (int, False),
        "before": (str, False),
        "format": (str, False),
        "since_seq": (int, False),
        "since_checkpoint": (str, False),
        "recipients": (list, False),
        "answers": (list, False),
        "accept": (bool, False),
        "reason": (str, False),
    },
    "docs": {
        **_SESSION,
        "call": (str, True),
        "data": (str, False),
        "offset": (int, False),
        "file": (str, False),
        "size": (int, False),
        "sha256": (str, False),
        "level": (str, False),
        "collection": (str, False),
        "effective": (str, False),
        "supersedes": (str, False),
        "document": (str, False),
        "text": (bool, False),
        "force": (bool, False),
        "name": (str, False),
    },
}
MAX_ITEMS = 16  # a list field: at most this many strings of at most MAX_ITEM characters
MAX_ITEM = 4096
LIMITS: dict[str, tuple[float, float]] = {
    "max_tokens": (1, 8192),
    "temperature": (0.0, 2.0),
    "seed": (0, 2**32 - 1),
    "request": (1, 2**53),
    "since_us": (0, 2**62),
    "before_us": (0, 2**62),
    "limit": (1, 1_000_000),
    "after": (0, 2**62),
    "since_seq": (0, 2**62),
    "minutes": (1, 1440),
    "os_uid": (0, 2**32 - 2),
    "offset": (0, 2**40),
    "size": (0, 2**40),
    "file_size": (0, 2**40),
}
# A saved conversation's id, as the store makes them (uuid4().hex).
PATTERNS = {"saved_id": re.compile(r"[0-9a-f]{32}")}
TEXT_LIMITS = {
    "prompt": MAX_TEXT,
    "system": MAX_TEXT,
    "password": 1024,
    "admin_password": 1024,
    "officer_password": 1024,
    "escrow": 1024,
    "trusted": 64 << 10,
    "since_checkpoint": 64 << 10,
    "pubkey": 1024,
    "reason": 1024,
    "data": 700 << 10,  # one upload part, base64 (service/documents.py, UPLOAD_PART)
    "file": 255,
    "title": 200,
}


def parse_request(message: dict[str, Any]) -> Request:
    """Check a decoded message against the protocol; UsageError says what is wrong."""
    version = message.get("v")
    if version != VERSION or isinstance(version, bool):
        raise ProtocolError(f"this service speaks protocol version {VERSION}")
    request_id = message.get("id")
    if (
        not isinstance(request_id, int)
        or isinstance(request_id, bool)
        or not (1 <= request_id <= 2**53)
    ):
        raise ProtocolError("a request needs an integer id from 1 to 2^53")
    op = message.get("op")
    if not isinstance(op, str) or op not in OPS:
        raise UsageError(f"unknown operation {str(op)[:40]!r}", code="unknown_op")
    fields = OPS[op]
    unknown = set(message) - {"v", "id", "op"} - set(fields)
    if unknown:
        raise UsageError(f"{op} takes no field {sorted(unknown)[0][:40]!r}", code="bad_field")
    args: dict[str, Any] = {}
    for name, (kind, required) in fields.items():
        if name not in message or message[name] is None:
            if required:
                raise UsageError(f"{op} needs the field {name!r}", code="bad_field")
            continue
        args[name] = _checked(op, name, message[name], kind)
    return Request(request_id, op, args)


def _checked(op: str, name: str, value: Any, kind: type) -> Any:
    if kind is float and _is_int(value):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise UsageError(f"{op}: {name!r} must be a {kind.__name__}", code="bad_field")
    if name in LIMITS:
        low, high = LIMITS[name]
        if not low <= cast(float, value) <= high:
            raise UsageError(f"{op}: {name!r} must be from {low} to {high}", code="bad_field")
    if isinstance(value, list) and not _short_strings(value):
        raise UsageError(f"{op}: {name!r} must be at most {MAX_ITEMS} strings", code="bad_field")
    if isinstance(value, str):
        if _surrogate(value):  # a lone surrogate cannot be stored, sealed or shown
            raise UsageError(f"{op}: {name!r} is not valid Unicode", code="bad_field")
        limit = TEXT_LIMITS.get(name, MAX_NAME)
        if len(value) > limit:
            raise UsageError(f"{op}: {name!r} is longer than {limit} characters", code="bad_field")
        if name in PATTERNS and not PATTERNS[name].fullmatch(value):
            raise UsageError(f"{op}: {name!r} is not a saved conversation's id", code="bad_field")
    return value


def _short_strings(items: list[Any]) -> bool:
    return len(items) <= MAX_ITEMS and all(
        isinstance(item, str) and len(item) <= MAX_ITEM and not _surrogate(item) for item in items
    )


def _surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
