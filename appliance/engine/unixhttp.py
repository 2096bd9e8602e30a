"""HTTP to llama-server over its private UNIX socket: never a TCP port.

One connection per request: closing it is how an answer is cancelled (the
server stops the request when its client goes), and a connection never
carries one user's request after another's.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

from appliance.errors import EngineError

LINE_LIMIT = 1 << 20  # one server-sent event; the final one carries the settings echoed back


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over an AF_UNIX stream socket at `path`."""

    def __init__(self, path: str, timeout: float | None = None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def get_json(path: str, route: str, timeout: float) -> tuple[int, Any]:
    """A GET and its decoded JSON body (None when it is not JSON)."""
    connection = UnixHTTPConnection(path, timeout=timeout)
    try:
        connection.request("GET", route)
        response = connection.getresponse()
        body = response.read(LINE_LIMIT)
        return response.status, _json_or_none(body)
    finally:
        connection.close()


class Stream:
    """One streamed POST, which another thread may abort at any moment."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._connection: UnixHTTPConnection | None = None
        self.aborted = False

    def open(self, route: str, body: dict[str, Any]) -> http.client.HTTPResponse | None:
        """Send the request and read the response's head; None once aborted."""
        connection = UnixHTTPConnection(self._path)
        with self._lock:
            if self.aborted:
                return None
            self._connection = connection
        data = json.dumps(body).encode()
        connection.request("POST", route, data, {"Content-Type": "application/json"})
        return connection.getresponse()

    def abort(self) -> None:
        """Wake a reader blocked on the socket and drop the connection: the server
        sees its client gone and frees the slot."""
        with self._lock:
            self.aborted = True
            connection = self._connection
        sock = connection.sock if connection is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed by its reader
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


def events(response: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
    """The JSON objects of a server-sent event stream (`data: {...}` lines); ends
    where the stream ends. Comments (`: ping`) and blank lines are skipped."""
    while True:
        line = response.readline(LINE_LIMIT)
        if not line:
            return
        if not line.endswith(b"\n") and len(line) >= LINE_LIMIT:
            raise EngineError("llama-server sent an event larger than the appliance reads")
        if not line.startswith(b"data:"):
            continue
        event = _json_or_none(line[5:])
        if not isinstance(event, dict):
            raise EngineError("llama-server sent an event that is not a JSON object")
        yield event


def error_message(body: Any, status: int | None = None) -> str:
    """llama-server's reason for a refused request, as one line."""
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str) or not message.strip():
        return f"HTTP status {status}" if status is not None else "no reason given"
    return " ".join(message.split())[:300]


def _json_or_none(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None
