"""The parser child: hardens itself, reads one document, answers with its blocks.

Run by sandbox.py as `python -I -m appliance.documents.child LIMITS` (LIMITS
is JSON: they are not secret), or forked by the fork server below. The
conversation on stdin and stdout:

  child:  b"ready " + a JSON report of its hardening + b"\\n", once it is hardened
  parent: the document, as an 8-byte big-endian length and the bytes
  child:  the answer, as an 8-byte big-endian length and JSON: `Parsed.as_json()`,
          or {"error": {"code": ..., "message": ...}} for a document it refuses

Before it says ready, and so before it has seen a byte of the document, the
child is non-dumpable with no core file, cannot gain privileges (no setuid
exec), and is bound by RLIMIT_AS and RLIMIT_CPU, may write no file
(RLIMIT_FSIZE 0) and hold few descriptors. Anything but a refusal (a bug,
running out of memory) ends it with an exit status the parent explains; no
traceback is ever written.

The fork server (`--server FD`; its client is documents/forkserver.py) saves
each document the interpreter's start and the parsers' imports: started
once, it imports them, hardens itself (never holding a document or a
secret: it only forks), and for each request on its control socket (the
limits, and the child's stdin, stdout, stderr and a status socket as
descriptors) forks a child that takes those descriptors as its own, closes
every other, and goes on as a spawned child would. The status socket gets
the child's pid and a pidfd (to signal it without a pid race), then its
exit status once the server has reaped it.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import selectors
import signal
import socket
import struct
import sys
import warnings
from typing import Any, NoReturn

from appliance.seal.memory import harden_process

FRAME = struct.Struct(">Q")
FORKED = struct.Struct(">q")  # the server's word on the status socket: the child's pid
EXITED = struct.Struct(">qi")  # then: the pid and its exit code (negative: the signal)
READY = b"ready "
OPEN_FILES = 16  # stdio, and a module or shared library being loaded
REQUEST_BYTES = 4096
EXIT_HARDENING = 3
EXIT_PROTOCOL = 4
EXIT_OUT_OF_MEMORY = 5
EXIT_PARSER_ERROR = 6
CHAIN_DEPTH = 16  # exceptions followed back from a refusal
PR_GET_DUMPABLE = 3
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PRELOADED = (
    "appliance.documents.formats",
    "appliance.documents.parsers.hwpx",
    "appliance.documents.parsers.hwp5",
    "appliance.documents.parsers.docx",
    "appliance.documents.parsers.pdf",
    "appliance.documents.parsers.text",
    "hwpx.hwp5.cfb",
)


def main(argv: list[str]) -> int:
    if argv[1:2] == ["--server"]:
        return serve(int(argv[2]))
    try:
        limits = json.loads(argv[1])
    except (IndexError, ValueError):
        return EXIT_PROTOCOL
    return serve_one(limits)


def serve_one(limits: dict[str, Any]) -> int:
    """Harden, say ready, read the document, answer; the exit status tells the rest."""
    try:
        harden(limits)
    except Exception:
        return EXIT_HARDENING
    warnings.simplefilter("ignore")  # stderr is for the parent's diagnostics, kept short
    stdout = sys.stdout.buffer
    try:
        stdout.write(READY + json.dumps(report()).encode() + b"\n")
        stdout.flush()
        data = _read_frame(sys.stdin.buffer)
        answer = _answer(data, limits)
        del data
        stdout.write(FRAME.pack(len(answer)) + answer)
        stdout.flush()
    except MemoryError:
        return EXIT_OUT_OF_MEMORY
    except (EOFError, BrokenPipeError):
        return EXIT_PROTOCOL
    except Exception as exc:  # a parser bug: its kind for the log, never a traceback
        sys.stderr.write(f"parser error: {type(exc).__name__}\n")
        return EXIT_PARSER_ERROR
    return 0


def harden(limits: dict[str, Any]) -> None:
    """Non-dumpable, no core, no new privileges, and the resource limits; verified."""
    harden_process()
    _no_new_privileges()
    memory, cpu = int(limits["memory_bytes"]), int(limits["cpu_seconds"])
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    # SIGXCPU at the soft limit; SIGKILL a second later should it be caught.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))


def _no_new_privileges() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    if libc.prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1:
        raise OSError("PR_SET_NO_NEW_PRIVS did not hold")


def report() -> dict[str, Any]:
    """What the parent checks before it sends the document."""
    libc = ctypes.CDLL(None, use_errno=True)
    return {
        "pid": os.getpid(),
        "dumpable": libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0),
        "no_new_privs": libc.prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0),
        "core": resource.getrlimit(resource.RLIMIT_CORE)[1],
        "address_space": resource.getrlimit(resource.RLIMIT_AS)[1],
        "cpu": resource.getrlimit(resource.RLIMIT_CPU)[0],
        "file_size": resource.getrlimit(resource.RLIMIT_FSIZE)[1],
        "open_files": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
    }


def _answer(data: bytes, limits: dict[str, Any]) -> bytes:
    from appliance.documents.formats import ZipLimits
    from appliance.documents.parsers import parse
    from appliance.errors import DocumentError

    zip_limits = ZipLimits(
        entries=int(limits["zip_entries"]),
        total_bytes=int(limits["zip_total_bytes"]),
        ratio=int(limits["zip_ratio"]),
    )
    try:
        reply: dict[str, Any] = parse(data, zip_limits).as_json()
    except DocumentError as refusal:
        if _ran_out_of_memory(refusal):
            raise MemoryError from None
        reply = {"error": {"code": refusal.code, "message": refusal.message}}
    except RecursionError:  # absurdly nested content: the parser's limit, not a bug
        reply = {"error": {"code": "malformed", "message": "The document nests too deeply."}}
    return json.dumps(reply, ensure_ascii=False).encode("utf-8")


def _ran_out_of_memory(error: BaseException) -> bool:
    """Whether a refusal stands for a MemoryError (a library may wrap one as damage)."""
    cause = error.__context__ or error.__cause__
    for _ in range(CHAIN_DEPTH):
        if cause is None or isinstance(cause, MemoryError):
            return cause is not None
        cause = cause.__context__ or cause.__cause__
    return False


def _read_frame(stream: Any) -> bytes:
    header = _read_exactly(stream, FRAME.size)
    return _read_exactly(stream, FRAME.unpack(header)[0])


def _read_exactly(stream: Any, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError
    return bytes(data)


# The fork server ---------------------------------------------------------------------------


def serve(control_fd: int) -> int:
    """Fork a parser child per request on the control socket until the parent hangs up."""
    harden_process()
    _no_new_privileges()
    warnings.simplefilter("ignore")
    for module in PRELOADED:
        __import__(module)
    control = socket.socket(fileno=control_fd)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the selector through the pipe
    statuses: dict[int, socket.socket] = {}
    with selectors.DefaultSelector() as selector:
        selector.register(control, selectors.EVENT_READ)
        selector.register(wake_read, selectors.EVENT_READ)
        while True:
            for key, _ in selector.select():
                if key.fileobj is not control:
                    os.read(wake_read, REQUEST_BYTES)
                elif not _fork_one(control, statuses):
                    return 0  # the parent is gone; its children end on their pipes
            _reap(statuses)


def _fork_one(control: socket.socket, statuses: dict[int, socket.socket]) -> bool:
    """Fork a child for the next request; False when the parent has hung up."""
    try:
        request, fds, _, _ = socket.recv_fds(control, REQUEST_BYTES, 4)
    except InterruptedError:
        return True
    if not request:
        return False
    if len(fds) != 4:
        for fd in fds:
            os.close(fd)
        return True
    status = socket.socket(fileno=fds[3])
    pid = os.fork()
    if pid == 0:
        _become_child(request, fds)
    for fd in fds[:3]:
        os.close(fd)
    pidfd = os.pidfd_open(pid)
    with contextlib.suppress(OSError):  # a parent that gave up: the child is reaped all the same
        socket.send_fds(status, [FORKED.pack(pid)], [pidfd])
    os.close(pidfd)
    statuses[pid] = status
    return True


def _become_child(request: bytes, fds: list[int]) -> NoReturn:
    """In the forked child: take the request's descriptors as stdio, close all others, serve."""
    code = EXIT_PROTOCOL
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target)
        os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        code = serve_one(json.loads(request))
    except MemoryError:
        code = EXIT_OUT_OF_MEMORY
    except BaseException:
        code = EXIT_PROTOCOL
    finally:
        os._exit(code)


def _reap(statuses: dict[int, socket.socket]) -> None:
    """Reap every child that ended and tell its parent how."""
    while statuses:
        try:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        status = statuses.pop(pid, None)
        if status is not None:
            with status, contextlib.suppress(OSError):
                status.send(EXITED.pack(pid, os.waitstatus_to_exitcode(wait_status)))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
