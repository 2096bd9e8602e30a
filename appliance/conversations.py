"""Each user's saved conversations, encrypted under a key that only their password opens.

`HOME/conversations/USER.db` (mode 0600) holds a random data key wrapped with
AES-256-GCM under argon2id(password, salt), and one row per conversation:
its id, time, classification label (in clear, so conversations above a
user's current clearance are hidden without decrypting them), and title and
messages, each AES-256-GCM under the data key with the user, id, field and
label as associated data, so rows cannot be swapped between users or fields
and a label cannot be lowered without the row failing to open. Stores from
before the label was bound are re-sealed once, when their user next signs in.

The appliance never sees the password again after sign-in, so it cannot
re-wrap the key when an admin resets a password: the store that no longer
opens is set aside (renamed, never deleted) and a new one begins.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.config import ensure_dir
from appliance.engine import Message
from appliance.errors import ConfigError, IntegrityError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (salt BLOB NOT NULL, wrapped_key BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS bound (labels INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    updated_us INTEGER NOT NULL,
    label TEXT NOT NULL,
    title BLOB NOT NULL,
    body BLOB NOT NULL
);
"""
_NONCE = 12
TITLE_LENGTH = 48


@dataclass(frozen=True)
class Summary:
    id: str
    title: str
    label: str  # a policy level id
    updated_us: int


class Conversations:
    """One user's conversations; open with `Conversations.open`."""

    def __init__(self, conn: sqlite3.Connection, user: str, key: bytes) -> None:
        self._conn = conn
        self._user = user
        self._aead = AESGCM(key)
        self._bind_labels()

    @classmethod
    def open(cls, home: Path, user: str, password: str) -> tuple[Conversations, str | None]:
        """The user's store, and a notice when an unreadable old store was set aside."""
        directory = ensure_dir(home / "conversations")
        path = directory / f"{user}.db"
        notice = None
        for _ in range(2):
            conn = _connect(path)
            try:
                return cls(conn, user, _data_key(conn, user, password)), notice
            except InvalidTag:
                conn.close()
                aside = path.with_name(f"{path.name}.unreadable-{time.strftime('%Y%m%dT%H%M%S')}")
                os.replace(path, aside)
                for suffix in ("-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.replace(f"{path}{suffix}", f"{aside}{suffix}")
                notice = (
                    "your saved conversations were locked with a previous password; "
                    f"they were set aside as {aside.name}"
                )
        raise ConfigError(f"cannot open the conversations of {user}")  # pragma: no cover

    def close(self) -> None:
        self._conn.close()

    def summaries(self, visible_labels: set[str]) -> list[Summary]:
        """Newest first; only those whose label is among `visible_labels`."""
        rows = self._conn.execute(
            "SELECT id, updated_us, label, title FROM conversations ORDER BY updated_us DESC"
        )
        return [
            Summary(id, self._open(id, "title", title, label).decode(), label, updated)
            for id, updated, label, title in rows
            if label in visible_labels
        ]

    def load(self, conversation_id: str) -> tuple[list[Message], str]:
        """The messages of a conversation, and its label."""
        row = self._conn.execute(
            "SELECT body, label FROM conversations WHERE id = ?", (conversation_id,)
        ).fetchone()
        if row is None:
            raise ConfigError(f"there is no conversation {conversation_id}")
        records = json.loads(self._open(conversation_id, "body", row[0], row[1]))
        return [Message(record["role"], record["content"]) for record in records], row[1]

    def save(self, conversation_id: str | None, messages: list[Message], label: str) -> str:
        """Create or replace a conversation; returns its id."""
        conversation_id = conversation_id or uuid.uuid4().hex
        first = next((m.content for m in messages if m.role == "user"), "")
        title = " ".join(first.split())[:TITLE_LENGTH] or "(empty)"
        body = json.dumps([{"role": m.role, "content": m.content} for m in messages])
        with self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO conversations VALUES (?, ?, ?, ?, ?)",
                (
                    conversation_id,
                    time.time_ns() // 1000,
                    label,
                    self._seal(conversation_id, "title", title.encode(), label),
                    self._seal(conversation_id, "body", body.encode(), label),
                ),
            )
        return conversation_id

    def delete(self, conversation_id: str) -> None:
        with self._conn:
            self._conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    def _seal(self, conversation_id: str, field: str, data: bytes, label: str) -> bytes:
        nonce = os.urandom(_NONCE)
        context = self._context(conversation_id, field, label)
        return nonce + self._aead.encrypt(nonce, data, context)

    def _open(self, conversation_id: str, field: str, blob: bytes, label: str | None) -> bytes:
        try:
            return self._aead.decrypt(
                blob[:_NONCE], blob[_NONCE:], self._context(conversation_id, field, label)
            )
        except InvalidTag:
            raise IntegrityError(
                f"the saved conversation {conversation_id} of {self._user} was altered"
            ) from None

    def _context(self, conversation_id: str, field: str, label: str | None) -> bytes:
        bound = [self._user, conversation_id, field]
        return json.dumps(bound if label is None else [*bound, label]).encode()

    def _bind_labels(self) -> None:
        """Re-seal rows from before labels were bound (label None: the old context), once."""
        with self._conn:
            if self._conn.execute("SELECT labels FROM bound").fetchone() is not None:
                return
            rows = self._conn.execute("SELECT id, label, title, body FROM conversations")
            for conversation_id, label, title, body in rows.fetchall():
                self._conn.execute(
                    "UPDATE conversations SET title = ?, body = ? WHERE id = ?",
                    (
                        self._seal(
                            conversation_id,
                            "title",
                            self._open(conversation_id, "title", title, None),
                            label,
                        ),
                        self._seal(
                            conversation_id,
                            "body",
                            self._open(conversation_id, "body", body, None),
                            label,
                        ),
                        conversation_id,
                    ),
                )
            self._conn.execute("INSERT INTO bound VALUES (1)")


def _connect(path: Path) -> sqlite3.Connection:
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
        conn = sqlite3.connect(path, timeout=10, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(_SCHEMA)
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"cannot open the conversation store {path}: {exc}") from None
    conn.isolation_level = "DEFERRED"  # `with conn:` commits or rolls back
    return conn


def _data_key(conn: sqlite3.Connection, user: str, password: str) -> bytes:
    """Unwrap the data key (InvalidTag for another password), or make one on first use."""
    context = json.dumps(["conversation-key", user]).encode()
    conn.execute("BEGIN IMMEDIATE")  # two first sign-ins at once make one key
    try:
        row = conn.execute("SELECT salt, wrapped_key FROM meta").fetchone()
        if row is None:
            salt, key, nonce = os.urandom(16), AESGCM.generate_key(256), os.urandom(_NONCE)
            wrapped = nonce + AESGCM(_password_key(password, salt)).encrypt(nonce, key, context)
            conn.execute("INSERT INTO meta VALUES (?, ?)", (salt, wrapped))
            conn.commit()
            return key
    finally:
        if conn.in_transaction:
            conn.rollback()
    salt, wrapped = row
    return AESGCM(_password_key(password, salt)).decrypt(
        wrapped[:_NONCE], wrapped[_NONCE:], context
    )


def _password_key(password: str, salt: bytes) -> bytes:
    # argon2id with the parameters of the password hashes (RFC 9106, low-memory).
    return hash_secret_raw(
        password.encode(),
        salt,
        time_cost=3,
        memory_cost=65536,
        parallelism=4,
        hash_len=32,
        type=Type.ID,
    )
