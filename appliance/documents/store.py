"""The documents store: one encrypted SQLite database, `HOME/documents/store.db`.

SQLite3 Multiple Ciphers (the `apsw` module of `apsw-sqlite3mc`) encrypts
every page of the database and of its WAL with ChaCha20-Poly1305 under the
store key (`keys.py`), so document text, chunks, originals and what retrieval
computes from them (postings, vectors) never reach the disk in plaintext;
temporary tables and sorts stay in memory, and deleted pages are zeroed
before a VACUUM rewrites the file. The format is specified in
docs/formats/documents.md.

One connection per store, shared by the service's threads under a lock:
writes are short (the parsing, the tokenizing and the embedding happen before).

Retrieval reads the store one partition at a time: the chunks of one
collection at one label. Every write that changes what a partition holds
(its chunks, their postings and vectors, its documents' metadata) bumps the
partition's version in `partitions`, which is how a reader's cache knows it
is stale, in this process or another.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

import apsw

from appliance.config import ensure_dir
from appliance.documents.keys import documents_dir, store_key
from appliance.errors import ConfigError, IntegrityError
from appliance.seal import Recipient

SCHEMA_VERSION = 2
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
    UNIQUE (collection, added_by, name)
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
CREATE INDEX IF NOT EXISTS documents_by_partition ON documents(collection, label);
CREATE TABLE IF NOT EXISTS postings (
    chunk INTEGER PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,
    words INTEGER NOT NULL,
    grams INTEGER NOT NULL,
    split INTEGER NOT NULL,
    terms TEXT NOT NULL,
    tfs BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS vectors (
    chunk INTEGER NOT NULL REFERENCES chunks(id) ON DELETE CASCADE,
    embedder TEXT NOT NULL,
    scale REAL NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (chunk, embedder)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS partitions (
    collection INTEGER NOT NULL,
    label TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (collection, label)
) WITHOUT ROWID;
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
class Postings:
    """A chunk's keyword postings, as `index.py` encodes them."""

    words: int  # morpheme tokens in the chunk (the BM25 length of that field)
    grams: int  # bigram tokens
    split: int  # the first `split` terms are morphemes, the rest bigrams
    terms: str  # the distinct terms, one a line
    tfs: bytes  # each term's frequency, uint16 little-endian


@dataclass(frozen=True)
class Vector:
    """A chunk's dense vector: int8 components times `scale`."""

    embedder: str
    scale: float
    data: bytes


@dataclass(frozen=True)
class ChunkIndex:
    """What retrieval computed from one chunk's text, written with the chunk."""

    postings: Postings | None  # None: the stored ones stay
    vector: Vector | None


@dataclass(frozen=True)
class Stored:
    """What storing a document changed."""

    kept: int  # chunks whose hash was already stored: rows, postings and vectors kept
    added: int
    removed: int


@dataclass(frozen=True)
class PartitionDocument:
    id: str
    name: str
    title: str
    effective: str | None
    supersedes: str | None


@dataclass(frozen=True)
class PartitionRow:
    """One chunk of a partition with its postings and vector (None where not computed)."""

    chunk: int
    document: str
    postings: Postings | None
    vector: Vector | None


@dataclass(frozen=True)
class Partition:
    """Everything retrieval keeps in memory of one collection at one label."""

    collection: int
    label: str
    version: int
    documents: list[PartitionDocument]
    rows: list[PartitionRow]


@dataclass(frozen=True)
class StoredChunk:
    id: int
    document: str
    seq: int
    kind: str
    page: int | None
    section: int | None
    label: str
    text: str


_DOCUMENT_COLUMNS = ", ".join(field.name for field in fields(Document))
_COLLECTION_COLUMNS = ", ".join(field.name for field in fields(Collection))


