"""An audit log database on its own, without the device key beside it: a backup's copy.

`verify_log_copy` walks every event and checks every checkpoint as
`AuditLog.verify` does on the host (the same `Verifier`), from the key the log
was begun with (its `meta`, unless the caller pins one) through each `restore`
event's new key; it opens the file read-only and immutable, so nothing is
written beside it.
"""

from __future__ import annotations

import sqlite3
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from appliance.audit import Checkpoint, PublicKey, Report
from appliance.audit.content import key_id
from appliance.audit.verify import Verifier
from appliance.errors import IntegrityError, UsageError


@dataclass(frozen=True)
class LogCopy:
    """What verifying a log copy proved."""

    report: Report
    log: str  # the log id
    last_seq: int
    chain: bytes  # at last_seq
    key: PublicKey  # the key that signs its last events (the first, or the last restore's)


def signing_key(conn: sqlite3.Connection) -> str:
    """The device key that signs the log's newest checkpoints, as stored: the last
    restore's new key, else the one the log was begun with."""
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    if "restores" in tables:
        row = conn.execute("SELECT device_key FROM restores ORDER BY seq DESC LIMIT 1").fetchone()
        if row is not None:
            return _text(row[0])
    row = conn.execute("SELECT value FROM meta WHERE key = 'device_key'").fetchone()
    return _text(row[0]) if row else ""


def verify_log_copy(path: Path, key: PublicKey | None = None) -> LogCopy:
    """Verify the log database at `path` whole; TamperError names the first bad seq.

    `key` pins the key the log was begun with (an officer's copy of it);
    without it, the one the log's `meta` names.
    """
    uri = f"file:{urllib.parse.quote(str(path))}?mode=ro&immutable=1"
    try:
        conn = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as exc:
        raise IntegrityError(f"{path} is not an audit log: {exc}") from None
    conn.text_factory = bytes
    try:
        meta = {_text(k): _text(v) for k, v in conn.execute("SELECT key, value FROM meta")}
        first = key or _key(meta.get("device_key", ""), path)
        checkpoints = {
            seq: Checkpoint.from_parts(bytes(body), bytes(signature), f"checkpoint at seq {seq}")
            for seq, body, signature in conn.execute("SELECT seq, body, signature FROM checkpoints")
        }
        sealed = conn.execute("SELECT sealed FROM content_keys")
        keys = {key_id(bytes(blob)) for (blob,) in sealed}
        tables = {_text(row[0]) for row in conn.execute("SELECT name FROM sqlite_master")}
        marks: set[int] = set()
        if "restores" in tables:
            marks = {int(seq) for (seq,) in conn.execute("SELECT trusted_seq FROM restores")}
        verifier = Verifier(meta.get("log", ""), first, checkpoints, keys, restore_marks=marks)
        rows = conn.execute("SELECT seq, leaf, leaf_hash, chain, content FROM events ORDER BY seq")
        report = verifier.feed_all(rows)
        row = conn.execute("SELECT seq, chain FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    except sqlite3.Error as exc:
        raise IntegrityError(f"{path} is not an audit log: {exc}") from None
    finally:
        conn.close()
    if row is None:
        raise IntegrityError(f"{path} holds no events")
    last = int(row[0])
    return LogCopy(report, meta.get("log", ""), last, bytes(row[1]), verifier.key_at(last))


def _key(text: str, path: Path) -> PublicKey:
    try:
        return PublicKey.parse(text)
    except UsageError:
        raise IntegrityError(f"{path} names no valid device key") from None


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
