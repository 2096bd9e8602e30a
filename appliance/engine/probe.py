"""Let a disposable child process be the first to hand a file to llama.cpp.

The Python checks in `gguf.py` and `hparams.py` refuse every malformed file we
know of, but llama.cpp aborts the whole process on inconsistencies it treats as
programming errors, and a hostile file can look for one we do not know. So an
unauthenticated file is loaded once in a child process (CPU only, no context):
if the child dies, the appliance reports one sentence and lives on.

Files whose bytes are authenticated (a catalogued model matching its pinned
sha256, a sealed model matching the sha256 its signed bundle pins) skip the
probe.

The child may be given decrypted weights (a sealed model from outside the
catalog), and execve makes every new process dumpable again: any process of
the same user could then copy the weights through /proc/CHILD/fd or
/proc/CHILD/mem. So the child makes itself non-dumpable with no core file
first, says so over a socket, and only then receives the model as a file
descriptor (SCM_RIGHTS); nothing of the model is in its command line. A child
that cannot harden itself exits and is given nothing.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

from appliance.errors import (
    ApplianceError,
    EngineError,
    HostSecurityError,
    InputError,
    ModelFormatError,
)
from appliance.seal import harden_process

TIMEOUT_SECONDS = 300
LOADED = "loaded"  # the child's last word when llama.cpp accepted the file
HARDENED = b"hardened"  # the child's word that it may be given the model
HARDENING_FAILED = 3  # the child's exit status when it could not harden itself
NAME_LIMIT = 4096  # bytes of the model's name sent with its descriptor
_CHILD = "import sys; from appliance.engine.probe import child; child(int(sys.argv[1]))"


def probe(path: Path) -> None:
    """Raise ModelFormatError if llama.cpp crashes loading `path`, EngineError if it
    refuses, HostSecurityError if the child could not be made safe to hold it."""
    try:
        model = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    try:
        result, handed = _run_child(model, str(path))
    finally:
        os.close(model)
    lines = result.stderr.strip().splitlines()
    last = lines[-1] if lines else None
    if not handed:
        if result.returncode == HARDENING_FAILED and last:
            raise HostSecurityError(last)
        raise EngineError(
            f"the probe process for {path} ended before it was given the file: "
            f"{last or _status(result.returncode)}"
        )
    if result.returncode == 0 and result.stdout.strip() == LOADED:
        return
    if result.returncode < 0:
        raise ModelFormatError(
            f"{path} crashed llama.cpp's loader ({_status(result.returncode)}): it is corrupt "
            "or of a kind this engine does not support"
        )
    raise EngineError(last or f"llama.cpp could not load {path}")


def _run_child(model: int, name: str) -> tuple[subprocess.CompletedProcess[str], bool]:
    """Start the child, hand it `model` once it is hardened; its result, and whether
    it was handed the file."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours:
        with theirs:
            try:
                process = subprocess.Popen(
                    [sys.executable, "-c", _CHILD, str(theirs.fileno())],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    pass_fds=(theirs.fileno(),),
                )
            except OSError as exc:
                raise EngineError(f"cannot start the probe process: {exc.strerror}") from None
        try:
            ours.settimeout(TIMEOUT_SECONDS)
            handed = _hand_over(ours, model, name)
            stdout, stderr = process.communicate(timeout=TIMEOUT_SECONDS)
        except (TimeoutError, subprocess.TimeoutExpired):
            raise EngineError(
                f"llama.cpp did not finish reading {name} within {TIMEOUT_SECONDS} seconds"
            ) from None
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), handed


def _hand_over(channel: socket.socket, model: int, name: str) -> bool:
    """Send the model's descriptor once, and only once, the child says it is hardened."""
    try:
        if channel.recv(len(HARDENED)) != HARDENED:
            return False  # it exited (or said something else): it gets nothing
        socket.send_fds(channel, [name.encode()[:NAME_LIMIT]], [model])
    except (BrokenPipeError, ConnectionResetError):
        return False
    return True


def _status(returncode: int) -> str:
    if returncode < 0:
        return signal.Signals(-returncode).name
    return f"exit status {returncode}"


def child(channel_fd: int) -> None:
    """The probe's child process: harden, receive the model, load it, report."""
    from appliance.engine import native

    with socket.socket(fileno=channel_fd) as channel:
        try:
            native.supports_gpu_offload()  # starts llama.cpp before the model is here
            harden_process()
        except ApplianceError as exc:
            _leave(str(exc), HARDENING_FAILED)
        channel.sendall(HARDENED)
        message, fds, flags, _ = socket.recv_fds(channel, NAME_LIMIT, 1)
        if len(fds) != 1 or flags & socket.MSG_CTRUNC:
            _leave("the probe process was not given the model", 1)
        name = message.decode("utf-8", errors="replace")
        error = None
        try:
            native.load_model_only(Path(f"/proc/self/fd/{fds[0]}"), name)
        except EngineError as exc:
            error = str(exc)
        # Closed before exit: an exiting process drops its memory before its
        # files, and in between its /proc/PID/fd is open to the user again.
        os.close(fds[0])
        if error is not None:
            _leave(error, 1)
        print(LOADED)
        _leave("", 0)


def _leave(message: str, code: int) -> NoReturn:
    if message:
        print(message, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    # _exit: the verdict is given; native teardown at exit (GPU runtimes) must
    # not turn a loaded model into a reported crash.
    os._exit(code)
