"""One llama-server child: started hardened, handed the model, watched, stopped.

The child is llama.cpp's own server, run with `appliance-nodump.so` preloaded
(engine/nodump.c): before llama-server's main() the preload makes the process
non-dumpable with no core file, says so on a socket pair, and only then
receives the model's file descriptor (SCM_RIGHTS), which `-m /proc/self/fd/N`
names. execve makes every process dumpable again, so a child that held the
model before hardening itself could be read through /proc by any process of
the user; this one never does. The parent sends the descriptor only after
the child's word, and a child that cannot harden itself exits unserved.

The environment is built from nothing: llama-server reads LLAMA_ARG_* (and
a cloud platform's AIP_* variables, which open a TCP port), so nothing of the
service's environment reaches it. It listens on a socket in a private (0700)
directory, never on TCP. Its log goes to a pipe that a thread drains, keeping
the last lines for error messages; it never reaches a terminal or a file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, ClassVar

from appliance.config import EngineSettings, physical_cores
from appliance.engine.unixhttp import get_json
from appliance.errors import EngineError, HostSecurityError

HARDENED = b"hardened"  # the preload's word (nodump.c)
HARDENING_FAILED = 3  # the preload's exit status when it could not harden the process
CHANNEL_ENV = "APPLIANCE_MODEL_CHANNEL"
TARGET_ENV = "APPLIANCE_MODEL_FD"
HANDSHAKE_SECONDS = 30.0
STOP_SECONDS = 5.0  # SIGTERM, then SIGKILL
POLL_SECONDS = 0.05
LOG_LINES = 20
# Passed through when set: which accelerators the child may use.
DEVICE_VARIABLES = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES")
UBATCH = 512  # llama.cpp's micro-batch, as the in-process engine (llama-cpp-python) uses


def describe_exit(code: int) -> str:
    return f"exit {code}"


class ServerProcess:
    """A running llama-server; `start` returns one once it is ready."""

    started: ClassVar[int] = 0  # children this process ever started (tests count them)

    def __init__(self, process: subprocess.Popen[bytes], directory: Path) -> None:
        self.process = process
        self.directory = directory
        self.socket_path = str(directory / "llama.sock")
        self._log: deque[str] = deque(maxlen=LOG_LINES)
        assert process.stderr is not None
        self._drain = threading.Thread(
            target=self._read_log, args=(process.stderr,), name="llama-server-log", daemon=True
        )
        self._drain.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    def start(
        cls,
        server: Path,
        preload: Path,
        arguments: Sequence[str],
        files: Sequence[int],
        ready_seconds: float,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> ServerProcess:
        """Start, harden, hand over the files and wait until it answers /health.

        `files` are the model's descriptor and then its LoRA adapters'
        (`--lora`, loaded unapplied: each request sets their scales).
        `arguments` follow `-m MODEL --host SOCKET`. EngineError (one line, with
        the child's last log line) if it exits or is not ready in time;
        HostSecurityError if it could not make itself non-dumpable.
        """
        directory = Path(tempfile.mkdtemp(prefix="appliance-llama-"))  # 0700
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # The child holds 0-2 and the channel when the files arrive, so they land
        # at or below channel + len(files): numbers above that are free to take.
        first = theirs.fileno() + len(files) + 1
        targets = [str(first + index) for index in range(len(files))]
        env = {name: os.environ[name] for name in DEVICE_VARIABLES if name in os.environ}
        env |= {
            "LD_PRELOAD": str(preload),
            CHANNEL_ENV: str(theirs.fileno()),
            TARGET_ENV: ",".join(targets),
        }
        command = [str(server), "-m", f"/proc/self/fd/{targets[0]}"]
        for adapter in targets[1:]:
            # Scale 0 unless a request sets one: a request that names no scales gets
            # the base model (--lora-init-without-apply alone only holds at start).
            command += ["--lora-scaled", f"/proc/self/fd/{adapter}:0"]
        if len(targets) > 1:
            command.append("--lora-init-without-apply")
        command += ["--host", str(directory / "llama.sock"), *arguments]
        cls.started += 1
        try:
            with theirs:
                process = subprocess.Popen(
                    command,
                    env=env,
                    cwd=directory,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    pass_fds=(theirs.fileno(),),
                )
        except OSError as exc:
            ours.close()
            shutil.rmtree(directory, ignore_errors=True)
            raise EngineError(f"cannot start llama-server: {exc.strerror}") from None
        child = cls(process, directory)
        try:
            with ours:
                child._hand_over(ours, files)
            child._wait_ready(ready_seconds, cancelled)
        except BaseException:
            child.stop()
            raise
        return child

    def _hand_over(self, channel: socket.socket, files: Sequence[int]) -> None:
        """Send the files once, and only once, the child says it is hardened."""
        channel.settimeout(HANDSHAKE_SECONDS)
        try:
            word = channel.recv(len(HARDENED))
            if word == HARDENED:
                socket.send_fds(channel, [b"m"], list(files))
                return
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            pass
        raise self._failure("before it was given the model")

    def _wait_ready(self, seconds: float, cancelled: Callable[[], bool]) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not cancelled():
            if self.process.poll() is not None:
                raise self._failure("while loading the model")
            with contextlib.suppress(OSError):
                status, _ = get_json(self.socket_path, "/health", timeout=5.0)
                if status == 200:
                    return
            time.sleep(POLL_SECONDS)
        if cancelled():
            raise EngineError("the engine was closed while llama-server was starting")
        raise EngineError(
            f"llama-server was not ready within {seconds:.0f} seconds: {self.last_line()}"
        )

    def _failure(self, when: str) -> EngineError | HostSecurityError:
        """The error for a child that stopped (or went silent) `when`."""
        try:
            code = self.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            return EngineError(f"llama-server stopped answering {when}")
        self._drain.join(timeout=STOP_SECONDS)  # its last words are in the pipe
        last = self.last_line()
        if code == HARDENING_FAILED:
            return HostSecurityError(last)
        return EngineError(f"llama-server stopped {when} ({describe_exit(code)}): {last}")

    def last_line(self) -> str:
        """The child's most telling recent log line, for error messages: the preload's
        word, else the first that says what failed, else the last."""
        lines = [line.strip() for line in self._log if line.strip()]
        for marker in ("appliance-nodump:", "failed to", "error"):
            for line in lines:
                if marker in line.lower():
                    return line
        return lines[-1] if lines else "no output"

    def recent_log(self) -> list[str]:
        return list(self._log)

    def _read_log(self, pipe: IO[bytes]) -> None:
        with pipe:
            for raw in pipe:
                text = raw.decode("utf-8", errors="replace").rstrip()
                self._log.append(_strip_prefix(text))

    def stop(self) -> None:
        """SIGTERM, SIGKILL after a few seconds; then the socket directory goes."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._drain.join(timeout=STOP_SECONDS)
        shutil.rmtree(self.directory, ignore_errors=True)


def server_arguments(
    settings: EngineSettings, context_length: int, gpu: bool, *, adapters: bool = False
) -> list[str]:
    """llama-server's options for these settings: the in-process engine's numerics
    (batch, micro-batch, flash attention off, full sliding-window cache), one KV
    cache of `context_length` per slot, and nothing it does not need. With
    `adapters`, no prompt cache across requests either: llama-server's RAM cache
    matches tokens whatever adapter computed them."""
    from appliance.engine.tools import tool_options  # see shipped

    threads = str(settings.threads or physical_cores())
    batch = min(settings.batch_size, context_length)
    layers = settings.gpu_layers if settings.gpu_layers is not None else (-1 if gpu else 0)
    arguments = [
        *tool_options(),
        *("-np", str(settings.slots), "-c", str(settings.slots * context_length)),
        "--no-kv-unified",  # each slot its own cache: an answer never depends on another's
        *("-t", threads, "-tb", threads, "-b", str(batch), "-ub", str(min(batch, UBATCH))),
        *("-fa", "off", "--swa-full", "-ngl", "all" if layers < 0 else str(layers)),
        *("--fit", "off", "--no-context-shift"),
        # No web UI, no slot listing (it shows prompts), no downloads.
        *("--no-webui", "--no-slots", "--offline"),
    ]
    if adapters or not settings.reuse_prompt_cache:
        # No prompt cache kept in RAM across requests (another user's prompt), and
        # no checkpoints, which split a prompt into other batch shapes.
        arguments += ["--cache-ram", "0", "--ctx-checkpoints", "0"]
    return arguments


def shipped() -> tuple[Path, Path]:
    """llama-server and the preload. Imported here: `python -m appliance.engine.tools`
    (make setup) must not find the module already imported by the package."""
    from appliance.engine.tools import NODUMP_PRELOAD, llama_tool, shipped_file

    return llama_tool("llama-server"), shipped_file(NODUMP_PRELOAD)


def _strip_prefix(line: str) -> str:
    """llama.cpp's log lines start with a time and a level (`0.00.010.140 E `)."""
    head, _, rest = line.partition(" ")
    if head.count(".") == 3 and rest[:2] in ("E ", "W ", "I ", "D ", "T "):
        return rest[2:].strip()
    return line
