"""The log's SQLite database: schema, the append transaction, and reads.

Durability: WAL with synchronous=FULL, so a committed event survives power
loss. Concurrency: every append (one event, or the group that a process's
threads recorded at once, see AuditLog.record_batch) is one BEGIN IMMEDIATE
transaction that reads the chain head and writes after it, so processes
appending at once queue up and never fork the chain. Triggers refuse UPDATE
and DELETE (prune may only drop the content of events a logged prune covers).
Triggers are guard rails against mistakes; the hash chain and signed
checkpoints are what detect a determined tamperer, and the officer's trusted
checkpoint is what bounds one who holds the device key.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import multiprocessing
import os
import sqlite3
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from appliance.audit.content import key_id
from appliance.audit.keys import Checkpoint, DeviceKey, PublicKey
from appliance.audit.record import (
    GENESIS_CHAIN,
    Actor,
    Event,
    Leaf,
    encode_leaf,
    leaf_hash,
    leaf_template,
    next_chain,
    now_us,
)
from appliance.audit.verify import Row, Walk, walk
from appliance.errors import AuditError, IntegrityError

SCHEMA_VERSION = 1
PARALLEL_FROM = 50_000  # events; below this a process pool costs more than it saves
MAX_WORKERS = 8
SYSTEM = Actor("appliance", "system")

# Queryable columns are generated from the stored leaf, so they can never
# disagree with what the chain covers. They are not indexed: an index costs
# every durable append extra pages, and only officers' queries would gain.
_FIELD = "json_extract(CAST(leaf AS TEXT), '$.{}')"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    leaf BLOB NOT NULL,
    leaf_hash BLOB NOT NULL,
    chain BLOB NOT NULL,
    content BLOB,
    time_us INTEGER GENERATED ALWAYS AS ({_FIELD.format("time_us")}) VIRTUAL,
    user TEXT GENERATED ALWAYS AS ({_FIELD.format("user")}) VIRTUAL,
    role TEXT GENERATED ALWAYS AS ({_FIELD.format("role")}) VIRTUAL,
    action TEXT GENERATED ALWAYS AS ({_FIELD.format("action")}) VIRTUAL,
    object TEXT GENERATED ALWAYS AS ({_FIELD.format("object")}) VIRTUAL,
    outcome TEXT GENERATED ALWAYS AS ({_FIELD.format("outcome")}) VIRTUAL,
    label TEXT GENERATED ALWAYS AS ({_FIELD.format("label")}) VIRTUAL,
    prune_through INTEGER GENERATED ALWAYS AS (
        CASE WHEN {_FIELD.format("action")} = 'prune'
        THEN {_FIELD.format("details.through_seq")} END) VIRTUAL
);
CREATE TABLE IF NOT EXISTS content_keys (
    id BLOB PRIMARY KEY,
    sealed BLOB NOT NULL
);
CREATE TRIGGER IF NOT EXISTS content_keys_no_update BEFORE UPDATE ON content_keys
BEGIN SELECT RAISE(ABORT, 'content keys are append-only'); END;
CREATE TRIGGER IF NOT EXISTS content_keys_no_delete BEFORE DELETE ON content_keys
BEGIN SELECT RAISE(ABORT, 'content keys are append-only'); END;
CREATE TABLE IF NOT EXISTS checkpoints (
    seq INTEGER PRIMARY KEY,
    body BLOB NOT NULL,
    signature BLOB NOT NULL
);
CREATE TRIGGER IF NOT EXISTS events_append_only BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_prune_only BEFORE UPDATE ON events
WHEN NOT (NEW.seq IS OLD.seq AND NEW.leaf IS OLD.leaf AND NEW.leaf_hash IS OLD.leaf_hash
          AND NEW.chain IS OLD.chain AND NEW.content IS NULL
          AND OLD.seq <= coalesce((SELECT prune_through FROM events
                                   WHERE prune_through IS NOT NULL
                                   ORDER BY seq DESC LIMIT 1), 0))
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_no_update BEFORE UPDATE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_no_delete BEFORE DELETE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TABLE IF NOT EXISTS restores (
    seq INTEGER PRIMARY KEY,
    device_key TEXT NOT NULL,
    trusted_seq INTEGER NOT NULL,
    trusted_chain BLOB NOT NULL
);
CREATE TRIGGER IF NOT EXISTS restores_no_update BEFORE UPDATE ON restores
BEGIN SELECT RAISE(ABORT, 'restores are append-only'); END;
CREATE TRIGGER IF NOT EXISTS restores_no_delete BEFORE DELETE ON restores
BEGIN SELECT RAISE(ABORT, 'restores are append-only'); END;
CREATE TRIGGER IF NOT EXISTS meta_no_update BEFORE UPDATE ON meta
BEGIN SELECT RAISE(ABORT, 'the log identity is fixed'); END;
CREATE TRIGGER IF NOT EXISTS meta_no_delete BEFORE DELETE ON meta
BEGIN SELECT RAISE(ABORT, 'the log identity is fixed'); END;
"""


