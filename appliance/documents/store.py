"""The documents store: one encrypted SQLite database, `HOME/documents/store.db`.

SQLite3 Multiple Ciphers (the `apsw` module of `apsw-sqlite3mc`) encrypts
every page of the database and of its WAL with ChaCha20-Poly1305 under the
store key (`keys.py`), so document text, chunks and originals never reach
the disk in plaintext; temporary tables and sorts stay in memory, and
deleted pages are zeroed before a VACUUM rewrites the file. The format is
specified in docs/formats/documents.md.

One connection per store, shared by the service's threads under a lock:
writes are short (the parsing happens before, in a child).
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

import apsw

from appliance.config import ensure_dir
from appliance.documents.keys import documents_dir, store_key
from appliance.errors import ConfigError, IntegrityError
from appliance.seal import Recipient

SCHEMA_VERSION = 1
STORE_FILE = "store.db"
CIPHER = "chacha20"
PERSONAL = "~"  # a personal collection is named "~" + its owner

_SETTINGS = (
    "secure_delete = ON",  # freed pages are zeroed
    "temp_store = MEMORY",  # sorts and temporary tables never reach a file
    "foreign_keys = ON",
    "journal_mode = WAL",
)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS collections (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    owner TEXT,
    created_by TEXT NOT NULL,
    created_us INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS members (
    collection INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    user TEXT NOT NULL,
    PRIMARY KEY (collection, user)
);
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    collection INTEGER NOT NULL REFERENCES collections(id),
    name TEXT NOT NULL,
    title TEXT NOT NULL,
    format TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    pages INTEGER,
    label TEXT NOT NULL,
    declared TEXT NOT NULL,
    found TEXT NOT NULL,
    findings TEXT NOT NULL,
    markings TEXT NOT NULL,
    effective TEXT,
    supersedes TEXT,
    added_by TEXT NOT NULL,
    added_us INTEGER NOT NULL,
    parser TEXT NOT NULL,
    chunker TEXT NOT NULL,
    UNIQUE (collection, name)
);
CREATE TABLE IF NOT EXISTS originals (
    document TEXT PRIMARY KEY REFERENCES documents(id) ON DELETE CASCADE,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    document TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    page INTEGER,
    section INTEGER,
    label TEXT NOT NULL,
    hash TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_document ON chunks(document, seq);
"""


@dataclass(frozen=True)
class Collection:
    id: int
    name: str
    owner: str | None  # personal: its user; shared: None
    created_by: str
    created_us: int

    @property
    def shared(self) -> bool:
        return self.owner is None


@dataclass(frozen=True)
class Document:
    """A document's row: what it is, its label and how it was read (never its text)."""

    id: str
    collection: int
    name: str
    title: str
    format: str
    sha256: str
    bytes: int
    pages: int | None
    label: str  # the highest of `declared` and `found`
    declared: str
    found: str  # from markings and label rules in the text
    findings: str  # JSON: {detector: count}
    markings: str  # JSON: [marking, ...]
    effective: str | None  # YYYY-MM-DD
    supersedes: str | None  # a document id
    added_by: str
    added_us: int
    parser: str
    chunker: str


@dataclass(frozen=True)
class Chunk:
    text: str
    kind: str
    page: int | None
    section: int | None
    hash: str  # what decides whether an unchanged chunk keeps its row


@dataclass(frozen=True)
class Stored:
    """What storing a document changed."""

    kept: int  # chunks whose hash was already stored: rows (and later vectors) kept
    added: int
    removed: int


_DOCUMENT_COLUMNS = ", ".join(field.name for field in fields(Document))
_COLLECTION_COLUMNS = ", ".join(field.name for field in fields(Collection))


