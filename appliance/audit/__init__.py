"""The tamper-evident audit log: who asked what, when, at which classification.

Events are hash-chained in SQLite (`store`), their prompt and answer text is
sealed to the security officer (`content`), and the device signs checkpoints
of the chain (`keys`) that exports carry to another machine (`export`) where
`verify` proves nothing was changed, removed or rolled back.
Format: docs/formats/audit.md. Public API; other modules import only this.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from appliance.audit.anchor import ANCHOR_FILE, advance_anchor, check_anchor, read_anchor
from appliance.audit.content import ContentOpener, ContentSealer, read_officers, write_officers
from appliance.audit.keys import Checkpoint, DeviceKey, PublicKey
from appliance.audit.record import ACTIONS, Actor, Event
from appliance.audit.store import Pending, Store, resume
from appliance.audit.verify import Report, TamperError, Verifier
from appliance.config import ensure_dir
from appliance.errors import ApplianceError, AuditError
from appliance.identity import has_users
from appliance.seal import Opener, Recipient

__all__ = [
    "ACTIONS",
    "ANCHOR_FILE",
    "Actor",
    "AuditLog",
    "Checkpoint",
    "ContentOpener",
    "Event",
    "PublicKey",
    "Report",
    "TamperError",
    "audit_dir",
    "read_officers",
    "resume_log",
]

HEARTBEAT_SECONDS = 60.0  # well inside the 5-minute bound on silent tail loss
CHECKPOINT_SECONDS = 1.0  # while events stream in, sign at most once a second


def audit_dir(home: Path) -> Path:
    return home / "audit"


def resume_log(
    directory: Path, trusted: Checkpoint, actor: Actor, approved_by: dict[str, str]
) -> Checkpoint:
    """Resume the log copied from a backup into `directory` (log.db) on this host: make
    its new device key (there must be none), append the `restore` event signed by it,
    and anchor it. Returns the restore's checkpoint."""
    key_path = directory / "device.key"
    if key_path.exists() or read_anchor(directory) is not None:
        raise AuditError(
            f"{directory} already has a device key or an anchor; restore into a new home"
        )
    made = resume(
        directory / "log.db",
        lambda: DeviceKey.load_or_create(key_path),
        trusted,
        actor,
        approved_by,
    )
    try:
        advance_anchor(directory, made)
    except ApplianceError as exc:
        raise AuditError(f"cannot write the audit anchor: {exc}") from None
    return made


class _Ticket:
    """One caller's events waiting for a group commit, and what became of them."""

    __slots__ = ("batch", "checkpoint", "done", "error", "seq")

    def __init__(self, batch: Sequence[Pending], checkpoint: bool) -> None:
        self.batch = batch
        self.checkpoint = checkpoint
        self.done = False
        self.seq = 0  # the seq of the batch's last event, once committed
        self.error: BaseException | None = None

    def result(self) -> int:
        if self.error is None:
            return self.seq
        # A fresh exception for each caller: threads must not share a traceback.
        if isinstance(self.error, AuditError):
            raise AuditError(self.error.message)
        raise AuditError(f"the audit log could not record: {self.error!r}")


