"""Making a backup: consistent copies of the home's databases, sealed as one file.

Each SQLite database is copied with SQLite's online backup API, in one step
(one read transaction: one snapshot, while writers go on in WAL mode), into a
private folder of the home (0700, removed at once): each copy as sensitive as
the database beside it (the documents store's encrypted under its own key, the
conversations under their users' keys), and none held whole in memory, since
the log grows for years. The archive is streamed from those copies straight
into the sealer, so no archive reaches a disk unsealed.
The audit log is copied last: every change the other copies hold was
recorded before it (an event follows its change), so the log copy covers them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from appliance import __version__
from appliance.audit import Actor, AuditLog, Event, audit_dir
from appliance.backup.archive import NAMES, Part, TarStream
from appliance.backup.logcopy import signing_key
from appliance.config import CONFIG_FILE, ensure_dir
from appliance.documents.home import open_documents
from appliance.documents.keys import KEY_FILE, RECIPIENTS_FILE, documents_dir
from appliance.documents.store import STORE_FILE, DocumentStore
from appliance.errors import ApplianceError, AuditError, ConfigError
from appliance.fsutil import atomic_writer, read_limited
from appliance.identity import users_path
from appliance.policy import HOME_POLICY
from appliance.seal import Recipient
from appliance.seal.stream import seal_stream

BACKUP_CONTENT_ID = "appliance-backup"
BACKUP_FORMAT = "appliance-backup/v1"
SIGNATURE_CONTEXT = b"appliance-backup/v1 manifest\n"
SYSTEM = Actor("appliance", "system")
MAX_SMALL_FILE = 1 << 20  # config, officers, the store's key: small by nature
COPIES = "drafts/copies"  # the home's draft copy counter (drafting.py)
_ONE_AT_A_TIME = threading.Lock()  # a process makes one backup at a time


@dataclass(frozen=True)
class BackupResult:
    """What a backup wrote: the sealed file, and the log seq its copy reaches."""

    path: Path
    sha256: str  # of the sealed file
    bytes: int
    last_seq: int  # the last event of the backup's log copy
    seq: int  # the `backup` event that records it

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.path.name,
            "path": str(self.path),
            "sha256": self.sha256,
            "bytes": self.bytes,
            "last_seq": self.last_seq,
            "seq": self.seq,
        }


def backup_name(moment: float) -> str:
    return time.strftime("appliance-backup-%Y%m%dT%H%M%SZ.sealed", time.gmtime(moment))


def _free_name(folder: Path, name: str) -> Path:
    """`name`, or for a second backup within the same second `...Z-2.sealed` and on:
    never the name of a file that exists (the write itself refuses one made meanwhile)."""
    stem = name.removesuffix(".sealed")
    for count in range(1, 100):
        target = folder / (name if count == 1 else f"{stem}-{count}.sealed")
        if not (target.exists() or target.is_symlink()):
            return target
    raise ConfigError(f"{folder} already holds 99 backups made this second")


def make_backup(
    home: Path,
    log: AuditLog,
    actor: Actor,
    folder: Path,
    recipients: Sequence[Recipient],
    *,
    documents: DocumentStore | None = None,
    scheduled: bool = False,
) -> BackupResult:
    """Seal a consistent backup of `home` to `recipients` into a new file in `folder`.

    `documents` is the home's open store where the caller holds one (the
    service); otherwise it is opened here if the home has one. The backup is
    recorded as a `backup` event; a failure too (outcome failed), and the
    error is raised.
    """
    details: dict[str, Any] = {
        "folder": str(folder),
        "recipients": [str(recipient) for recipient in recipients],
        "scheduled": scheduled,
    }
    with _ONE_AT_A_TIME:
        try:
            try:
                return _make(home, log, actor, folder, recipients, documents, details)
            except OSError as exc:  # the home or the folder: full, read-only, gone
                raise ConfigError(f"cannot back up {home}: {exc.strerror or exc}") from None
        except ApplianceError as exc:
            failed = {**details, "error": exc.message}
            with contextlib.suppress(ApplianceError):
                log.record(Event(actor, "backup", None, "failed", details=failed))
            raise


def _make(
    home: Path,
    log: AuditLog,
    actor: Actor,
    folder: Path,
    recipients: Sequence[Recipient],
    documents: DocumentStore | None,
    details: dict[str, Any],
) -> BackupResult:
    if not recipients:
        raise ConfigError("a backup needs at least one recipient")
    ensure_dir(folder)
    made = time.time()
    target = _free_name(folder, backup_name(made))
    log.checkpoint()  # the copy's last events are signed, but for what comes meanwhile
    with tempfile.TemporaryDirectory(prefix=".backup-", dir=home) as private:
        parts = _copies(home, log, documents, Path(private))
        audit, last_seq, chain, log_id = _log_copy(home, log, Path(private))
        parts.append(audit)
        manifest = {
            "format": BACKUP_FORMAT,
            "appliance": __version__,
            "made_us": int(made * 1_000_000),
            "log": log_id,
            "last_seq": last_seq,
            "chain": chain.hex(),
            "device_key": str(log.key.public),
            "files": {part.name: part.sha256() for part in parts},
            "policy_link": _policy_link(home),
        }
        body = json.dumps(manifest, sort_keys=True, ensure_ascii=True, indent=1).encode()
        signature = log.key.sign(SIGNATURE_CONTEXT + body)
        members = [Part.of_bytes("backup.json", body), Part.of_bytes("backup.sig", signature)]
        stream = TarStream(members + parts)
        try:
            with atomic_writer(target, mode=0o600, replace=False) as sink:
                counted = _Counting(sink)
                seal_stream(
                    cast(BinaryIO, stream),
                    stream.length,
                    cast(BinaryIO, counted),
                    list(recipients),
                    BACKUP_CONTENT_ID,
                )
        finally:
            stream.close()
    digest = counted.digest.hexdigest()
    details |= {
        "file": target.name,
        "sha256": digest,
        "bytes": counted.size,
        "log": log_id,
        "last_seq": last_seq,
        "files": len(parts),
    }
    try:
        seq = log.record(Event(actor, "backup", target.name, details=details), checkpoint=True)
    except AuditError:
        target.unlink(missing_ok=True)  # what is not audited was not made
        raise
    return BackupResult(target, digest, counted.size, last_seq, seq)


class _Counting:
    """The sealed bytes on their way to the file: counted and hashed."""

    def __init__(self, sink: BinaryIO) -> None:
        self.sink = sink
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.sink.write(data)


def _copies(
    home: Path, log: AuditLog, documents: DocumentStore | None, private: Path
) -> list[Part]:
    """Every member but the audit log's copy, in archive order."""
    parts: list[Part] = []
    for name in (CONFIG_FILE, "audit/officers", COPIES):
        data = _small_file(home / name)
        if data is not None:
            parts.append(Part.of_bytes(name, data))
    policy = home / HOME_POLICY
    if not policy.is_symlink() and policy.is_file():
        parts.append(Part.of_bytes(HOME_POLICY, read_limited(policy, 1 << 20, "the policy")))
    users = users_path(home)
    if users.is_file():
        parts.append(_sqlite_copy("identity/users.db", users, private))
    conversations = home / "conversations"
    if conversations.is_dir():
        for path in sorted(conversations.glob("*.db")):
            name = f"conversations/{path.name}"
            if NAMES.fullmatch(name) and path.is_file():
                parts.append(_sqlite_copy(name, path, private))
    parts += _documents(home, log, documents, private)
    return parts


