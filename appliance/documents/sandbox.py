"""Parse a document in a disposable, hardened child process.

Parsers are large libraries run on bytes anyone may have crafted, so they
never run in the service: each document gets a fresh child
(documents/child.py) with an empty environment, cwd "/", no inherited
descriptors, limits on memory and CPU, and no right to write files. The
child hardens itself and says so before it is sent a byte of the document;
a child whose report is not right is killed unserved.

A fresh interpreter and the parsers' imports cost about a second, so the
children are forked by a fork server (documents/forkserver.py): a helper
started (lazily, once) the same way, which imports the parsers and then only
forks. It never sees a document or a secret. Each forked child hardens
itself and takes its limits exactly as a spawned one does. When the helper
cannot be used, children are spawned from a fresh interpreter instead.

The parent trusts nothing the child says: it reads at most `output_bytes`
before a wall-clock deadline, kills the child on either, always reaps it,
and checks its JSON answer field by field. Whatever goes wrong ends in a
DocumentError with one sentence (code "parser_failed" when the child failed,
else the child's own refusal: "unsupported_format", "protected",
"malformed"); no traceback and none of the child's stderr reaches the
caller. Each call has its own child and pipes, so threads may call at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import IO, Any, Protocol

from appliance.documents import child as protocol
from appliance.documents.forkserver import ForkedProcess, fork_child, stop_fork_server
from appliance.documents.formats import sniff_family
from appliance.documents.model import FORMATS, KINDS, Block, Parsed
from appliance.errors import DocumentError

__all__ = [
    "FORK_SERVER",
    "ParseLimits",
    "ParserChild",
    "children_started",
    "parse_document",
    "stop_fork_server",
]

CHILD_MODULE = "appliance.documents.child"
READY_BYTES = 4096  # the most the ready line may take
STDERR_BYTES = 4096  # kept of the child's stderr, for diagnostics only
READ_SIZE = 1 << 16
EXIT_GRACE_SECONDS = 1.0  # for a child that closed its stdout to finish exiting
REAP_SECONDS = 10.0  # for a killed child to be reaped
# Fork parser children from a prepared helper, sparing each document the interpreter's
# start and the parsers' imports; a fresh interpreter is spawned when the helper is down.
FORK_SERVER = True
REFUSAL_CODES = frozenset({"unsupported_format", "protected", "malformed", "parser_failed"})
MESSAGE_CHARS = 500
TITLE_CHARS = 1000
MOST_PAGES = 1_000_000
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class ParseLimits:
    memory_bytes: int = 1 << 30  # RLIMIT_AS of the child
    cpu_seconds: int = 60  # RLIMIT_CPU
    wall_seconds: float = 120.0  # the parent kills the child after this
    output_bytes: int = 64 << 20  # most JSON the parent reads back
    zip_entries: int = 10_000
    zip_total_bytes: int = 1 << 30  # uncompressed, all entries together
    zip_ratio: int = 200  # per entry, uncompressed/compressed


_children = 0  # parser children started by this process
_counting = threading.Lock()


def children_started() -> int:
    """How many parser children this process has started (what re-adding must not do)."""
    with _counting:
        return _children


def parse_document(data: bytes, limits: ParseLimits = ParseLimits()) -> Parsed:
    """The document's blocks, parsed in a fresh child; DocumentError on any failure."""
    sniff_family(data[:4096])  # refuse what no parser takes before starting anything
    try:
        with ParserChild.start(limits) as child:
            child.wait_ready()
            return child.parse(data)
    except DocumentError:
        raise
    except Exception as exc:  # our fault (out of descriptors, say), still told in one sentence
        raise _failed(f"the parser could not be run ({type(exc).__name__})") from None


class _Process(Protocol):
    """What ParserChild uses of a child: a spawned one (Popen) or a forked one."""

    pid: int
    returncode: int | None
    stdin: IO[bytes] | None
    stdout: IO[bytes] | None
    stderr: IO[bytes] | None

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def kill(self) -> None: ...


