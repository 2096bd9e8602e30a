"""The tamper-evident audit log: who asked what, when, at which classification.

Events are hash-chained in SQLite (`store`), their prompt and answer text is
sealed to the security officer (`content`), and the device signs checkpoints
of the chain (`keys`) that exports carry to another machine (`export`) where
`verify` proves nothing was changed, removed or rolled back.
Format: docs/formats/audit.md. Public API; other modules import only this.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from appliance.audit.content import ContentOpener, ContentSealer, read_officers, write_officers
from appliance.audit.keys import Checkpoint, DeviceKey, PublicKey
from appliance.audit.record import ACTIONS, Actor, Event
from appliance.audit.store import Pending, Store
from appliance.audit.verify import Report, TamperError, Verifier
from appliance.config import ensure_dir
from appliance.errors import AuditError
from appliance.seal import Opener, Recipient

__all__ = [
    "ACTIONS",
    "Actor",
    "AuditLog",
    "Checkpoint",
    "ContentOpener",
    "Event",
    "PublicKey",
    "Report",
    "TamperError",
    "audit_dir",
]

HEARTBEAT_SECONDS = 60.0  # well inside the 5-minute bound on silent tail loss
CHECKPOINT_SECONDS = 1.0  # while events stream in, sign at most once a second


def audit_dir(home: Path) -> Path:
    return home / "audit"


class AuditLog:
    """One process's handle on the log in `directory` (log.db, device.key, officers).

    Every method that writes is durable on return, or raises AuditError: the
    caller's action must then fail too.
    """

    def __init__(
        self,
        directory: Path,
        *,
        lock_timeout: float = 10.0,
        checkpoint_seconds: float = CHECKPOINT_SECONDS,
        require_content: bool = False,
    ) -> None:
        self.directory = ensure_dir(directory)
        self._officers_path = directory / "officers"
        self.officers = read_officers(self._officers_path)
        if require_content and not self.officers:
            raise AuditError(
                "no security officer key is configured, and prompts and answers must be "
                "recorded; an officer runs 'appliance audit officer --identity FILE'"
            )
        self.key = DeviceKey.load_or_create(directory / "device.key")
        self._store = Store(directory / "log.db", self.key, lock_timeout=lock_timeout)
        self._checkpoint_seconds = checkpoint_seconds
        self._last_checkpoint = 0.0
        self._lock = threading.Lock()
        self._failure: AuditError | None = None
        self._sealer: ContentSealer | None = None  # made at the first content
        self._heartbeat: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def log_id(self) -> str:
        return self._store.log_id

    @property
    def records_content(self) -> bool:
        """Whether prompt and answer text is kept (sealed to an officer)."""
        return bool(self.officers)

    # -- writing ---------------------------------------------------------------

    def record(
        self,
        event: Event,
        content: Mapping[str, str] | None = None,
        *,
        checkpoint: bool = False,
    ) -> int:
        """Append one event (its content sealed to the officers); return its seq."""
        pending = Pending(event)
        if content is not None and self.officers:
            sealer = self._sealer or self._new_sealer()
            blob = sealer.seal(content)
            digest = hashlib.sha256(blob).hexdigest()
            # The sealed key goes in with the first event that needs it.
            key = None if sealer.stored else (sealer.id, sealer.sealed_key)
            pending = Pending(event, blob, digest, key)
            seq = self.record_batch([pending], checkpoint=checkpoint)
            sealer.stored = True
            return seq
        return self.record_batch([pending], checkpoint=checkpoint)

    def _new_sealer(self) -> ContentSealer:
        self._sealer = ContentSealer(self.officers)
        return self._sealer

    def record_batch(self, batch: Sequence[Pending], *, checkpoint: bool = False) -> int:
        """Append events atomically; sign a checkpoint when asked or when one is due."""
        with self._lock:
            if self._failure is not None:
                raise self._failure
            due = checkpoint or time.monotonic() - self._last_checkpoint >= self._checkpoint_seconds
            seq, made = self._store.append(batch, checkpoint=due)
            if made is not None:
                self._last_checkpoint = time.monotonic()
            return seq

    def checkpoint(self) -> Checkpoint | None:
        """Sign the head now (at shutdown, before export); None if already signed."""
        with self._lock:
            made = self._store.checkpoint()
            self._last_checkpoint = time.monotonic()
            return made

    def set_officers(self, recipients: Sequence[Recipient], actor: Actor) -> None:
        details = {"officers": [str(recipient) for recipient in recipients]}
        event = Event(actor, "key_rotate", "audit officer keys", details=details)
        self.record(event, checkpoint=True)
        write_officers(self._officers_path, recipients)
        self.officers = list(recipients)
        self._sealer = None  # the next content gets a key sealed to the new officers

    def prune(self, before_us: int, actor: Actor, details: dict[str, Any]) -> tuple[int, int]:
        """Drop sealed content older than `before_us`; (through_seq, contents dropped)."""
        with self._lock:
            return self._store.prune(before_us, actor, details)

    # -- heartbeat ---------------------------------------------------------------

    def start_heartbeat(self, actor: Actor, seconds: float = HEARTBEAT_SECONDS) -> None:
        """Record a heartbeat and sign a checkpoint every `seconds` until close().

        A failed heartbeat makes the next record() fail: the log fails closed.
        """

        def beat() -> None:
            while not self._stop.wait(seconds):
                try:
                    self.record(Event(actor, "heartbeat"), checkpoint=True)
                except AuditError as exc:
                    self._failure = exc
                    return

        self._heartbeat = threading.Thread(target=beat, name="audit-heartbeat", daemon=True)
        self._heartbeat.start()

    def close(self) -> None:
        """Stop the heartbeat and sign whatever this process left unsigned."""
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        try:
            if self._failure is None:
                self.checkpoint()
        finally:
            self._store.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------

    def verify(
        self,
        key: PublicKey | None = None,
        trusted: Checkpoint | None = None,
        **walking: int,
    ) -> Report:
        """Check the whole chain and every checkpoint; TamperError names the first bad seq.

        `walking` (workers, parallel_from) tunes the parallel walk of long logs.
        """
        store = self._store
        key = key or self.key.public
        keys = set(store.content_keys())
        verifier = Verifier(self.log_id, key, store.checkpoints(), keys, trusted=trusted)
        report = verifier.conclude(store.walk_ranges(keys, verifier.marks, **walking))
        # The chain just proved these events; a recovery is always worth an officer's look.
        recoveries = self.events(action="officer_recovery")
        report.officer_recoveries = [row["seq"] for row in recoveries]
        return report

    def events(
        self,
        *,
        since_us: int | None = None,
        user: str | None = None,
        action: str | None = None,
        term: str | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Stored events as {"seq", "leaf", "content"} rows, oldest first by default.

        `term` matches any of user, role, action, label and outcome exactly.
        """
        clauses, params = [], []
        filters = (
            ("time_us >= ?", since_us),
            ("user = ?", user),
            ("action = ?", action),
            ("? IN (user, role, action, label, outcome)", term),
        )
        for clause, value in filters:
            if value is not None:
                clauses.append(clause)
                params.append(value)
        return self._store.query(" AND ".join(clauses), params, limit, newest_first=newest_first)

    def content_opener(self, openers: Sequence[Opener]) -> ContentOpener:
        """Decrypts this log's content with an officer identity."""
        return ContentOpener(self._store.content_keys(), openers)

    @property
    def store(self) -> Store:
        return self._store