def _documents(
    home: Path, log: AuditLog, documents: DocumentStore | None, private: Path
) -> list[Part]:
    """The store, encrypted under its key as on disk, and that key, sealed as it is."""
    directory = documents_dir(home)
    if not (directory / STORE_FILE).is_file():
        return []
    copy = private / STORE_FILE
    with _store(home, log, documents) as store:
        store.copy_to(copy)
    parts = [Part.of_file(f"documents/{STORE_FILE}", copy)]
    for name in (KEY_FILE, RECIPIENTS_FILE):
        data = _small_file(directory / name)
        if data is not None:
            parts.append(Part.of_bytes(f"documents/{name}", data))
    return parts


@contextlib.contextmanager
def _store(home: Path, log: AuditLog, documents: DocumentStore | None) -> Iterator[DocumentStore]:
    if documents is not None:
        yield documents
        return
    with open_documents(home, log) as store:
        yield store


def _log_copy(home: Path, log: AuditLog, private: Path) -> tuple[Part, int, bytes, str]:
    """The audit log's copy, its last event's seq and chain, and its log id."""
    path = audit_dir(home) / "log.db"
    with _sqlite_file_copy(path, private / "log.db") as copy:
        meta = dict(copy.execute("SELECT key, value FROM meta").fetchall())
        row = copy.execute("SELECT seq, chain FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        key = signing_key(copy)
    if meta.get("log") != log.log_id or key != str(log.key.public):
        raise AuditError(f"the audit log {path} changed identity while it was being backed up")
    if row is None:
        raise AuditError(f"the audit log {path} holds no events")
    copy_part = Part.of_file("audit/log.db", private / "log.db")
    return copy_part, int(row[0]), bytes(row[1]), log.log_id


def _sqlite_copy(name: str, path: Path, private: Path) -> Part:
    target = private / name.replace("/", "-")
    with _sqlite_file_copy(path, target):
        pass
    return Part.of_file(name, target)


@contextlib.contextmanager
def _sqlite_file_copy(path: Path, target: Path) -> Iterator[sqlite3.Connection]:
    """A consistent copy of the database at `path` (SQLite's online backup, every page
    in one step) as the new file `target` (0600, in the backup's private folder of the
    home: as sensitive as the database beside it, and never whole in memory), one
    file with no journal once the block ends."""
    uri = f"file:{urllib.parse.quote(str(path))}?mode=rw"
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    try:
        source = sqlite3.connect(uri, uri=True, timeout=10)
        try:
            copy = sqlite3.connect(target)
            try:
                source.backup(copy)
                copy.execute("PRAGMA journal_mode=DELETE")  # the whole copy in its one file
                yield copy
            finally:
                copy.close()
        finally:
            source.close()
    except sqlite3.Error as exc:
        raise ConfigError(f"cannot copy the database {path}: {exc}") from None


def _small_file(path: Path) -> bytes | None:
    if not path.exists():
        return None
    if path.is_symlink() or not path.is_file():
        raise ConfigError(f"{path} is not a regular file; it cannot be backed up as it is")
    return read_limited(path, MAX_SMALL_FILE, "the file")


def _policy_link(home: Path) -> dict[str, Any]:
    """What `policy.toml` is: a link (its target, as the link says it), a file (a member
    of the backup), or absent; with the sha256 of what it resolves to."""
    path = home / HOME_POLICY
    try:
        resolved = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        resolved = None
    if path.is_symlink():
        return {"kind": "link", "target": os.readlink(path), "sha256": resolved}
    if path.is_file():
        return {"kind": "file", "sha256": resolved}
    return {"kind": "absent", "sha256": None}


def last_backup(log: AuditLog) -> tuple[int, int] | None:
    """The seq and time (µs) of the newest backup that succeeded, or None if none did."""
    for row in log.events(action="backup", newest_first=True):
        leaf = json.loads(row["leaf"])
        if leaf.get("outcome") == "ok":
            return int(row["seq"]), int(leaf["time_us"])
    return None