class ParserChild:
    """One parser child, from its start to its reaping (`close`, or the `with` block's end)."""

    def __init__(self, process: _Process, limits: ParseLimits) -> None:
        global _children
        with _counting:
            _children += 1
        self.process = process
        self.limits = limits
        self.deadline = time.monotonic() + limits.wall_seconds
        self.report: dict[str, Any] = {}
        self.stderr = bytearray()  # the child's last words, never shown to a user
        self._stdout = bytearray()
        self._timed_out = False

    @classmethod
    def start(cls, limits: ParseLimits) -> ParserChild:
        """A child from the fork server; a freshly spawned one when the server is down."""
        if FORK_SERVER:
            forked = fork_child(limits, time.monotonic() + limits.wall_seconds)
            if forked is not None:
                return cls(forked, limits)
        return cls.spawn(limits)

    @classmethod
    def spawn(cls, limits: ParseLimits) -> ParserChild:
        """A child started from a fresh interpreter."""
        try:
            process = subprocess.Popen(
                [sys.executable, "-I", "-m", CHILD_MODULE, json.dumps(asdict(limits))],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={},
                cwd="/",
                close_fds=True,
                bufsize=0,
            )
        except OSError as exc:
            raise _failed(f"the parser could not be started ({exc.strerror})") from None
        return cls(process, limits)

    @property
    def pid(self) -> int:
        return self.process.pid

    def __enter__(self) -> ParserChild:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def wait_ready(self) -> dict[str, Any]:
        """The child's hardening report, once it is ready; the child is killed if it is wrong."""
        self._exchange(b"", lambda buffer: b"\n" in buffer, READY_BYTES)
        line, _, rest = bytes(self._stdout).partition(b"\n")
        if not line:
            raise self._failure()  # it ended (or closed its stdout) before it was ready
        try:
            if not line.startswith(protocol.READY) or rest:
                raise ValueError("not a ready line")
            report = json.loads(line[len(protocol.READY) :])
        except (ValueError, RecursionError):
            raise self._failure("the parser gave an invalid answer") from None
        if not isinstance(report, dict) or not _hardened(report, self.limits, self.pid):
            raise self._failure("the parser process could not harden itself")
        self.report = report
        self._stdout.clear()
        return report

    def parse(self, data: bytes) -> Parsed:
        """Send the document, read the answer, and wait for the child to end."""
        cap = protocol.FRAME.size + self.limits.output_bytes
        message = protocol.FRAME.pack(len(data)) + data
        self._exchange(message, self._answered, cap)
        self._reap()
        if self.process.returncode != 0:
            raise self._failure()
        if not self._answered(self._stdout):
            raise self._failure("the parser gave no valid answer")
        size = protocol.FRAME.unpack_from(self._stdout)[0]
        return _decode(bytes(self._stdout[protocol.FRAME.size : protocol.FRAME.size + size]))

    def close(self) -> None:
        """Kill the child if it still runs, and reap it."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=REAP_SECONDS)
        if isinstance(self.process, ForkedProcess):
            self.process.release()
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()

    def _answered(self, buffer: bytearray) -> bool:
        if len(buffer) < protocol.FRAME.size:
            return False
        size = int(protocol.FRAME.unpack_from(buffer)[0])
        if size > self.limits.output_bytes:
            raise self._oversize()
        return len(buffer) >= protocol.FRAME.size + size

    def _exchange(self, message: bytes, done: Any, cap: int) -> None:
        """Write `message` to the child while reading its stdout (until `done`) and stderr.

        Ends early when the child closes its stdout; kills it at the deadline or
        when it writes more than `cap` bytes.
        """
        process = self.process
        assert process.stdin is not None
        assert process.stdout is not None
        assert process.stderr is not None
        pending = memoryview(message)
        with selectors.DefaultSelector() as selector:
            for pipe in (process.stdout, process.stderr):
                os.set_blocking(pipe.fileno(), False)
                selector.register(pipe, selectors.EVENT_READ)
            if pending:
                os.set_blocking(process.stdin.fileno(), False)
                selector.register(process.stdin, selectors.EVENT_WRITE)
            while not done(self._stdout):
                remaining = self.deadline - time.monotonic()
                if remaining <= 0:
                    self._timed_out = True
                    raise self._failure()
                events = selector.select(remaining)
                for key, _ in events:
                    if key.fileobj is process.stdin:
                        try:
                            pending = pending[os.write(process.stdin.fileno(), pending) :]
                        except BlockingIOError:
                            continue
                        except BrokenPipeError:  # the child stopped reading: it ended
                            pending = pending[len(pending) :]
                        if not pending:
                            selector.unregister(process.stdin)
                        continue
                    chunk = _read(key.fileobj)
                    if chunk is None:
                        continue
                    if key.fileobj is process.stderr:
                        self._keep_stderr(chunk)
                        if not chunk:
                            selector.unregister(process.stderr)
                        continue
                    if not chunk:
                        return  # stdout closed: the child is gone
                    self._stdout += chunk
                    if len(self._stdout) > cap:
                        raise self._oversize()

    def _keep_stderr(self, chunk: bytes) -> None:
        self.stderr += chunk
        del self.stderr[:-STDERR_BYTES]

    def _reap(self) -> None:
        try:
            self.process.wait(timeout=max(self.deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            self._timed_out = True
            raise self._failure() from None

    def _oversize(self) -> DocumentError:
        mib = self.limits.output_bytes / (1 << 20)
        return self._failure(f"the parser's answer was larger than {mib:g} MiB")

    def _failure(self, why: str | None = None) -> DocumentError:
        """The error for a child that did not answer as it should; it is killed and reaped."""
        if why is None and not self._timed_out:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=EXIT_GRACE_SECONDS)  # it may be ending on its own
        code = self.process.poll()
        self.close()
        if why is None:
            if self._timed_out:
                why = f"the parser took longer than {self.limits.wall_seconds:g} s"
            elif code is None:
                why = "the parser gave no valid answer"
            else:
                why = _explain_exit(code, self.limits)
        return _failed(why)


def _explain_exit(code: int, limits: ParseLimits) -> str:
    if code == protocol.EXIT_OUT_OF_MEMORY:
        return f"the parser ran out of memory (limit {limits.memory_bytes >> 20} MiB)"
    if code == -signal.SIGXCPU:
        return f"the parser exceeded {limits.cpu_seconds} s of CPU"
    if code == protocol.EXIT_HARDENING:
        return "the parser process could not harden itself"
    if code == protocol.EXIT_PARSER_ERROR:
        return "the parser failed on it"
    if code < 0:
        return f"the parser crashed (signal {-code})"
    if code == 0:
        return "the parser gave no valid answer"
    return f"the parser stopped unexpectedly (exit {code})"


def _failed(why: str) -> DocumentError:
    return DocumentError(f"The document could not be parsed: {why}.", code="parser_failed")


def _read(pipe: Any) -> bytes | None:
    """What the pipe has (b"" at its end), or None when it has nothing after all."""
    try:
        return os.read(pipe.fileno(), READ_SIZE)
    except BlockingIOError:
        return None
    except OSError:
        return b""


def _hardened(report: dict[str, Any], limits: ParseLimits, pid: int) -> bool:
    expected = {
        "pid": pid,
        "dumpable": 0,
        "no_new_privs": 1,
        "core": 0,
        "address_space": limits.memory_bytes,
        "cpu": limits.cpu_seconds,
        "file_size": 0,
        "open_files": protocol.OPEN_FILES,
    }
    return all(report.get(name) == value for name, value in expected.items())


# The answer -------------------------------------------------------------------------------


def _decode(payload: bytes) -> Parsed:
    """The child's answer, checked field by field: a refusal is raised as its DocumentError."""
    try:
        answer = json.loads(payload.decode("utf-8"), parse_constant=_no_constant)
        if isinstance(answer, dict) and set(answer) == {"error"}:
            raise _refusal(answer["error"])
        return _parsed(answer)
    except (ValueError, TypeError, KeyError, RecursionError):
        raise _failed("the parser gave an invalid answer") from None