_INSERT = "INSERT INTO events (seq, leaf, leaf_hash, chain, content) VALUES (?, ?, ?, ?, ?)"


@dataclass(slots=True)
class Pending:
    """An event ready to append: its leaf but for the time, its content sealed (or none)."""

    leaf: Leaf
    content: bytes | None = None
    content_key: tuple[bytes, bytes] | None = None  # (id, sealed key) the content needs

    @classmethod
    def of(
        cls,
        event: Event,
        content: bytes | None = None,
        content_key: tuple[bytes, bytes] | None = None,
    ) -> Pending:
        """`event` with its sealed `content`; ValueError if its leaf cannot be written."""
        digest = None if content is None else hashlib.sha256(content).hexdigest()
        return cls(leaf_template(event, digest), content, content_key)


class Store:
    """The log database: a writer connection (the caller serialises its use)
    and a read-only one that sees only committed events, for any thread."""

    def __init__(
        self,
        path: Path,
        key: DeviceKey,
        *,
        lock_timeout: float = 10.0,
        before_genesis: Callable[[], None] | None = None,
    ) -> None:
        self.path = path
        self.key = key
        self.lock_timeout = lock_timeout
        # Called before a brand new chain is begun; it raises AuditError to refuse one.
        self._before_genesis = before_genesis
        _create_private(path)
        self._head_cache: tuple[int, bytes] | None = None  # (seq, chain) this handle wrote last
        try:
            self.conn = sqlite3.connect(
                path, timeout=lock_timeout, isolation_level=None, check_same_thread=False
            )
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.log_id = self._initialise()
            self.reader = _connect_read_only(path, lock_timeout)
            self.db = sqlite_utils.Database(self.reader)
        except sqlite3.Error as exc:
            raise self._failure(exc) from None

    def close(self) -> None:
        # The writer closes last: the last connection to close checkpoints the WAL into
        # the database and removes it, which a read-only one cannot. Otherwise the WAL
        # holds every event until SQLite's auto-checkpoint, and losing it loses them.
        if hasattr(self, "reader"):
            self.reader.close()
        self.conn.close()

    # -- writing ---------------------------------------------------------------

    def append(
        self, batch: Sequence[Pending], *, checkpoint: bool
    ) -> tuple[int, Checkpoint | None]:
        """Append `batch` in order, in one durable transaction; the last seq and any checkpoint.

        The events share one time, taken under the write lock. The head this
        handle last wrote is tried first: if another process appended since,
        that seq is taken, the insert fails on the primary key, and the real
        head is read. Either way the write lock is held, so the chain cannot
        fork. On failure nothing of the batch is stored.
        """
        head = self._head_cache
        self._head_cache = None
        # _transaction, inline: its generator costs a microsecond on the path of every event.
        self._begin()
        try:
            time_us = now_us()
            keys = {pending.content_key for pending in batch if pending.content_key is not None}
            if keys:
                self.conn.executemany(
                    "INSERT OR IGNORE INTO content_keys (id, sealed) VALUES (?, ?)", keys
                )
            rows = [(pending.leaf.at(time_us), pending.content) for pending in batch]
            try:  # the first row alone: only its failure can mean a stale head
                seq, chain = self._insert(*(head or self._head()), rows[:1])
            except sqlite3.IntegrityError:
                if head is None:
                    raise
                seq, chain = self._insert(*self._head(), rows[:1])  # another writer moved the head
            if len(rows) > 1:
                seq, chain = self._insert(seq, chain, rows[1:])
            made = self._checkpoint(seq, chain) if checkpoint else None
            self.conn.execute("COMMIT")
        except BaseException as exc:
            self._roll_back(exc)
            raise
        self._head_cache = (seq, chain)
        return seq, made

    def checkpoint(self) -> Checkpoint | None:
        """Sign the head unless it is signed already (or the log is empty)."""
        with self._transaction():
            seq, chain = self._head()
            return self._checkpoint(seq, chain)

    def prune(self, before_us: int, actor: Actor, details: dict[str, Any]) -> tuple[int, int]:
        """Drop the content of events older than `before_us`; (through_seq, dropped)."""
        with self._transaction():
            row = self.conn.execute(
                "SELECT max(seq) FROM events WHERE time_us < ?", (before_us,)
            ).fetchone()
            through = int(row[0] or 0)
            dropped = self.conn.execute(
                "SELECT count(*) FROM events WHERE seq <= ? AND content IS NOT NULL", (through,)
            ).fetchone()[0]
            event = Event(actor, "prune", None, "ok", None, {**details, "through_seq": through})
            seq, chain = self._insert(*self._head(), [(encode_leaf(event, now_us(), None), None)])
            self.conn.execute(
                "UPDATE events SET content = NULL WHERE seq <= ? AND content IS NOT NULL",
                (through,),
            )
            self._checkpoint(seq, chain)
        return through, int(dropped)

    # -- reading ---------------------------------------------------------------

    def rows(self, after: int = 0) -> Iterator[Row]:
        """Events after `after`, in seq order (for export: stored types, as is)."""
        return _rows(self.reader, after, None)

    def walk_ranges(
        self,
        content_keys: Collection[bytes],
        marks: Collection[int],
        *,
        workers: int | None = None,
        parallel_from: int = PARALLEL_FROM,
    ) -> list[Walk]:
        """Walk the whole log, long logs in parallel ranges (one per core).

        Each range starts from the stored chain just before it; the range
        before proves that value, so together they prove the whole chain.
        """
        last = self.head_seq()
        if workers is None:
            workers = min(len(os.sched_getaffinity(0)), MAX_WORKERS)
        # fork() is safe only while this process runs no other thread. A restored log
        # may skip lost seqs, which ranges cut by number would not see: walked whole.
        if (
            workers < 2
            or last < parallel_from
            or threading.active_count() > 1
            or self.restore_marks()
        ):
            return [_walk_range(str(self.path), 1, last, content_keys, marks)]
        size = -(-last // workers)
        ranges = [(start, min(start + size - 1, last)) for start in range(1, last + 1, size)]
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(len(ranges) - 1, mp_context=context) as pool:
            others = [
                pool.submit(_walk_range, str(self.path), first, end, content_keys, marks)
                for first, end in ranges[1:]
            ]
            walks = [_walk_range(str(self.path), *ranges[0], content_keys, marks)]
            return walks + [future.result() for future in others]

    def checkpoints(self, after: int = 0) -> dict[int, Checkpoint]:
        cursor = self.reader.execute(
            "SELECT seq, body, signature FROM checkpoints WHERE seq > ? ORDER BY seq", (after,)
        )
        return {
            seq: Checkpoint.from_parts(body, signature, f"checkpoint at seq {seq}")
            for seq, body, signature in cursor
        }

    def content_keys(self) -> dict[bytes, bytes]:
        """Sealed content keys by id, the id recomputed from the bytes (never trusted)."""
        rows = self.reader.execute("SELECT CAST(sealed AS BLOB) FROM content_keys").fetchall()
        return {key_id(sealed): sealed for (sealed,) in rows}

    def chain_at(self, seq: int) -> bytes | None:
        """The chain hash at `seq`: a stored event's, or the trusted checkpoint's a
        restore resumed from (the events up to it were lost)."""
        if seq == 0:
            return GENESIS_CHAIN
        row = self.reader.execute("SELECT chain FROM events WHERE seq = ?", (seq,)).fetchone()
        if row is None:
            row = self.reader.execute(
                "SELECT trusted_chain FROM restores WHERE trusted_seq = ?", (seq,)
            ).fetchone()
        return bytes(row[0]) if row else None

    def original_key(self) -> PublicKey:
        """The key the log was begun with (meta); restores name the keys after it."""
        row = self.reader.execute("SELECT value FROM meta WHERE key = 'device_key'").fetchone()
        return PublicKey.parse(str(row[0]))

    def key_at(self, seq: int) -> PublicKey:
        """The device key that signs checkpoints at `seq` (the one after the last
        restore at or before it)."""
        row = self.reader.execute(
            "SELECT device_key FROM restores WHERE seq <= ? ORDER BY seq DESC LIMIT 1", (seq,)
        ).fetchone()
        return PublicKey.parse(str(row[0])) if row else self.original_key()

    def restore_rows(self) -> list[tuple[int, str, int, bytes]]:
        """The table of restores (seq, new key, trusted seq and chain), oldest first:
        what the keys and chains above rest on, checked against the events by verify."""
        rows = self.reader.execute(
            "SELECT seq, device_key, trusted_seq, trusted_chain FROM restores ORDER BY seq"
        )
        return [(int(a), str(b), int(c), bytes(d)) for a, b, c, d in rows]

    def restore_seqs(self) -> list[int]:
        """The seqs of the log's `restore` events, oldest first."""
        return [row[0] for row in self.restore_rows()]

    def restore_marks(self) -> set[int]:
        """The trusted seqs the log's restores resumed from: the walk notes their chains."""
        return {int(seq) for (seq,) in self.reader.execute("SELECT trusted_seq FROM restores")}

    def query(
        self, where: str, params: Sequence[Any], limit: int | None, *, newest_first: bool = False
    ) -> Iterator[dict[str, Any]]:
        """Events matching `where` (over the generated columns), oldest first by default."""
        return self.db.table("events").rows_where(
            where or None,
            list(params),
            select="seq, leaf, content",
            order_by="seq DESC" if newest_first else "seq",
            limit=limit,
        )

    def head_seq(self) -> int:
        row = self.reader.execute("SELECT max(seq) FROM events").fetchone()
        return int(row[0] or 0)

    def latest_checkpoint(self) -> Checkpoint | None:
        """The checkpoint with the highest seq (its signature is checked by the caller)."""
        row = self.reader.execute(
            "SELECT seq, body, signature FROM checkpoints ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        return Checkpoint.from_parts(row[1], row[2], f"checkpoint at seq {row[0]}")

    # -- internals ---------------------------------------------------------------

    def _initialise(self) -> str:
        """Create the schema and the genesis event once; return the log id."""
        with self._transaction():
            db = sqlite_utils.Database(self.conn)
            db.table("meta").create({"key": str, "value": str}, pk="key", if_not_exists=True)
            db.executescript(_SCHEMA)  # statement by statement, inside this transaction
            meta = {row["key"]: row["value"] for row in db.table("meta").rows}
            if "log" in meta:
                restored = self.conn.execute(
                    "SELECT device_key FROM restores ORDER BY seq DESC LIMIT 1"
                ).fetchone()
                current = restored[0] if restored else meta.get("device_key")
                if current != str(self.key.public):
                    raise AuditError(
                        f"the audit device key does not match the log {self.path}; "
                        "restore the original key"
                    )
                return str(meta["log"])
            if self._before_genesis is not None:
                self._before_genesis()  # refusing leaves the database as it was (rolled back)
            log_id = uuid.uuid4().hex
            db.table("meta").insert_all(
                [
                    {"key": "log", "value": log_id},
                    {"key": "device_key", "value": str(self.key.public)},
                    {"key": "schema", "value": str(SCHEMA_VERSION)},
                ]
            )
            genesis = Event(
                SYSTEM,
                "log_created",
                details={"log": log_id, "device_key": self.key.public.fingerprint},
            )
            leaf = encode_leaf(genesis, now_us(), None)
            _, chain = self._insert(0, GENESIS_CHAIN, [(leaf, None)])
            self.log_id = log_id
            self._checkpoint(1, chain)
            return log_id

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT; any SQLite failure becomes an AuditError."""
        self._begin()
        try:
            yield
            self.conn.execute("COMMIT")
        except BaseException as exc:
            self._roll_back(exc)
            raise

    def _begin(self) -> None:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._failure(exc) from None

    def _roll_back(self, exc: BaseException) -> None:
        """Undo the open transaction after `exc`; an SQLite failure is raised as AuditError."""
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise self._failure(exc) from None

    def _insert(
        self, seq: int, chain: bytes, rows: Iterable[tuple[bytes, bytes | None]]
    ) -> tuple[int, bytes]:
        """Store (leaf, content) rows after the event (seq, chain); return the new head."""
        chained = []
        for leaf, content in rows:
            hashed = leaf_hash(leaf)
            seq, chain = seq + 1, next_chain(chain, hashed)
            chained.append((seq, leaf, hashed, chain, content))
        self.conn.executemany(_INSERT, chained)
        return seq, chain

    def _head(self) -> tuple[int, bytes]:
        query = "SELECT seq, chain FROM events ORDER BY seq DESC LIMIT 1"
        row = self.conn.execute(query).fetchone()
        return (0, GENESIS_CHAIN) if row is None else (int(row[0]), bytes(row[1]))

    def _checkpoint(self, seq: int, chain: bytes) -> Checkpoint | None:
        if seq == 0:
            return None
        done = self.conn.execute("SELECT 1 FROM checkpoints WHERE seq = ?", (seq,)).fetchone()
        if done:
            return None
        made = Checkpoint.sign(self.key, self.log_id, seq, chain, now_us())
        self.conn.execute(
            "INSERT INTO checkpoints (seq, body, signature) VALUES (?, ?, ?)",
            (seq, made.body, made.signature),
        )
        return made

    def _failure(self, exc: sqlite3.Error) -> AuditError:
        message = str(exc)
        if "locked" in message or "busy" in message:
            return AuditError(
                f"the audit log {self.path} stayed locked by another process for more than "
                f"{self.lock_timeout:g} s"
            )
        return AuditError(f"cannot write the audit log {self.path}: {message}")


def resume(
    path: Path,
    new_key: Callable[[], DeviceKey],
    trusted: Checkpoint,
    actor: Actor,
    approved_by: dict[str, str],
) -> Checkpoint:
    """Append the `restore` event to a log copied from a backup, and sign it with the
    restored host's device key, which `new_key` makes once the checks passed
    (docs/formats/audit.md, "Restore").

    The copy ends at seq B; `trusted` is the officer's checkpoint, signed by the
    key that signed there. It resumes at max(B, T) + 1: after the trusted
    checkpoint's chain when T > B (the events B+1..T are lost, and say so), else
    after the copy's last event, which must then agree with the checkpoint at T.
    """
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(_SCHEMA)  # a copy from before restores were kept gains the table
        conn.execute("BEGIN IMMEDIATE")
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        restored = conn.execute("SELECT seq, device_key FROM restores ORDER BY seq DESC").fetchall()
        head = conn.execute("SELECT seq, chain FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        if "log" not in meta or head is None:
            raise AuditError(f"{path} is not an audit log")
        log_id, (backup_seq, backup_chain) = str(meta["log"]), (int(head[0]), bytes(head[1]))

        def key_at(seq: int) -> PublicKey:
            found = [k for s, k in restored if s <= seq]
            return PublicKey.parse(found[0] if found else str(meta["device_key"]))

        old_key = key_at(backup_seq)
        if trusted.log != log_id:
            raise IntegrityError("the trusted checkpoint belongs to another log than the backup's")
        if trusted.seq <= backup_seq and key_at(trusted.seq) != old_key:
            raise IntegrityError(
                "the backup's log was restored after the trusted checkpoint; resume from the "
                "checkpoint that restore gave the officer"
            )
        # Signed by the key the backup ends with: a restore the backup carries after the
        # officer's checkpoint (one the officer never saw) cannot be built upon.
        if not trusted.signed_by(old_key):
            raise IntegrityError(
                "the trusted checkpoint is not signed by the backup's device key "
                "(forged, or another host's)"
            )
        if trusted.seq <= backup_seq:
            row = conn.execute("SELECT chain FROM events WHERE seq = ?", (trusted.seq,)).fetchone()
            if row is None or bytes(row[0]) != trusted.chain:
                raise IntegrityError(
                    f"the backup's audit log differs from the trusted checkpoint at seq "
                    f"{trusted.seq}: it is not a copy of the log the officer verified"
                )
        base_seq, base_chain = (
            (trusted.seq, trusted.chain) if trusted.seq > backup_seq else (backup_seq, backup_chain)
        )
        key = new_key()
        details = {
            "log": log_id,
            "backup": {"seq": backup_seq, "chain": backup_chain.hex()},
            "trusted": {
                "checkpoint": trusted.body.decode(),
                "signature": base64.b64encode(trusted.signature).decode(),
            },
            "old_key": str(old_key),
            "new_key": str(key.public),
            "approved_by": approved_by,
        }
        event = Event(actor, "restore", "audit log", details=details)
        time_us = now_us()
        leaf = encode_leaf(event, time_us, None)
        hashed = leaf_hash(leaf)
        seq, chain = base_seq + 1, next_chain(base_chain, hashed)
        conn.execute(_INSERT, (seq, leaf, hashed, chain, None))
        conn.execute(
            "INSERT INTO restores (seq, device_key, trusted_seq, trusted_chain)"
            " VALUES (?, ?, ?, ?)",
            (seq, str(key.public), trusted.seq, trusted.chain),
        )
        made = Checkpoint.sign(key, log_id, seq, chain, time_us)
        conn.execute(
            "INSERT INTO checkpoints (seq, body, signature) VALUES (?, ?, ?)",
            (seq, made.body, made.signature),
        )
        conn.execute("COMMIT")
        return made
    except sqlite3.Error as exc:
        raise AuditError(f"cannot resume the audit log {path}: {exc}") from None
    finally:
        conn.close()


def _rows(conn: sqlite3.Connection, after: int, through: int | None) -> Iterator[Row]:
    return conn.execute(
        "SELECT seq, leaf, leaf_hash, chain, content FROM events"
        " WHERE seq > ? AND seq <= ? ORDER BY seq",
        (after, through if through is not None else 2**63 - 1),
    )


def _walk_range(
    path: str, first: int, end: int, content_keys: Collection[bytes], marks: Collection[int]
) -> Walk:
    """Walk seq first..end on a read-only connection of its own.

    Text arrives as bytes, so whatever type an editor stored is hashed as is
    (and fails); a NULL fails as a wrong type.
    """
    conn = _connect_read_only(Path(path), 10.0)
    conn.text_factory = bytes
    try:
        before = conn.execute("SELECT chain FROM events WHERE seq = ?", (first - 1,)).fetchone()
        base = GENESIS_CHAIN if first == 1 else (before[0] if before else b"")
        return walk(_rows(conn, first - 1, end), first - 1, base, content_keys, marks, end)
    finally:
        conn.close()


def _connect_read_only(path: Path, timeout: float) -> sqlite3.Connection:
    uri = f"file:{urllib.parse.quote(str(path))}?mode=ro"
    return sqlite3.connect(uri, uri=True, timeout=timeout, check_same_thread=False)


def _create_private(path: Path) -> None:
    """Create the database file 0600 before SQLite does (its -wal/-shm copy the mode)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
    except OSError as exc:
        raise AuditError(f"cannot open the audit log {path}: {exc.strerror}") from None