class DocumentStore:
    """The home's encrypted store; open with `DocumentStore.open(home, officers)`."""

    def __init__(self, path: Path, key: bytes) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._open(key)

    def _open(self, key: bytes) -> None:
        path = self.path
        try:
            self._db = apsw.Connection(str(path))
            # Before anything reads a page: the cipher, then the key (hex digits only).
            self._db.execute(f"PRAGMA cipher = '{CIPHER}'").fetchall()
            self._db.execute(f"PRAGMA hexkey = '{key.hex()}'").fetchall()
            for setting in _SETTINGS:
                self._db.execute(f"PRAGMA {setting}").fetchall()
            self._db.execute(_SCHEMA)
            self._check_version()
        except apsw.NotADBError:
            raise IntegrityError(
                f"{path} does not open with the documents key: it was altered, or its key "
                "belongs to another store"
            ) from None
        except apsw.Error as exc:
            raise ConfigError(f"cannot open the documents store {path}: {exc}") from None

    @classmethod
    def open(cls, home: Path, officers: Sequence[Recipient]) -> tuple[DocumentStore, bool]:
        """The home's store, made on first use; and whether its key was sealed anew."""
        key, resealed = store_key(home, officers)
        ensure_dir(documents_dir(home))
        return cls(documents_dir(home) / STORE_FILE, key), resealed

    def _check_version(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif row[0] != str(SCHEMA_VERSION):
            raise ConfigError(
                f"the documents store {self.path} has schema {row[0]}; this release reads "
                f"{SCHEMA_VERSION}"
            )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The store to oneself; a page that does not authenticate is an IntegrityError."""
        with self._lock:
            try:
                yield
            except (apsw.CorruptError, apsw.NotADBError):
                raise IntegrityError(
                    f"the documents store {self.path} is damaged or was altered: a page does "
                    "not authenticate under its key"
                ) from None

    def checkpoint(self) -> None:
        """Fold the WAL back into the database file and empty it."""
        with self._locked():
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> DocumentStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- collections ------------------------------------------------------------------

    def collection(self, name: str) -> Collection | None:
        with self._locked():
            row = self._db.execute(
                f"SELECT {_COLLECTION_COLUMNS} FROM collections WHERE name = ?", (name,)
            ).fetchone()
        return _collection(row) if row else None

    def personal(self, user: str) -> Collection:
        """The user's own collection, made when first needed."""
        name = PERSONAL + user
        with self._locked():
            found = self.collection(name)
            if found is not None:
                return found
            return self._create(name, user, user)

    def create_collection(self, name: str, created_by: str) -> Collection:
        with self._locked():
            return self._create(name, None, created_by)

    def _create(self, name: str, owner: str | None, created_by: str) -> Collection:
        now = _now_us()
        self._db.execute(
            "INSERT INTO collections (name, owner, created_by, created_us) VALUES (?, ?, ?, ?)",
            (name, owner, created_by, now),
        )
        return Collection(self._db.last_insert_rowid(), name, owner, created_by, now)

    def set_member(self, collection: Collection, user: str, *, member: bool) -> bool:
        """Add or remove a member; whether anything changed."""
        with self._locked():
            if member:
                self._db.execute(
                    "INSERT OR IGNORE INTO members VALUES (?, ?)", (collection.id, user)
                )
            else:
                self._db.execute(
                    "DELETE FROM members WHERE collection = ? AND user = ?", (collection.id, user)
                )
            return self._db.changes() > 0

    def members(self, collection: Collection) -> list[str]:
        with self._locked():
            rows = self._db.execute(
                "SELECT user FROM members WHERE collection = ? ORDER BY user", (collection.id,)
            ).fetchall()
        return [str(row[0]) for row in rows]

    def collections(self) -> list[Collection]:
        with self._locked():
            rows = self._db.execute(
                f"SELECT {_COLLECTION_COLUMNS} FROM collections ORDER BY name"
            ).fetchall()
        return [_collection(row) for row in rows]

    def readable_collections(self, user: str) -> list[Collection]:
        """The user's own collection (if made) and the shared ones they are a member of."""
        with self._locked():
            rows = self._db.execute(
                f"SELECT {_COLLECTION_COLUMNS} FROM collections WHERE owner = ? OR id IN "
                "(SELECT collection FROM members WHERE user = ?) ORDER BY name",
                (user, user),
            ).fetchall()
        return [_collection(row) for row in rows]

    # -- documents --------------------------------------------------------------------

    def document(self, document_id: str) -> Document | None:
        with self._locked():
            row = self._db.execute(
                f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE id = ?", (document_id,)
            ).fetchone()
        return _document(row) if row else None

    def find(self, collection: Collection, name: str) -> Document | None:
        with self._locked():
            row = self._db.execute(
                f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE collection = ? AND name = ?",
                (collection.id, name),
            ).fetchone()
        return _document(row) if row else None

    def documents(self, collections: Iterable[int], labels: Iterable[str]) -> list[Document]:
        """Documents of these collections whose label is one of `labels`: the filter is
        in the query, so nothing above it is ever read out."""
        ids, levels = list(collections), list(labels)
        if not ids or not levels:
            return []
        query = (
            f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE collection IN ({_marks(ids)}) "
            f"AND label IN ({_marks(levels)}) ORDER BY added_us, id"
        )
        with self._locked():
            rows = self._db.execute(query, (*ids, *levels)).fetchall()
        return [_document(row) for row in rows]

    def all_documents(self) -> list[Document]:
        with self._locked():
            rows = self._db.execute(
                f"SELECT {_DOCUMENT_COLUMNS} FROM documents ORDER BY added_us, id"
            ).fetchall()
        return [_document(row) for row in rows]

    def original(self, document_id: str) -> bytes:
        with self._locked():
            row = self._db.execute(
                "SELECT data FROM originals WHERE document = ?", (document_id,)
            ).fetchone()
        if row is None:
            raise IntegrityError(f"the documents store has no original of {document_id}")
        return bytes(row[0])

    def chunks(self, document_id: str) -> list[tuple[int, Chunk]]:
        with self._locked():
            rows = self._db.execute(
                "SELECT id, text, kind, page, section, hash FROM chunks WHERE document = ? "
                "ORDER BY seq",
                (document_id,),
            ).fetchall()
        return [
            (
                _whole(chunk_id) or 0,
                Chunk(str(text), str(kind), _whole(page), _whole(section), str(hash_)),
            )
            for chunk_id, text, kind, page, section, hash_ in rows
        ]

    def put(self, document: Document, original: bytes | None, chunks: Sequence[Chunk]) -> Stored:
        """Insert or replace a document, its original and its chunks in one transaction.

        A chunk whose hash the document already had keeps its row (and, in
        the retrieval index, what was computed for it); the rest are new.
        """
        with self._locked(), self._db:
            self._db.execute(
                f"INSERT INTO documents ({_DOCUMENT_COLUMNS}) VALUES ({_marks(fields(Document))}) "
                "ON CONFLICT (id) DO UPDATE SET "
                + ", ".join(f"{f.name} = excluded.{f.name}" for f in fields(Document)[1:]),
                astuple(document),
            )
            if original is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO originals VALUES (?, ?)", (document.id, original)
                )
            old: dict[str, list[int]] = {}
            for chunk_id, chunk_hash in self._db.execute(
                "SELECT id, hash FROM chunks WHERE document = ? ORDER BY seq", (document.id,)
            ):
                old.setdefault(chunk_hash, []).append(chunk_id)
            kept = added = 0
            for seq, chunk in enumerate(chunks):
                reuse = old.get(chunk.hash)
                if reuse:
                    self._db.execute(
                        "UPDATE chunks SET seq = ?, page = ?, section = ?, label = ? WHERE id = ?",
                        (seq, chunk.page, chunk.section, document.label, reuse.pop(0)),
                    )
                    kept += 1
                else:
                    self._db.execute(
                        "INSERT INTO chunks (document, seq, kind, page, section, label, hash, "
                        "text) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            document.id,
                            seq,
                            chunk.kind,
                            chunk.page,
                            chunk.section,
                            document.label,
                            chunk.hash,
                            chunk.text,
                        ),
                    )
                    added += 1
            stale = [chunk_id for ids in old.values() for chunk_id in ids]
            self._db.executemany("DELETE FROM chunks WHERE id = ?", [(i,) for i in stale])
        return Stored(kept, added, len(stale))

    def update(self, document: Document) -> None:
        """New metadata for a document whose text did not change (label, dates)."""
        self.put(document, None, [chunk for _, chunk in self.chunks(document.id)])

    def remove(self, document_id: str) -> int:
        """Delete a document and everything made from it; return its chunk count.

        secure_delete zeroes the freed pages, VACUUM rewrites the file without
        them and the WAL is truncated, so the removed text survives nowhere in
        the store's files (nor, encrypted as they are, would it be readable).
        """
        with self._locked():
            with self._db:
                row = self._db.execute(
                    "SELECT count(*) FROM chunks WHERE document = ?", (document_id,)
                ).fetchone()
                count = int(row[0]) if row else 0
                self._db.execute(
                    "UPDATE documents SET supersedes = NULL WHERE supersedes = ?", (document_id,)
                )
                self._db.execute("DELETE FROM documents WHERE id = ?", (document_id,))
            self._db.execute("VACUUM")
            self.checkpoint()
        return int(count)

    def size(self) -> int:
        """Bytes of the store's files on disk (database and WAL)."""
        return sum(
            path.stat().st_size
            for path in (self.path, self.path.with_name(self.path.name + "-wal"))
            if path.exists()
        )


def new_document_id() -> str:
    return uuid.uuid4().hex


def rows(documents: Iterable[Document]) -> Iterator[dict[str, Any]]:
    for document in documents:
        yield {field.name: getattr(document, field.name) for field in fields(Document)}


def _marks(items: Sequence[Any]) -> str:
    return ", ".join("?" * len(items))


def _document(row: Any) -> Document:
    return Document(*row)


def _collection(row: Any) -> Collection:
    return Collection(*row)


def _whole(value: object) -> int | None:
    return value if isinstance(value, int) else None


def _now_us() -> int:
    return time.time_ns() // 1000
