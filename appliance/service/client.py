"""A client of the appliance service: what `ask`, `chat` and `service status` use.

Errors from the service come back as the ApplianceError class of the exit
code it names, with its message id and parameters, so a command that runs
as a client fails exactly as it would in-process.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from appliance.errors import ERROR_CLASSES, ApplianceError, IntegrityError, ServiceError
from appliance.fsutil import atomic_writer
from appliance.service.endpoint import connect
from appliance.service.protocol import VERSION, LineReader, ProtocolError, decode, encode

_BY_EXIT = {cls.exit_code: cls for cls in ERROR_CLASSES}


def as_error(body: Any) -> ApplianceError:
    """The service's error as the exception a local command would have raised."""
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        return ServiceError("the appliance service sent an unreadable error")
    cls = _BY_EXIT.get(body.get("exit"), ServiceError)  # type: ignore[arg-type]
    params = body.get("params")
    code = body.get("code")
    error = cls(body["message"])
    error.code = code if isinstance(code, str) else error.code
    error.params = params if isinstance(params, dict) else {}
    return error


class Client:
    def __init__(self, path: Path, *, timeout: float | None = None) -> None:
        self.path = path
        self.sock: socket.socket = connect(path, timeout)
        self.sock.settimeout(timeout)
        self._reader = LineReader(self.sock)
        self._ids = itertools.count(1)
        self.session: str | None = None
        self.signed_in: dict[str, Any] = {}
        self.unanswered: set[int] = set()  # requests whose replies nobody waits for

    # -- plumbing -----------------------------------------------------------------

    def send(self, op: str, **fields: Any) -> int:
        request_id = next(self._ids)
        message = {"v": VERSION, "id": request_id, "op": op}
        if self.session is not None and op not in ("hello", "sign_in"):
            message["session"] = self.session
        message.update({key: value for key, value in fields.items() if value is not None})
        try:
            self.sock.sendall(encode(message))
        except OSError as exc:
            gone = ServiceError(
                f"the appliance service went away ({exc.strerror})", code="service_gone"
            )
            raise self._parting_words() or gone from None
        return request_id

    def _parting_words(self) -> ApplianceError | None:
        """Why the service closed the connection (idle, stopped), if it said so first."""
        try:
            self.sock.settimeout(1.0)
            line = self._reader.read()
            message = decode(line) if line is not None else {}
        except (OSError, ProtocolError):
            return None
        if message.get("id") == 0 and "error" in message:
            return as_error(message["error"])
        return None

    def receive(self) -> dict[str, Any]:
        try:
            line = self._reader.read()
        except ProtocolError as exc:
            raise ServiceError(
                f"the appliance service broke the protocol: {exc}", code="protocol_broken"
            ) from None
        except TimeoutError:
            raise ServiceError(
                "the appliance service did not answer in time", code="service_timeout"
            ) from None
        except OSError as exc:
            raise ServiceError(
                f"the appliance service went away ({exc.strerror})", code="service_gone"
            ) from None
        if line is None:
            raise ServiceError("the appliance service closed the connection", code="service_closed")
        try:
            return decode(line)
        except ProtocolError as exc:
            raise ServiceError(
                f"the appliance service broke the protocol: {exc}", code="protocol_broken"
            ) from None

    def call(
        self,
        op: str,
        *,
        on_data: Callable[[str], object] | None = None,
        on_progress: Callable[[dict[str, Any]], object] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """One request and its final reply; an error reply is raised.

        `on_data` takes what a request streams before its reply (an export),
        `on_progress` how far a long one has come (a document being added).
        """
        request_id = self.send(op, **fields)
        while True:
            message = self.receive()
            if message.get("id") == 0 and "error" in message:
                raise as_error(message["error"])
            if message.get("id") != request_id:
                self.unanswered.discard(message.get("id"))
                continue  # the reply to a cancel, or the tail of a cancelled answer
            if "data" in message and on_data is not None and isinstance(message["data"], str):
                on_data(message["data"])
                continue
            if "progress" in message and isinstance(message["progress"], dict):
                if on_progress is not None:
                    on_progress(message["progress"])
                continue
            if "error" in message:
                raise as_error(message["error"])
            if "ok" in message:
                result = message["ok"]
                return result if isinstance(result, dict) else {}

    # -- operations -----------------------------------------------------------------

    def hello(self) -> dict[str, Any]:
        return self.call("hello")

    def sign_in(
        self, user: str | None, password: str | None, level: str | None = None
    ) -> dict[str, Any]:
        result = self.call("sign_in", user=user, password=password, level=level)
        session = result.get("session")
        if not isinstance(session, str):
            raise ServiceError("the appliance service sent no session")
        self.session, self.signed_in = session, result
        return result

    def passwd(self, password: str) -> None:
        self.call("passwd", password=password)
        self.session = None

    def ask(self, prompt: str, **options: Any) -> Answer:
        return Answer(self, self.send("ask", prompt=prompt, **options))

    def status(self) -> dict[str, Any]:
        return self.call("status")

    def export_to(self, path: Path, **fields: Any) -> dict[str, Any]:
        """Write the audit export the service sends to `path` (0600, atomically), only if
        its bytes are those the service recorded by their sha256; else IntegrityError
        and no file. `fields`: `audit export`'s (`format`, `since_seq`, ...)."""
        return self._receive_to(
            path, "export", lambda text: text.encode("utf-8"), "audit", call="export", **fields
        )

    def draft_to(self, path: Path, **fields: Any) -> dict[str, Any]:
        """Write the draft the service renders (`draft`'s fields: conversation, format,
        whole, title) to `path`, as `export_to` writes an export."""
        return self._receive_to(path, "draft", _base64, "draft", **fields)

    def _receive_to(
        self, path: Path, what: str, decode: Callable[[str], bytes], op: str, **fields: Any
    ) -> dict[str, Any]:
        digest = hashlib.sha256()
        with atomic_writer(path, mode=0o600) as sink:

            def write(text: str) -> None:
                data = decode(text)
                digest.update(data)
                sink.write(data)

            found = self.call(op, on_data=write, **fields)
            if not hmac.compare_digest(digest.hexdigest(), str(found.get("sha256"))):
                raise IntegrityError(
                    f"the {what} for {path} is not what the service sent and recorded; "
                    "nothing was written"
                )
        return found

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Answer(Iterator[str]):
    """An answer from the service: iterate for its text; `result` once it ended."""

    def __init__(self, client: Client, request_id: int) -> None:
        self.client = client
        self.request_id = request_id
        self.result: dict[str, Any] | None = None
        self.ended = False  # its final reply (ok or error) was read
        self.on_queued: Callable[[int], None] | None = None
        self.started = False  # the engine took it up (an `ask` is recorded)
        self.ahead: int | None = None  # answers ahead of it when it was queued
        self._cancel_id: int | None = None
        self._early: list[str] = []

    def wait_started(self) -> None:
        """Read on until the engine takes the request up (or it ends)."""
        self._read_until(lambda: self.started)

    def wait_accepted(self) -> None:
        """Read on until the request is queued or taken up (or it ends)."""
        self._read_until(lambda: self.started or self.ahead is not None)

    def _read_until(self, condition: Callable[[], bool]) -> None:
        while not condition() and not self.ended:
            piece = self._read()
            if piece is not None:
                self._early.append(piece)

    def __next__(self) -> str:
        if self._early:
            return self._early.pop(0)
        while not self.ended:
            piece = self._read()
            if piece is not None:
                return piece
        raise StopIteration

    def _read(self) -> str | None:
        """One message: its text, or None once it was taken into account."""
        message = self.client.receive()
        if message.get("id") == 0 and "error" in message:
            raise as_error(message["error"])
        if message.get("id") in self.client.unanswered:
            self.client.unanswered.discard(message["id"])  # a cancel's own reply
            return None
        if message.get("id") != self.request_id:
            raise ServiceError("the appliance service answered a request never made")
        if "text" in message and isinstance(message["text"], str):
            return message["text"]
        if "started" in message:
            self.started = True
        elif "queued" in message:
            ahead = message["queued"].get("ahead") if isinstance(message["queued"], dict) else 0
            self.ahead = ahead if isinstance(ahead, int) else 0
            if self.on_queued is not None:
                self.on_queued(self.ahead)
        elif "error" in message:
            self.ended = True
            raise as_error(message["error"])
        elif "ok" in message:
            self.result = message["ok"] if isinstance(message["ok"], dict) else {}
            self.ended = True
        return None

    def cancel(self) -> None:
        """Ask the service to stop this answer; iterate on to its end (outcome `cancelled`)."""
        if self._cancel_id is None and not self.ended:
            self._cancel_id = self.client.send("cancel", request=self.request_id)
            self.client.unanswered.add(self._cancel_id)

    def text(self) -> str:
        return "".join(self)


def _base64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error
        raise ServiceError("the appliance service sent a part that is not base64") from None