class AuditLog:
    """One process's handle on the log in `directory` (log.db, device.key, officers).

    Every method that writes is durable on return, or raises AuditError: the
    caller's action must then fail too. Threads may share one handle: events
    they record at the same time are committed together (see `record_batch`).
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
        self._store = Store(
            directory / "log.db",
            self.key,
            lock_timeout=lock_timeout,
            before_genesis=self._before_genesis,
        )
        self._checkpoint_seconds = checkpoint_seconds
        self._last_checkpoint = 0.0
        # Group commit: callers queue tickets; whoever finds the writer free
        # leads (commits the whole queue). `_writing` covers checkpoint and
        # prune too, so the writer connection has one user at a time.
        self._mutex = threading.Lock()
        self._turn = threading.Condition(self._mutex)  # the writer became free, or a ticket done
        self._waiting = 0  # callers waiting on _turn: a lone writer never notifies
        self._queue: list[_Ticket] = []
        self._writing = False
        self.commits = 0  # transactions that appended events; events/commits = group size
        self._failure: AuditError | None = None
        self._sealing = threading.Lock()
        self._sealer: ContentSealer | None = None  # made at the first content
        self._heartbeat: threading.Thread | None = None
        self._stop = threading.Event()

    def _before_genesis(self) -> None:
        """A new chain is begun only where no log was ever kept: never over an anchor,
        never in a home that has accounts (the log was deleted or replaced)."""
        path = self.directory / "log.db"
        anchor = read_anchor(self.directory)
        if anchor is not None:
            raise AuditError(
                f"the audit log {path} is missing or empty, but audit/{ANCHOR_FILE} shows it "
                f"reached seq {anchor.seq}; restore it (no new log is begun over it)"
            )
        if has_users(self.directory.parent):
            raise AuditError(
                f"the audit log {path} is missing or empty, but the home has accounts; restore "
                "it (a new log is begun only in a home without accounts)"
            )

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
        # The leaf and the sealed content are built here, in the caller's
        # thread, so that a group's leader only hashes and inserts.
        if content is None or not self.officers:
            return self.record_batch([Pending.of(event)], checkpoint=checkpoint)
        sealer = self._sealer or self._new_sealer()
        # The sealed key goes in with each event that needs it until one is durable.
        key = None if sealer.stored else (sealer.id, sealer.sealed_key)
        seq = self.record_batch(
            [Pending.of(event, sealer.seal(content), key)], checkpoint=checkpoint
        )
        sealer.stored = True
        return seq

    def _new_sealer(self) -> ContentSealer:
        with self._sealing:  # one key (one X25519 operation) however many threads ask
            if self._sealer is None:
                self._sealer = ContentSealer(self.officers)
            return self._sealer

    def record_batch(self, batch: Sequence[Pending], *, checkpoint: bool = False) -> int:
        """Append events atomically; return the last seq once they are durable.

        Group commit: the batches of all threads that record at once go into
        one transaction, in the order they were queued, which is their chain
        order. The first caller to find the writer free leads: it commits the
        whole queue while later callers queue for the next group, then wakes
        each caller with its seq, or with the AuditError that failed the
        transaction (none of the group's events is then stored). A checkpoint
        is signed in the same transaction when any caller asks for one or one
        is due.
        """
        ticket = _Ticket(batch, checkpoint)
        with self._mutex:
            if self._failure is not None:
                raise AuditError(self._failure.message)
            self._queue.append(ticket)
            while self._writing and not ticket.done:
                self._wait()
            leading = not ticket.done  # the writer is free and no leader took this ticket
            if leading:
                self._writing = True
                group, self._queue = self._queue, []
        if leading:
            self._commit(group)
        return ticket.result()

    def _commit(self, group: list[_Ticket]) -> None:
        """Commit every ticket of `group` in one transaction, then wake their callers."""
        try:
            batch: list[Pending] = []
            due = time.monotonic() - self._last_checkpoint >= self._checkpoint_seconds
            for ticket in group:
                batch += ticket.batch
                due = due or ticket.checkpoint
            seq, made = self._store.append(batch, checkpoint=due)
            self.commits += 1
            if made is not None:
                self._last_checkpoint = time.monotonic()
                self._advance_anchor(made)
            seq -= len(batch)
            for ticket in group:
                seq += len(ticket.batch)
                ticket.seq = seq
        except BaseException as exc:
            for ticket in group:
                ticket.error = exc
            if not isinstance(exc, AuditError):
                raise  # a bug or an interrupt: the leader sees it as it is
        finally:
            with self._mutex:
                for ticket in group:
                    ticket.done = True
                self._free_writer()

    @contextlib.contextmanager
    def _writer(self) -> Iterator[Store]:
        """The writer connection alone, once any group commit under way is done."""
        with self._mutex:
            while self._writing:
                self._wait()
            self._writing = True
        try:
            yield self._store
        finally:
            with self._mutex:
                self._free_writer()

    def _wait(self) -> None:
        self._waiting += 1
        try:
            self._turn.wait()
        finally:
            self._waiting -= 1

    def _free_writer(self) -> None:
        """With the mutex held: wake the group's callers; one queued meanwhile leads next."""
        self._writing = False
        if self._waiting:
            self._turn.notify_all()

    def checkpoint(self) -> Checkpoint | None:
        """Sign the head now (at shutdown, before export); None if already signed."""
        with self._writer() as store:
            made = store.checkpoint()
            self._last_checkpoint = time.monotonic()
            latest = made or store.latest_checkpoint()
            if latest is not None:
                try:
                    advance_anchor(self.directory, latest)
                except ApplianceError as exc:
                    raise AuditError(f"cannot update the audit anchor: {exc}") from None
            return made

    def _advance_anchor(self, made: Checkpoint) -> None:
        """Anchor a checkpoint just committed; a failure is retried at the next one or at
        close (the events are durable, and the anchor only ever lags behind the log)."""
        with contextlib.suppress(ApplianceError):
            advance_anchor(self.directory, made)

    def check_anchor(self) -> Checkpoint | None:
        """The anchored checkpoint, once the log is proved to extend it; None if no anchor.

        IntegrityError says how the log falls short: its tail is gone, it was
        replaced, or another key signs it.
        """
        anchor = read_anchor(self.directory)
        if anchor is not None:
            self.check_extends(anchor, f"audit/{ANCHOR_FILE}")
        return anchor

    def check_extends(self, checkpoint: Checkpoint, where: str) -> None:
        """The stored log reaches `checkpoint` and agrees with it there (O(1): the stored
        chain is taken as is; `verify` proves it)."""
        store = self._store
        head = store.head_seq()
        chain = store.chain_at(checkpoint.seq)
        key = store.key_at(checkpoint.seq)
        check_anchor(checkpoint, self.log_id, key, head, chain, where)

    def set_officers(self, recipients: Sequence[Recipient], actor: Actor) -> None:
        details = {"officers": [str(recipient) for recipient in recipients]}
        event = Event(actor, "key_rotate", "audit officer keys", details=details)
        self.record(event, checkpoint=True)
        write_officers(self._officers_path, recipients)
        self.officers = list(recipients)
        self._sealer = None  # the next content gets a key sealed to the new officers

    def prune(self, before_us: int, actor: Actor, details: dict[str, Any]) -> tuple[int, int]:
        """Drop sealed content older than `before_us`; (through_seq, contents dropped)."""
        with self._writer() as store:
            pruned = store.prune(before_us, actor, details)
            latest = store.latest_checkpoint()
        if latest is not None:
            self._advance_anchor(latest)
        return pruned

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
        `key`, an officer's copy of the key the log was begun with, pins it; a
        restore's new key is accepted only through its `restore` event.
        """
        store = self._store
        key = key or store.original_key()
        keys = set(store.content_keys())
        verifier = Verifier(
            self.log_id,
            key,
            store.checkpoints(),
            keys,
            trusted=trusted,
            restore_marks=store.restore_marks(),
        )
        report = verifier.conclude(store.walk_ranges(keys, verifier.marks, **walking))
        # key_at and chain_at read the table of restores: it must say what the events say.
        found = [(r.seq, str(r.new_key), r.trusted.seq, r.trusted.chain) for r in report.restores]
        for stored, walked in itertools.zip_longest(store.restore_rows(), found):
            if stored != walked:
                seq = stored[0] if stored else walked[0] if walked else 0
                raise TamperError(seq, "the table of restores differs from the restore events")
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
        after_seq: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Stored events as {"seq", "leaf", "content"} rows, oldest first by default.

        `term` matches any of user, role, action, label and outcome exactly;
        `after_seq` pages through them.
        """
        clauses, params = [], []
        filters = (
            ("seq > ?", after_seq),
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
