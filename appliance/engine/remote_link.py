"""The remote backend's connections: which endpoint to try next, and one request's link.

`Pool` counts each endpoint's answers in flight and its back-off: the next
request goes to an endpoint that is up, with the fewest answers in flight,
ties in rotation. `Exchange` makes one connection (TCP, the TLS 1.3
handshake, the pin), sends one request on it and can be aborted from any
thread: closing the connection is how an answer is cancelled, and the
server frees its slot at once.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import select
import socket
import ssl
import threading
import time
from typing import Any

from appliance.engine.tls import (
    Endpoint,
    check_peer,
    describe_tls_error,
    handshake_failed,
    server_alert,
)
from appliance.errors import EngineError

DOWN_SECONDS = 30.0  # an endpoint that could not be reached is skipped this long
# The longest wait for a server's verdict on the client certificate (servers that
# send no session ticket make every connection wait this long).
VERDICT_SECONDS = 1.0


class Pool:
    """Answers in flight and back-offs per endpoint; picks the next to try."""

    def __init__(self, count: int) -> None:
        self._lock = threading.Lock()
        self._outstanding = [0] * count
        self._down_until = [0.0] * count
        self._turn = 0

    def pick(self, tried: set[int]) -> int | None:
        """Up before down, then the fewest answers in flight, ties in rotation; counted."""
        with self._lock:
            count, now = len(self._outstanding), time.monotonic()
            left = [index for index in range(count) if index not in tried]
            if not left:
                return None
            best = min(
                left,
                key=lambda i: (
                    self._down_until[i] > now,
                    self._outstanding[i],
                    (i - self._turn) % count,
                ),
            )
            self._turn = (best + 1) % count
            self._outstanding[best] += 1
            return best

    def release(self, index: int) -> None:
        with self._lock:
            self._outstanding[index] -= 1

    def down(self, index: int) -> None:
        with self._lock:
            self._down_until[index] = time.monotonic() + DOWN_SECONDS

    def up(self, index: int) -> None:
        with self._lock:
            self._down_until[index] = 0.0


class _Connection(http.client.HTTPConnection):
    """http.client on a socket already connected (TLS done): it never connects itself,
    so no name is ever resolved."""

    def connect(self) -> None:
        raise http.client.NotConnected("the connection was closed")


class Exchange:
    """One request's connection, which another thread may abort at any moment."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socket: ssl.SSLSocket | None = None
        self._connection: _Connection | None = None
        self.fingerprint: str | None = None
        self.aborted = False

    def connect(
        self, endpoint: Endpoint, context: ssl.SSLContext, connect: float, read: float
    ) -> bool:
        """TCP, the TLS handshake and the pin; False if aborted meanwhile, EngineError
        (one line naming the endpoint) if it failed. Nothing of a request is sent."""
        self.close()
        try:
            raw = _connected(endpoint, connect)
        except ConnectionRefusedError:
            raise EngineError(f"{endpoint.label}: the connection was refused") from None
        except TimeoutError:
            raise EngineError(
                f"{endpoint.label}: no answer to connecting within {connect:g} seconds"
            ) from None
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise EngineError(f"{endpoint.label}: cannot connect: {reason}") from None
        try:
            sock = context.wrap_socket(
                raw, server_hostname=endpoint.server_name, do_handshake_on_connect=False
            )
        except BaseException:
            raw.close()
            raise
        with self._lock:
            self._socket = sock
            if self.aborted:
                return False
        try:
            sock.do_handshake()
        except OSError as exc:
            if self.aborted:
                return False
            reason = describe_tls_error(endpoint, exc)
            if isinstance(exc, TimeoutError):
                reason = f"no answer within {connect:g} seconds"
            raise EngineError(handshake_failed(endpoint, reason)) from None
        self.fingerprint = check_peer(endpoint, sock.getpeercert(binary_form=True))
        _await_verdict(endpoint, sock, min(connect, VERDICT_SECONDS))
        sock.settimeout(read)
        connection = _Connection(endpoint.server_name, endpoint.port)
        connection.sock = sock
        with self._lock:
            self._connection = connection
        return not self.aborted

    def send(self, body: dict[str, Any]) -> http.client.HTTPResponse:
        connection = self._connection
        if connection is None or self.aborted:
            raise ConnectionAbortedError("the answer was cancelled")
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        connection.request("POST", "/v1/completions", data, headers)
        return connection.getresponse()

    def abort(self) -> None:
        """Wake a reader blocked on the socket and drop the connection: the server
        sees its client gone and frees the slot."""
        with self._lock:
            self.aborted = True
            sock = self._socket
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed by its reader
                # The plain socket's shutdown: SSLSocket's own would drop its SSL
                # object under the reading thread.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def close(self) -> None:
        with self._lock:
            sock, self._socket = self._socket, None
            connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
        if sock is not None:
            sock.close()


def _connected(endpoint: Endpoint, timeout: float) -> socket.socket:
    """A TCP connection to the endpoint's address: no resolver is asked (an IP literal)."""
    family = socket.AF_INET6 if ":" in endpoint.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        # Small messages both ways (handshake flights, a request, events): no Nagle.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(timeout)
        sock.connect((endpoint.host, endpoint.port))
    except BaseException:
        sock.close()
        raise
    return sock


def _await_verdict(endpoint: Endpoint, sock: ssl.SSLSocket, seconds: float) -> None:
    """Wait until the server has accepted the client certificate; EngineError if not.

    In TLS 1.3 the client's handshake ends before the server has judged its
    certificate: the verdict comes after, as an alert (refused) or as session
    tickets (accepted), which the common servers send. Waiting for it keeps a
    refusal a handshake failure, before any byte of the request is sent (so
    another endpoint may be tried), instead of a reset that loses the alert.
    A server that sends no ticket is taken to accept after `seconds`.
    """
    deadline = time.monotonic() + seconds
    sock.settimeout(0.0)
    while True:
        try:
            data = sock.recv(1)
        except ssl.SSLWantReadError:
            session, left = sock.session, deadline - time.monotonic()
            if (session is not None and session.has_ticket) or left <= 0:
                return
            waiting = select.poll()  # not select(): a service's descriptors pass 1024
            waiting.register(sock, select.POLLIN)
            waiting.poll(left * 1000)
            continue
        except OSError as exc:
            if server_alert(exc) is not None:
                reason = describe_tls_error(endpoint, exc)
                raise EngineError(handshake_failed(endpoint, reason)) from None
            data = b""
        if data:
            raise EngineError(f"{endpoint.label}: the server spoke before it was asked")
        reason = "the server closed the connection (it may refuse the client certificate)"
        raise EngineError(handshake_failed(endpoint, reason))


def lost(endpoint: Endpoint, exc: BaseException, read: float) -> str:
    """The line for a request that broke after it was sent."""
    if server_alert(exc) is not None:
        return handshake_failed(endpoint, describe_tls_error(endpoint, exc))
    if isinstance(exc, TimeoutError):
        return f"{endpoint.label}: nothing came for {read:g} seconds; the answer was lost"
    return f"{endpoint.label}: the connection broke; the answer was lost"
