"""The appliance service: one process per host that owns the home and serves every user.

It alone opens the home (accounts, audit log, policy, sealed model) and runs
the whole session pipeline for each connection: sign-in, roles, idle
timeout, DLP in and out, labels against clearance, audit before and after.
One engine serves every client from one copy of the model; answers take
turns through `AnswerQueue`. A connection is served by its own thread and
its own writer (`connection`), so no client can stall another.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from appliance import __version__
from appliance.audit import Actor, AuditLog, Checkpoint, Event
from appliance.backup import (
    BackupResult,
    BackupSchedule,
    last_backup,
    make_backup,
    not_configured,
    site_recipients,
)
from appliance.config import load_home_config
from appliance.documents.home import escrow_to_officers, open_documents
from appliance.documents.keys import documents_dir
from appliance.documents.sandbox import stop_fork_server
from appliance.documents.store import STORE_FILE, DocumentStore
from appliance.engine import ChatEngine
from appliance.engine.remote import RemoteEngine
from appliance.errors import ApplianceError, BusyError, ServiceError
from appliance.health import Check, check, home_checks, model_check, release_report
from appliance.identity import has_users
from appliance.policy import Policy
from appliance.policy.airgap import attest
from appliance.service.connection import Connection
from appliance.service.endpoint import peer_of, read_marker
from appliance.service.protocol import VERSION, encode, error_body
from appliance.service.queue import AnswerQueue

log = logging.getLogger("appliance.service")

SYSTEM = Actor("appliance", "system")
DRAIN_SECONDS = 30.0  # a running answer may finish this long when the service stops


class Server:
    def __init__(
        self,
        home: Path,
        policy: Policy,
        audit: AuditLog,
        engine: ChatEngine,
        model: str,
        listener: socket.socket,
        remote: RemoteEngine | None = None,
    ) -> None:
        self.home = home
        self.remote = remote  # GPU servers on the closed network, where the site lists some
        self.policy = policy
        self.log = audit
        self.engine = engine
        self.model = model
        self.config = load_home_config(home)  # read once, as the policy is
        self.version = __version__
        self.listener = listener
        limits = policy.service
        both = remote is not None and remote is not engine  # "remote" backend: one engine
        slots = engine.slots + (remote.slots if both and remote is not None else 0)
        self.queue = AnswerQueue(limits.max_queued, limits.max_per_user, slots)
        self._connections: set[Connection] = set()
        self._lock = threading.Lock()
        self.setting_up = threading.Lock()  # `setup`: the first accounts, made once
        self._documents: DocumentStore | None = None
        self._schedule: BackupSchedule | None = None
        self._stopping = threading.Event()
        self._stopped = False
        self.started = time.time()

    def serve(self) -> None:
        """Accept clients until `stop()` (and make the site's scheduled backups meanwhile)."""
        self._start_schedule()
        self.listener.settimeout(0.5)
        while not self._stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    break
                raise
            self._admit(sock)

    def _admit(self, sock: socket.socket) -> None:
        sock.settimeout(None)
        with self._lock:
            full = len(self._connections) >= self.policy.service.max_sessions
        if full:
            busy = BusyError(
                f"the appliance has {self.policy.service.max_sessions} sessions open, the most "
                "its policy allows; try again shortly",
                code="sessions_full",
                most=self.policy.service.max_sessions,
            )
            with contextlib.suppress(OSError):
                sock.settimeout(2.0)
                sock.sendall(encode({"id": 0, "error": error_body(busy)}))
            sock.close()
            return
        connection = Connection(self, sock, peer_of(sock))
        with self._lock:
            self._connections.add(connection)
        threading.Thread(target=connection.run, name="client", daemon=True).start()

    def forget(self, connection: Connection) -> None:
        with self._lock:
            self._connections.discard(connection)

    def documents(self) -> DocumentStore:
        """The home's documents store, opened on first use (its key made then)."""
        with self._lock:
            if self._documents is None:
                self._documents = open_documents(self.home, self.log)
            else:
                escrow_to_officers(self.home, self.log)  # they may have changed meanwhile
            return self._documents

    def backup(self, actor: Actor, *, scheduled: bool = False) -> BackupResult:
        """A backup of the home into the site's folder, sealed to the site's recipients
        ([backup] in config.toml as the service read it at start); audited."""
        site = self.config.backup
        if site is None:
            raise not_configured(self.home)
        recipients = site_recipients(self.home, site)
        store = documents_dir(self.home) / STORE_FILE
        documents = self.documents() if store.is_file() else None
        return make_backup(
            self.home,
            self.log,
            actor,
            site.folder,
            recipients,
            documents=documents,
            scheduled=scheduled,
        )

    def _start_schedule(self) -> None:
        site = self.config.backup
        if site is None or site.every_hours is None or self._schedule is not None:
            return
        last = last_backup(self.log)
        self._schedule = BackupSchedule(
            site.every_hours, last[1] if last else None, self._scheduled_backup
        )
        self._schedule.start()

    def _scheduled_backup(self) -> None:
        """A failure is already an audit event (outcome failed); here a log line, and the
        service goes on."""
        try:
            result = self.backup(SYSTEM, scheduled=True)
        except ApplianceError as exc:
            log.error("the scheduled backup failed: %s", exc)
            return
        log.info("scheduled backup %s (seq %d)", result.path, result.last_seq)

    def hello(self) -> dict[str, Any]:
        """What any client may know before signing in: enough to draw a sign-in screen
        and the classification banners in the site's language and keys."""
        policy, config = self.policy, self.config
        return {
            "protocol": VERSION,
            "appliance": self.version,
            "policy": policy.describe(),
            "policy_sha256": policy.sha256,
            "language": config.language or policy.language,
            "model": self.model,
            "levels": [
                {"id": lv.id, "rank": lv.rank, "ko": lv.ko, "en": lv.en, "colour": lv.colour}
                for lv in policy.levels
            ],
            "development": policy.allow_dev_mode and not has_users(self.home),
            "airgapped": attest().airgapped,  # as the service sees its own network
            "demo": config.demo,
            "keymap": config.keymap,
            "tasks": [{"id": t.id, "ko": t.ko, "en": t.en} for t in policy.tasks],
            "exports": config.exports,
        }

    def status(self) -> dict[str, Any]:
        with self._lock:
            sessions = [connection.describe() for connection in self._connections]
        info = self.engine.info
        return {
            "appliance": self.version,
            "pid": os.getpid(),
            "since": round(self.started),
            "policy": self.policy.describe(),
            "model": self.model,
            "engine": {
                "name": info.name,
                "quantization": info.quantization,
                "context": self.engine.context_length,
                "gpu_offload": self.engine.gpu_offload,
                "backend": self.engine.settings.backend,
                "slots": self.engine.slots,
                "adapters": sorted(self.engine.adapters),
                "remote": [
                    {"name": e.name, "model": e.model, "max_level": e.max_level}
                    for e in (self.remote.endpoints if self.remote is not None else ())
                ],
            },
            "limits": {
                "max_sessions": self.policy.service.max_sessions,
                "max_queued": self.policy.service.max_queued,
                "max_per_user": self.policy.service.max_per_user,
            },
            "sessions": sessions,
            "queue": self.queue.snapshot(),
        }

    def doctor(self, trusted: Checkpoint | None) -> list[Check]:
        """`appliance doctor`'s checks of the home, with the model this service serves
        (loaded and checked at its start) in place of loading one."""
        adapters = ", ".join(sorted(self.engine.adapters))
        detail = (
            f"{self.model}: served by this service since {time.ctime(self.started)} "
            f"({self.engine.settings.backend}, {self.engine.slots} slots"
            + (f", the adapters {adapters})" if adapters else ")")
        )

        def remotes(policy: Policy) -> list[Check]:
            listed = self.remote.endpoints if self.remote is not None else ()
            return [
                check(
                    "remote",
                    None,
                    f"{len(listed)} GPU server(s) in use; root's 'appliance doctor' on the host "
                    "asks each for a token",
                )
            ]

        installed = read_marker() is not None
        return home_checks(
            self.home,
            trusted,
            lambda: model_check(detail, lambda: release_report(self.home)),
            remotes,
            installed=installed,
            log=self.log,
        )

    def close_listener(self) -> None:
        """No new clients: `serve()` returns (safe from any thread)."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self.listener.close()

    def stop(self, reason: str) -> None:
        """Drain: no new clients or answers; the running answer may finish, then all end."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self.close_listener()
        if self._schedule is not None:
            self._schedule.stop()  # a backup under way ends first
        for job in self.queue.close(DRAIN_SECONDS):
            job.cancel()  # never ran: its client hears the service stopped
        with self._lock:
            connections = list(self._connections)
        ending = ServiceError("the appliance service stopped", code="stopped")
        for connection in connections:
            connection.outbox.put({"id": 0, "error": error_body(ending)})
            connection.close("service stopped")
        details = {"reason": reason, "answered": self.queue.answered}
        with contextlib.suppress(ApplianceError):
            self.log.record(Event(SYSTEM, "shutdown", "service", details=details))
        with self._lock:
            documents, self._documents = self._documents, None
        if documents is not None:
            documents.close()
        stop_fork_server()


def recover_unanswered(audit: AuditLog) -> int:
    """Record a failed `answer` for every `ask` left open by a crash; return how many.

    Runs at start, before any client: every question in the log then has
    exactly one outcome, whatever happened to the process that took it.
    """
    answered: set[int] = set()
    asks: dict[int, dict[str, Any]] = {}
    for row in audit.events(action="answer"):
        ask_seq = json.loads(row["leaf"]).get("details", {}).get("ask_seq")
        if isinstance(ask_seq, int):
            answered.add(ask_seq)
    for row in audit.events(action="ask"):
        if row["seq"] not in answered:
            asks[row["seq"]] = json.loads(row["leaf"])
    for seq, leaf in sorted(asks.items()):
        actor = Actor(str(leaf.get("user")), str(leaf.get("role")))
        details = {"ask_seq": seq, "chars": 0, "error": "the service stopped before answering"}
        event = Event(actor, "answer", leaf.get("object"), "failed", leaf.get("label"), details)
        audit.record(event)
    return len(asks)