def _refusal(error: Any) -> DocumentError:
    if not isinstance(error, dict) or set(error) != {"code", "message"}:
        raise ValueError("refusal")
    code, message = error["code"], error["message"]
    if code not in REFUSAL_CODES or not isinstance(message, str):
        raise ValueError("refusal")
    if not message or len(message) > MESSAGE_CHARS or not message.isprintable():
        raise ValueError("refusal")
    return DocumentError(message, code=code)


def _parsed(answer: Any) -> Parsed:
    if not isinstance(answer, dict) or set(answer) != {"format", "title", "pages", "blocks"}:
        raise ValueError("answer")
    fmt, title, pages, blocks = answer["format"], answer["title"], answer["pages"], answer["blocks"]
    if fmt not in FORMATS or not _text(title) or len(title) > TITLE_CHARS:
        raise ValueError("answer")
    if not _number(pages, allow_zero=True) or not isinstance(blocks, list):
        raise ValueError("answer")
    return Parsed(format=fmt, title=title, pages=pages, blocks=tuple(map(_block, blocks)))


def _block(item: Any) -> Block:
    if not isinstance(item, dict) or set(item) != {"text", "kind", "page", "section"}:
        raise ValueError("block")
    text, kind, page, section = item["text"], item["kind"], item["page"], item["section"]
    if not _text(text) or kind not in KINDS:
        raise ValueError("block")
    if not _number(page) or not _number(section):
        raise ValueError("block")
    return Block(text=text, kind=kind, page=page, section=section)


def _text(value: Any) -> bool:
    """A string UTF-8 can carry: JSON's escapes can make lone surrogates, which it cannot."""
    return isinstance(value, str) and _SURROGATE.search(value) is None


def _number(value: Any, *, allow_zero: bool = False) -> bool:
    """None, or a whole number in range (never a bool, which JSON cannot send anyway)."""
    if value is None:
        return True
    low = 0 if allow_zero else 1
    return type(value) is int and low <= value <= MOST_PAGES


def _no_constant(name: str) -> Any:
    raise ValueError(f"JSON constant {name}")