class DocumentStore:
    """The home's encrypted store; open with `DocumentStore.open(home, officers)`."""

    def __init__(self, path: Path, key: bytes) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._key = key  # for consistent copies (copy_to); SQLite holds it anyway
        self._open(key)

    def _open(self, key: bytes) -> None:
        path = self.path
        try:
            self._db = _keyed(path, key)
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
        elif row[0] == "1":
            # Version 2 only added tables (made above, empty) and an index: every
            # partition gets a version, and retrieval computes the postings and vectors
            # a partition lacks when it first reads it (`retrieve.py`).
            with self._db:
                self._db.execute(
                    "INSERT OR IGNORE INTO partitions SELECT DISTINCT collection, label, 1 "
                    "FROM documents"
                )
                self._db.execute(
                    "UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),)
                )
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

    def copy_to(self, target: Path) -> None:
        """A consistent copy of the whole store in a new file `target`, encrypted under
        the same key: SQLite's online backup from a connection of its own, in one step
        (one read transaction, so one snapshot; writers go on meanwhile). Pages pass
        decrypted only through memory; nothing reaches `target` in plaintext."""
        if target.exists() or target.is_symlink():
            raise ConfigError(f"{target} already exists; refusing to overwrite it")
        try:
            source = _keyed(self.path, self._key)
            try:
                copy = _keyed(target, self._key)
                try:
                    with copy.backup("main", source, "main") as backup:
                        backup.step()  # every page at once
                finally:
                    copy.close()
            finally:
                source.close()
        except (apsw.CorruptError, apsw.NotADBError):
            raise IntegrityError(
                f"the documents store {self.path} is damaged or was altered: a page does "
                "not authenticate under its key"
            ) from None
        except apsw.Error as exc:
            raise ConfigError(f"cannot copy the documents store {self.path}: {exc}") from None

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

    def find(self, collection: Collection, added_by: str, name: str) -> Document | None:
        """What `added_by` added to `collection` under `name`: each user names their own
        documents, so adding one says nothing about anybody else's."""
        with self._locked():
            row = self._db.execute(
                f"SELECT {_DOCUMENT_COLUMNS} FROM documents "
                "WHERE collection = ? AND added_by = ? AND name = ?",
                (collection.id, added_by, name),
            ).fetchone()
        return _document(row) if row else None

    def documents(self, collections: Iterable[int], labels: Iterable[str]) -> list[Document]:
        """Documents of these collections whose label is one of `labels`: the filter is
        in the query, so nothing above it is ever read out."""
        rows = self._readable(_DOCUMENT_COLUMNS, "documents", collections, labels, "added_us, id")
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

    def chunk_hashes(self, document_id: str) -> set[str]:
        """The hashes of a document's stored chunks: what `put` would keep."""
        with self._locked():
            rows = self._db.execute(
                "SELECT hash FROM chunks WHERE document = ?", (document_id,)
            ).fetchall()
        return {str(row[0]) for row in rows}

    def put(
        self,
        document: Document,
        original: bytes | None,
        chunks: Sequence[Chunk],
        index: Mapping[str, ChunkIndex] | None = None,
    ) -> Stored:
        """Insert or replace a document, its original and its chunks in one transaction.

        A chunk whose hash the document already had keeps its row (and its
        postings and vectors); a new one is inserted with what `index` holds
        for its hash, in the same transaction. A new chunk that `index` lacks
        is left for `Retriever.index` to complete.
        """
        index = index or {}
        with self._locked(), self._db:
            before = self._db.execute(
                "SELECT collection, label FROM documents WHERE id = ?", (document.id,)
            ).fetchone()
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
                    computed = index.get(chunk.hash)
                    if computed is not None:
                        self._write_index(self._db.last_insert_rowid(), computed)
                    added += 1
            stale = [chunk_id for ids in old.values() for chunk_id in ids]
            self._db.executemany("DELETE FROM chunks WHERE id = ?", [(i,) for i in stale])
            self._bump(
                [(document.collection, document.label), *([tuple(before)] if before else [])]
            )
        return Stored(kept, added, len(stale))

    def _write_index(self, chunk_id: int, computed: ChunkIndex) -> None:
        postings = computed.postings
        if postings is not None:
            self._db.execute(
                "INSERT OR REPLACE INTO postings VALUES (?, ?, ?, ?, ?, ?)",
                (chunk_id, postings.words, postings.grams, postings.split, postings.terms,
                 postings.tfs),
            )  # fmt: skip
        vector = computed.vector
        if vector is not None:
            self._db.execute(
                "INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?)",
                (chunk_id, vector.embedder, vector.scale, vector.data),
            )

    def _bump(self, partitions: Iterable[tuple[Any, ...]]) -> None:
        """A new version for each partition: what readers cached of it is stale."""
        self._db.executemany(
            "INSERT INTO partitions VALUES (?, ?, 1) "
            "ON CONFLICT (collection, label) DO UPDATE SET version = version + 1",
            sorted({(int(c), str(label)) for c, label in partitions}),
        )

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
                touched = self._db.execute(
                    "SELECT collection, label FROM documents WHERE id = ? OR supersedes = ?",
                    (document_id, document_id),
                ).fetchall()
                self._db.execute(
                    "UPDATE documents SET supersedes = NULL WHERE supersedes = ?", (document_id,)
                )
                self._db.execute("DELETE FROM documents WHERE id = ?", (document_id,))
                self._bump(touched)
            self._db.execute("VACUUM")
            self.checkpoint()
        return int(count)

    # -- retrieval ------------------------------------------------------------------------

    def partitions(
        self, collections: Iterable[int], labels: Iterable[str]
    ) -> list[tuple[int, str, int]]:
        """(collection, label, version) of each partition of these collections and labels."""
        columns, order = "collection, label, version", "collection, label"
        rows = self._readable(columns, "partitions", collections, labels, order)
        return [(_int(c), str(label), _int(v)) for c, label, v in rows]

    def _readable(
        self,
        columns: str,
        table: str,
        collections: Iterable[int],
        labels: Iterable[str],
        order: str,
    ) -> list[tuple[Any, ...]]:
        """`columns` of `table`'s rows in these collections with one of these labels: the
        reader's filter is part of the query. The names are this module's constants."""
        ids, levels = list(collections), list(labels)
        if not ids or not levels:
            return []
        query = (
            f"SELECT {columns} FROM {table} WHERE collection IN ({_marks(ids)}) "
            f"AND label IN ({_marks(levels)}) ORDER BY {order}"
        )
        with self._locked():
            return list(self._db.execute(query, (*ids, *levels)).fetchall())

    def partition(self, collection: int, label: str, embedder: str | None) -> Partition:
        """A partition's documents and chunks with their postings and `embedder`'s vectors,
        read at one version."""
        with self._locked():
            row = self._db.execute(
                "SELECT version FROM partitions WHERE collection = ? AND label = ?",
                (collection, label),
            ).fetchone()
            documents = self._partition_documents(collection, label)
            rows = [
                PartitionRow(
                    int(chunk),
                    str(document),
                    None if terms is None else Postings(words, grams, split, terms, bytes(tfs)),
                    None if data is None else Vector(str(embedder), float(scale), bytes(data)),
                )
                for chunk, document, words, grams, split, terms, tfs, scale, data in (
                    self._db.execute(
                        "SELECT c.id, c.document, p.words, p.grams, p.split, p.terms, p.tfs, "
                        "v.scale, v.data FROM documents d JOIN chunks c ON c.document = d.id "
                        "LEFT JOIN postings p ON p.chunk = c.id "
                        "LEFT JOIN vectors v ON v.chunk = c.id AND v.embedder = ? "
                        "WHERE d.collection = ? AND d.label = ? ORDER BY c.id",
                        (embedder or "", collection, label),
                    )
                )
            ]
        version = int(row[0]) if row else 0
        return Partition(collection, label, version, documents, rows)

    def partition_texts(
        self, collection: int, label: str
    ) -> tuple[int, list[PartitionDocument], list[tuple[int, str, str]]]:
        """A partition's version, documents and chunks' (id, document, text)."""
        with self._locked():
            row = self._db.execute(
                "SELECT version FROM partitions WHERE collection = ? AND label = ?",
                (collection, label),
            ).fetchone()
            documents = self._partition_documents(collection, label)
            texts = [
                (int(chunk), str(document), str(text))
                for chunk, document, text in self._db.execute(
                    "SELECT c.id, c.document, c.text FROM documents d JOIN chunks c "
                    "ON c.document = d.id WHERE d.collection = ? AND d.label = ? ORDER BY c.id",
                    (collection, label),
                )
            ]
        return (int(row[0]) if row else 0), documents, texts

    def _partition_documents(self, collection: int, label: str) -> list[PartitionDocument]:
        return [
            PartitionDocument(str(i), str(n), str(t), e, s)
            for i, n, t, e, s in self._db.execute(
                "SELECT id, name, title, effective, supersedes FROM documents "
                "WHERE collection = ? AND label = ? ORDER BY id",
                (collection, label),
            )
        ]

    def stored_chunks(self, chunk_ids: Iterable[int]) -> dict[int, StoredChunk]:
        ids = list(chunk_ids)
        if not ids:
            return {}
        with self._locked():
            rows = self._db.execute(
                "SELECT id, document, seq, kind, page, section, label, text FROM chunks "
                f"WHERE id IN ({_marks(ids)})",
                ids,
            ).fetchall()
        return {
            _int(i): StoredChunk(
                _int(i), str(d), _int(q), str(k), _whole(p), _whole(s), str(lb), str(t)
            )
            for i, d, q, k, p, s, lb, t in rows
        }

    def unindexed(
        self, embedder: str | None, document_id: str | None = None
    ) -> list[tuple[StoredChunk, bool, bool]]:
        """Chunks (of one document, or all) without postings or without a vector of
        `embedder` (when given): each with whether it lacks postings, and a vector."""
        where = "WHERE c.document = ?" if document_id is not None else ""
        missing = "p.chunk IS NULL" + (" OR v.chunk IS NULL" if embedder else "")
        query = (
            "SELECT c.id, c.document, c.seq, c.kind, c.page, c.section, c.label, c.text, "
            "p.chunk IS NULL, v.chunk IS NULL "
            "FROM chunks c LEFT JOIN postings p ON p.chunk = c.id "
            "LEFT JOIN vectors v ON v.chunk = c.id AND v.embedder = ? "
            f"{where} {'AND' if where else 'WHERE'} ({missing}) ORDER BY c.id"
        )
        args: tuple[Any, ...] = (embedder or "",) + (
            (document_id,) if document_id is not None else ()
        )
        with self._locked():
            rows = self._db.execute(query, args).fetchall()
        return [
            (
                StoredChunk(
                    _int(i), str(d), _int(q), str(k), _whole(p), _whole(s), str(lb), str(t)
                ),
                bool(no_postings),
                bool(no_vector) and embedder is not None,
            )
            for i, d, q, k, p, s, lb, t, no_postings, no_vector in rows
        ]

    def put_index(self, computed: Mapping[int, ChunkIndex]) -> int:
        """Write postings and vectors for chunks that lack them; those that were removed
        meanwhile are skipped. How many were written."""
        if not computed:
            return 0
        written = 0
        with self._locked(), self._db:
            touched = []
            for chunk_id, entry in computed.items():
                row = self._db.execute(
                    "SELECT d.collection, d.label FROM chunks c JOIN documents d "
                    "ON d.id = c.document WHERE c.id = ?",
                    (chunk_id,),
                ).fetchone()
                if row is None:
                    continue
                self._write_index(chunk_id, entry)
                touched.append(tuple(row))
                written += 1
            self._bump(touched)
        return written

    def keep_postings_of(self, analyser: str) -> bool:
        """Drop every chunk's postings unless `analyser` made them (a store from before
        it); retrieval computes them again as it reads each partition. Whether any
        were dropped."""
        stale = 0
        with self._locked(), self._db:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'analyser'").fetchone()
            if row is None or row[0] != analyser:
                stale = _int(self._db.execute("SELECT count(*) FROM postings").fetchall()[0][0])
                if stale:
                    self._db.execute("DELETE FROM postings")
                    self._bump(self._db.execute("SELECT DISTINCT collection, label FROM documents"))
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('analyser', ?)", (analyser,))
        return stale > 0

    def counts(self) -> dict[str, int]:
        """Rows in the tables that hold text or what was computed from it."""
        with self._locked():
            return {
                table: _int(self._db.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])
                for table in ("documents", "originals", "chunks", "postings", "vectors")
            }

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


def _keyed(path: Path, key: bytes) -> apsw.Connection:
    """A connection to `path` with the store's cipher and key set, before anything reads a
    page (hex digits only reach the PRAGMA)."""
    db = apsw.Connection(str(path))
    try:
        db.execute(f"PRAGMA cipher = '{CIPHER}'").fetchall()
        db.execute(f"PRAGMA hexkey = '{key.hex()}'").fetchall()
    except BaseException:
        db.close()
        raise
    return db


def _collection(row: Any) -> Collection:
    return Collection(*row)


def _int(value: object) -> int:
    if not isinstance(value, int):
        raise IntegrityError(f"the documents store holds {type(value).__name__} for a number")
    return value


def _whole(value: object) -> int | None:
    return value if isinstance(value, int) else None


def _now_us() -> int:
    return time.time_ns() // 1000
