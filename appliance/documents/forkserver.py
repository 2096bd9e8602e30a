"""The fork server's client: the parent's side of the helper that forks parser children.

A fresh interpreter and the parsers' imports cost about a second a document,
so a helper (`python -I -m appliance.documents.child --server FD`, started
lazily, once, as hardened as a parser child) imports the parsers and then
only forks. It never sees a document or a secret: it receives the limits and
the new child's stdin, stdout, stderr and a status socket as descriptors.
The child it forks is signalled through a pidfd (no pid reuse race) and its
exit status comes back on the status socket once the helper has reaped it.

`fork_child` gives None when the helper cannot be used (no pidfds, or it
failed SERVER_FAILURES times): the caller then spawns a child instead. A
process that forks gets a helper of its own; its parent's is never used.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from typing import IO, TYPE_CHECKING

from appliance.documents import child as protocol

if TYPE_CHECKING:
    from appliance.documents.sandbox import ParseLimits

SERVER_FAILURES = 3  # after this many, children are only spawned
STOP_SECONDS = 10.0  # for the helper to exit once hung up


class ServerDown(Exception):
    """The fork server could not be started or did not fork: spawn instead."""


class _ForkServer:
    """The long-lived helper (child.serve) that forks parser children; it holds no secret
    and no document: it only ever receives the limits and the children's descriptors."""

    def __init__(self, process: subprocess.Popen[bytes], control: socket.socket) -> None:
        self.process = process
        self.control = control
        self.owner = os.getpid()  # a service that forks must not use its parent's helper
        self.lock = threading.Lock()
        self.stopped = False

    @classmethod
    def start(cls) -> _ForkServer:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            try:
                process = subprocess.Popen(
                    [
                        sys.executable,
                        "-I",
                        "-m",
                        protocol.__name__,
                        "--server",
                        str(theirs.fileno()),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env={},
                    cwd="/",
                    close_fds=True,
                    pass_fds=(theirs.fileno(),),
                )
            except OSError:
                ours.close()
                raise ServerDown from None
        return cls(process, ours)

    @property
    def alive(self) -> bool:
        return not self.stopped and self.owner == os.getpid() and self.process.poll() is None

    def fork(self, limits: ParseLimits, deadline: float) -> ForkedProcess:
        """Have the helper fork a child on new pipes, and learn its pid."""
        stdin_read, stdin_write = os.pipe()
        stdout_read, stdout_write = os.pipe()
        stderr_read, stderr_write = os.pipe()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        kept = [stdin_write, stdout_read, stderr_read]
        try:
            with self.lock:
                request = json.dumps(asdict(limits)).encode()
                given = [stdin_read, stdout_write, stderr_write, theirs.fileno()]
                socket.send_fds(self.control, [request], given)
            ours.settimeout(max(deadline - time.monotonic(), 0.001))
            message, fds, _, _ = socket.recv_fds(ours, protocol.FORKED.size, 1)
        except OSError:  # TimeoutError too: the helper is gone or stuck
            self.stop()
            _close(ours, *kept)
            raise ServerDown from None
        finally:
            _close(theirs, stdin_read, stdout_write, stderr_write)
        if len(message) != protocol.FORKED.size or len(fds) != 1:
            self.stop()
            _close(ours, *kept, *fds)
            raise ServerDown
        (pid,) = protocol.FORKED.unpack(message)
        return ForkedProcess(pid, fds[0], ours, stdin_write, stdout_read, stderr_read)

    def stop(self) -> None:
        """Hang up: the helper exits once its control socket closes."""
        self.stopped = True
        self.control.close()
        if self.owner == os.getpid():
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_SECONDS)


class ForkedProcess:
    """A child the fork server forked, with what ParserChild uses of Popen's interface.

    It is not our child: it is signalled through a pidfd (no pid reuse race) and
    its exit status comes from the helper, which reaps it, on the status socket.
    """

    def __init__(
        self, pid: int, pidfd: int, status: socket.socket, stdin: int, stdout: int, stderr: int
    ) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.stdin: IO[bytes] | None = os.fdopen(stdin, "wb", buffering=0)
        self.stdout: IO[bytes] | None = os.fdopen(stdout, "rb", buffering=0)
        self.stderr: IO[bytes] | None = os.fdopen(stderr, "rb", buffering=0)
        self._pidfd = pidfd
        self._status = status

    def poll(self) -> int | None:
        if self.returncode is None:
            self._collect(0.0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self._collect(timeout)
        if self.returncode is None:
            raise subprocess.TimeoutExpired("parser", timeout or 0.0)
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None and self._pidfd >= 0:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)

    def _collect(self, timeout: float | None) -> None:
        """The helper's word on how the child ended, if it comes within `timeout`."""
        poller = select.poll()
        poller.register(self._status, select.POLLIN)
        if not poller.poll(None if timeout is None else timeout * 1000):
            return
        try:
            message = self._status.recv(protocol.EXITED.size)
        except OSError:
            message = b""
        if len(message) == protocol.EXITED.size and protocol.EXITED.unpack(message)[0] == self.pid:
            self.returncode = protocol.EXITED.unpack(message)[1]
        else:  # the helper died without a word: make sure the child is gone too
            self.kill()
            self.returncode = -signal.SIGKILL
        self.release()

    def release(self) -> None:
        """Close the status socket and the pidfd (the helper reaps the child regardless)."""
        if self._pidfd >= 0:  # once only: the number may be another file's by now
            _close(self._status, self._pidfd)
            self._pidfd = -1


_server: _ForkServer | None = None
_server_lock = threading.Lock()
_server_failures = 0


def fork_child(limits: ParseLimits, deadline: float) -> ForkedProcess | None:
    """A child forked by the fork server; None when the server cannot be used."""
    global _server_failures
    if _server_failures >= SERVER_FAILURES or not _pidfds_work():
        return None
    try:
        return _fork_server().fork(limits, deadline)
    except (ServerDown, OSError):
        _server_failures += 1
        return None


@functools.cache
def _pidfds_work() -> bool:
    """Whether this kernel has pidfds (Linux 5.3), which forked children are signalled by."""
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return False
    return True


def _fork_server() -> _ForkServer:
    """The running fork server, started (again) when there is none."""
    global _server
    with _server_lock:
        if _server is None or not _server.alive:
            if _server is not None and _server.owner == os.getpid():
                _server.stop()
            _server = _ForkServer.start()
        return _server


def stop_fork_server() -> None:
    """End the fork server, if one runs (the service calls this as it stops)."""
    global _server
    with _server_lock:
        if _server is not None and _server.owner == os.getpid():
            _server.stop()
        _server = None


def _close(*things: socket.socket | int) -> None:
    for thing in things:
        with contextlib.suppress(OSError):
            if isinstance(thing, int):
                os.close(thing)
            else:
                thing.close()
