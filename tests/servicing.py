"""A real `appliance serve` process for tests, and raw protocol clients."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from appliance.audit import Actor, AuditLog, audit_dir
from appliance.homestate import record_state
from appliance.identity import Users
from appliance.policy import load_policy
from appliance.service import Client, embedded_service, home_socket
from tests.conftest import AIR_GAPPED, TEST_SETTINGS
from tests.staff import PASSWORDS

SERVE_OPTIONS = ["--threads", str(TEST_SETTINGS.threads), "--context", "2048"]


class Service:
    def __init__(self, home: Path, process: subprocess.Popen[str], stderr: list[str]) -> None:
        self.home = home
        self.process = process
        self.stderr = stderr  # filled as the service writes
        self.socket = home_socket(home)

    def client(self, user: str | None = None, password: str | None = None, **kw: Any) -> Client:
        client = Client(self.socket, timeout=120)
        if user is not None:
            client.sign_in(user, password or PASSWORDS[user], **kw)
        return client

    def raw(self) -> Raw:
        return Raw(self.socket)

    def stop(self, sig: int = signal.SIGTERM) -> str:
        """Signal the service (its whole process group) and return its stderr."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
        self.process.wait(timeout=120)
        time.sleep(0.1)  # the reader thread takes the last lines
        return "".join(self.stderr)


def start_service(home: Path, model: Path, *extra: str, air_gapped: bool = True) -> Service:
    """`appliance serve` on `home`, ready to accept clients (air-gapped: defense-kr needs it)."""
    env = {**os.environ, "APPLIANCE_HOME": str(home)}
    env.pop("APPLIANCE_DEBUG", None)
    prefix = AIR_GAPPED if air_gapped else []
    command = [*prefix, sys.executable, "-m", "appliance", "serve", "--model", str(model)]
    process = subprocess.Popen(
        [*command, *SERVE_OPTIONS, *extra],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    # Ready once it says so on stderr (a socket that answers may be another service's).
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in process.stderr:  # type: ignore[union-attr]
            lines.append(line)
            if line.startswith("appliance: serving"):
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    service = Service(home, process, lines)
    if "--socket" in extra:
        service.socket = Path(extra[extra.index("--socket") + 1])
    if not ready.wait(180) or process.poll() is not None:
        service.stop(signal.SIGKILL)
        raise AssertionError(f"the service did not start: {''.join(lines)}")
    return service


@contextlib.contextmanager
def defense_served(
    home: Path, engine: Any, *, edit: tuple[str, str] | None = None
) -> Iterator[Path]:
    """The staffed defense-kr home served in this process (`embedded_service`, with a
    scripted engine), its air-gap requirement lifted (the tests run on a networked
    machine), and optionally one more edit of its policy; yields the socket."""
    text = (home / "policy.toml").read_text(encoding="utf-8")
    text = text.replace("require_airgap = true", "require_airgap = false")
    if edit is not None:
        assert edit[0] in text
        text = text.replace(*edit)
    (home / "policy.toml").write_text(text, encoding="utf-8")
    with AuditLog(audit_dir(home)) as log:  # as the commands that made the accounts do
        record_state(home, log, Actor("setup", "admin"), "user_add")
    policy = load_policy(home / "policy.toml")
    with AuditLog(audit_dir(home)) as log, embedded_service(home, policy, log, engine, "m") as path:
        yield path


@contextlib.contextmanager
def serving(home: Path, model: Path, *extra: str, air_gapped: bool = True) -> Iterator[Service]:
    service = start_service(home, model, *extra, air_gapped=air_gapped)
    try:
        yield service
    finally:
        service.stop()


def add_operator(home: Path, name: str, clearance: str = "restricted") -> None:
    """An operator who has set their own password (signed into the home's state)."""
    PASSWORDS.setdefault(name, f"{name}-password-1")
    with Users(home) as users:
        users.add(name, "operator", clearance, PASSWORDS[name], 8, must_change=False)
    with AuditLog(audit_dir(home)) as log:  # as `users add` does
        record_state(home, log, Actor("root1", "admin"), "user_add")


class Raw:
    """The protocol by hand: bytes in, decoded lines out."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(str(path))
        self.buffer = b""

    def send(self, message: dict[str, Any] | bytes) -> None:
        data = message if isinstance(message, bytes) else (json.dumps(message) + "\n").encode()
        self.sock.sendall(data)

    def request(self, op: str, request_id: int = 1, **fields: Any) -> None:
        self.send({"v": 1, "id": request_id, "op": op, **fields})

    def receive(self) -> dict[str, Any] | None:
        """The next message, or None when the service closed the connection."""
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def final(self, request_id: int = 1) -> dict[str, Any]:
        """Messages up to the final one (ok or error) of `request_id`."""
        while True:
            message = self.receive()
            assert message is not None, "the service closed the connection"
            if message["id"] in (request_id, 0) and ("ok" in message or "error" in message):
                return message

    def closed(self) -> bool:
        """Whether the service ends the connection (after what it still sends)."""
        while True:
            try:
                if self.receive() is None:
                    return True
            except OSError:
                return True

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def policy_changed(home: Path, old: str, new: str) -> Iterator[None]:
    """The home's policy with `old` replaced by `new`, as an officer accepted it, then back."""
    policy = home / "policy.toml"
    original = policy.read_text(encoding="utf-8")
    assert old in original
    _sign_policy(home, original.replace(old, new))
    try:
        yield
    finally:
        _sign_policy(home, original)


def _sign_policy(home: Path, text: str) -> None:
    (home / "policy.toml").write_text(text, encoding="utf-8")
    with AuditLog(audit_dir(home)) as log:  # as `audit state --accept` does
        record_state(home, log, Actor("lee", "officer"), "policy reviewed")
