"""The documents a signed-in user may work with: add, list, show, search, remove, reindex.

Every call runs as one principal and enforces, in this order: the role's
permission, the collection's membership, the clearance (nobody adds or sees
a document above their own), then the work. Each change and each refusal is
audited: by ids, sizes, labels and finding types in the clear, and the file
name and title sealed to the officers, never the text.

Parsing happens in a disposable child (`sandbox`), before the store's lock is
taken, and so do the tokenizing and embedding of new chunks for retrieval
(`retrieve.Retriever.prepare`): their postings and vectors are written with
them. The store keeps the original (encrypted) so `reindex` can read it again
when the parser, the chunker or the policy's rules change.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from pathlib import Path, PurePath
from typing import Any

from appliance.audit import Actor, AuditLog, Event
from appliance.documents import embed
from appliance.documents.chunking import CHUNKER_VERSION, chunk_document
from appliance.documents.formats import sniff_family
from appliance.documents.labels import DocumentLabel, document_label
from appliance.documents.model import Parsed
from appliance.documents.retrieve import Retrieval, Retriever
from appliance.documents.sandbox import parse_document
from appliance.documents.store import (
    PERSONAL,
    Collection,
    Document,
    DocumentStore,
    new_document_id,
)
from appliance.errors import (
    ApplianceError,
    BlockedError,
    DocumentError,
    PermissionDeniedError,
    UsageError,
)
from appliance.identity import Principal
from appliance.policy import Level, Policy

PARSER_VERSION = "1"  # bump when a parser's output for the same file changes
MAX_NAME = 255
_COLLECTION_NAME = re.compile(r"[A-Za-z0-9가-힣][A-Za-z0-9가-힣._-]{0,63}")
_DOCUMENT_ID = re.compile(r"[0-9a-f]{32}")
Progress = Callable[[str, int, int], None]  # stage, done, total
# Library has a method named `list`: annotations inside the class use these names.
Collections = list[Collection]
LevelIds = list[str]


def _quiet(stage: str, done: int, total: int) -> None:
    return None


class Library:
    def __init__(
        self,
        home: Path,
        policy: Policy,
        log: AuditLog,
        principal: Principal,
        store: DocumentStore,
        retriever: Retriever | None = None,
    ) -> None:
        self.home = home
        self.policy = policy
        self.log = log
        self.principal = principal
        self.store = store
        self.actor = Actor(principal.user, principal.role)
        self._retriever = retriever

    @property
    def retriever(self) -> Retriever:
        """The retriever given, else the one shared by every Library of this store."""
        if self._retriever is None:
            self._retriever = Retriever.of(self.store, embed.for_home(self.home))
        return self._retriever

    # -- adding -----------------------------------------------------------------------

    def add(
        self,
        name: str,
        data: bytes,
        *,
        level: str | None = None,
        collection: str | None = None,
        effective: str | None = None,
        supersedes: str | None = None,
        progress: Progress = _quiet,
    ) -> dict[str, Any]:
        """Take in one file; what was stored (or that nothing changed)."""
        self._require("documents.use")
        name = listed_name(name)
        target = self._writable(collection)
        existing = self.store.find(target, self.principal.user, name)
        if existing is not None:  # what is not given again stays as it was
            level = level or existing.declared
            effective = effective or existing.effective
            supersedes = supersedes or existing.supersedes
        declared = self._declared(level)
        effective = _effective(effective)
        sha256 = hashlib.sha256(data).hexdigest()
        facts = {"collection": target.name, "sha256": sha256, "bytes": len(data)}
        limit = self.policy.documents.max_file_bytes
        if len(data) > limit:
            self._refused(facts, "too_large", name)
            raise DocumentError(
                f"{name} is {len(data) >> 20} MiB; the policy takes documents up to "
                f"{self.policy.documents.max_file_mb} MiB",
                code="too_large",
                name=name,
                most_mib=self.policy.documents.max_file_mb,
            )
        if supersedes is not None:
            supersedes = self._superseded(target, supersedes, existing)
        if existing is not None and _unchanged(existing, sha256, declared, effective, supersedes):
            return {"document": self._describe(existing), "unchanged": True}
        if existing is not None and existing.sha256 == sha256 and _current(existing):
            # The text is the same: only what the user declares changes, and the label with it.
            label = self.policy.level(existing.found)
            label = label if label.rank >= declared.rank else declared
            self._check_clearance(label, facts, name, None)
            document = replace(
                existing,
                label=label.id,
                declared=declared.id,
                effective=effective,
                supersedes=supersedes,
            )
            self.store.update(document)
            self._record_added(document, name, facts, kept=len(self.store.chunks(document.id)))
            return {"document": self._describe(document), "unchanged": False}
        parsed = self._parse(data, name, facts, progress)
        progress("label", 0, 1)
        read = document_label(self.policy, parsed, declared)
        self._check_clearance(read.label, facts, name, read)
        document = Document(
            id=existing.id if existing else new_document_id(),
            collection=target.id,
            name=name,
            title=parsed.title[:200],
            format=parsed.format,
            sha256=sha256,
            bytes=len(data),
            pages=parsed.pages,
            label=read.label.id,
            declared=declared.id,
            found=read.found.id,
            findings=json.dumps(read.findings),
            markings=json.dumps(list(read.markings)),
            effective=effective,
            supersedes=supersedes,
            added_by=self.principal.user,
            added_us=time.time_ns() // 1000,
            parser=PARSER_VERSION,
            chunker=CHUNKER_VERSION,
        )
        chunks = chunk_document(parsed)
        computed = self.retriever.prepare(document.id, chunks, progress)
        progress("store", 0, 1)
        stored = self.store.put(document, data, chunks, computed)
        self.retriever.index(document.id)  # what a concurrent change left without
        progress("store", 1, 1)
        self._record_added(document, name, facts, kept=stored.kept, added=stored.added)
        return {
            "document": self._describe(document),
            "unchanged": False,
            "chunks": {"kept": stored.kept, "added": stored.added, "removed": stored.removed},
        }

    def _parse(self, data: bytes, name: str, facts: dict[str, Any], progress: Progress) -> Parsed:
        progress("parse", 0, 1)
        try:
            sniff_family(data[:4096])
            parsed = parse_document(data)
        except DocumentError as exc:
            self._refused(facts, exc.code, name)
            raise DocumentError(f"{name}: {exc.message}", code=exc.code, name=name) from None
        progress("parse", 1, 1)
        return parsed

    def _check_clearance(
        self, label: Level, facts: dict[str, Any], name: str, read: DocumentLabel | None
    ) -> None:
        clearance = self.policy.level(self.principal.clearance)
        if label.rank <= clearance.rank:
            return
        details = {**facts, "code": "above_clearance"}
        if read is not None:
            details |= {"findings": read.findings, "markings": list(read.markings)}
        self.log.record(
            Event(self.actor, "doc_add", None, "denied", label.id, details),
            {"name": name},
        )
        why = f" ({read.raised_by()})" if read is not None else ""
        raise BlockedError(
            f"{name} is {label.name(self.policy.language)}{why}, above the clearance of "
            f"{self.principal.user}; it was not added",
            code="above_clearance",
            name=name,
            label=label.id,
            clearance=clearance.id,
            user=self.principal.user,
        )

    def _record_added(
        self, document: Document, name: str, facts: dict[str, Any], *, kept: int, added: int = 0
    ) -> None:
        details = {
            **facts,
            "format": document.format,
            "pages": document.pages,
            "declared": document.declared,
            "findings": json.loads(document.findings),
            "markings": json.loads(document.markings),
            "chunks": {"kept": kept, "added": added},
            "supersedes": document.supersedes,
            "effective": document.effective,
        }
        event = Event(self.actor, "doc_add", document.id, "ok", document.label, details)
        self.log.record(event, {"name": name, "title": document.title})

    def _refused(self, facts: dict[str, Any], code: str, name: str) -> None:
        outcome = "failed" if code == "parser_failed" else "denied"
        details = {**facts, "code": code}
        self.log.record(Event(self.actor, "doc_add", None, outcome, None, details), {"name": name})

    # -- reading ----------------------------------------------------------------------

    def list(self, collection: str | None = None) -> dict[str, Any]:
        self._require("documents.use")
        collections = self._listed_collections(collection)
        names = {c.id: c.name for c in collections}
        documents = self.store.documents(names, self._readable_labels())
        return {
            "documents": [self._describe(d, names[d.collection]) for d in documents],
            "collections": [self._describe_collection(c) for c in collections],
        }

    def search(
        self, question: str, collection: str | None = None, k: int = 5, mode: str = "hybrid"
    ) -> Retrieval:
        """The passages of what the user may read (their collections, or the one named,
        at labels up to their clearance) that best answer `question`, and whether the
        documents answer it at all."""
        self._require("documents.use")
        collections = self._listed_collections(collection)
        return self.retriever.search(
            question,
            collections=[c.id for c in collections],
            labels=self._readable_labels(),
            k=k,
            mode=mode,
        )

    def show(self, document_id: str, *, text: bool = False) -> dict[str, Any]:
        self._require("documents.use")
        document = self._readable_document(document_id)
        chunks = self.store.chunks(document.id)
        result: dict[str, Any] = {
            "document": self._describe(document),
            "findings": json.loads(document.findings),
            "markings": json.loads(document.markings),
            "declared": document.declared,
            "found": document.found,
            "parser": document.parser,
            "chunker": document.chunker,
            "chunks": [
                {
                    "id": chunk_id,
                    "kind": chunk.kind,
                    "page": chunk.page,
                    "section": chunk.section,
                    "chars": len(chunk.text),
                    **({"text": chunk.text} if text else {}),
                }
                for chunk_id, chunk in chunks
            ],
        }
        return result

    # -- removing and reindexing ------------------------------------------------------

    def remove(self, document_id: str) -> dict[str, Any]:
        document = self._removable(document_id)
        chunks = self.store.remove(document.id)
        details = {"collection": self._collection_of(document).name, "chunks": chunks}
        self.log.record(Event(self.actor, "doc_remove", document.id, "ok", document.label, details))
        return {"removed": document.id, "chunks": chunks}

    def reindex(
        self, collection: str | None = None, *, force: bool = False, progress: Progress = _quiet
    ) -> dict[str, Any]:
        """Read again every readable document whose parser or chunker is stale (or all)."""
        listed = self.list(collection)["documents"]
        stale = [
            self.store.document(item["id"])
            for item in listed
            if force or item["parser"] != PARSER_VERSION or item["chunker"] != CHUNKER_VERSION
        ]
        done = failed = 0
        for count, document in enumerate(filter(None, stale)):
            progress("reindex", count, len(stale))
            try:
                self._reread(document)
                done += 1
            except DocumentError:
                failed += 1  # recorded; the stored version stays as it was
        progress("reindex", len(stale), len(stale))
        for item in listed:  # postings and vectors a document lacks (a store from before)
            self.retriever.index(item["id"])
        return {"reindexed": done, "failed": failed, "current": len(listed) - len(stale)}

    def _reread(self, document: Document) -> None:
        data = self.store.original(document.id)
        facts = {"sha256": document.sha256, "bytes": document.bytes}
        try:
            parsed = parse_document(data)
        except DocumentError as exc:
            details = {**facts, "code": exc.code}
            event = Event(self.actor, "doc_reindex", document.id, "failed", document.label, details)
            self.log.record(event)
            raise
        read = document_label(self.policy, parsed, self.policy.level(document.declared))
        chunks = chunk_document(parsed)
        computed = self.retriever.prepare(document.id, chunks)
        renewed = replace(
            document,
            title=parsed.title[:200],
            format=parsed.format,
            pages=parsed.pages,
            label=read.label.id,
            found=read.found.id,
            findings=json.dumps(read.findings),
            markings=json.dumps(list(read.markings)),
            parser=PARSER_VERSION,
            chunker=CHUNKER_VERSION,
        )
        stored = self.store.put(renewed, None, chunks, computed)
        self.retriever.index(renewed.id)
        details = {
            **facts,
            "previous_label": document.label,
            "chunks": {"kept": stored.kept, "added": stored.added, "removed": stored.removed},
        }
        event = Event(self.actor, "doc_reindex", document.id, "ok", renewed.label, details)
        self.log.record(event)

    # -- collections ------------------------------------------------------------------

    def collections(self) -> dict[str, Any]:
        if self.principal.may("documents.collections"):
            listed = [c for c in self.store.collections() if c.shared]
        else:
            self._require("documents.use")
            listed = self._readable_collections()
        return {"collections": [self._describe_collection(c) for c in listed]}

    def create_collection(self, name: str) -> dict[str, Any]:
        self._require("documents.collections")
        if not _COLLECTION_NAME.fullmatch(name):
            raise UsageError(
                "a collection's name is 1 to 64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit",
                code="bad_collection_name",
            )
        if self.store.collection(name) is not None:
            raise UsageError(
                f"a collection named {name} exists already", code="collection_exists", name=name
            )
        created = self.store.create_collection(name, self.principal.user)
        event = Event(self.actor, "collection_change", name, details={"call": "create"})
        self.log.record(event)
        return {"collection": self._describe_collection(created)}

    def set_member(self, collection: str, user: str, *, member: bool) -> dict[str, Any]:
        self._require("documents.collections")
        found = self.store.collection(collection)
        if found is None or not found.shared:
            raise self._no_collection(collection)
        changed = self.store.set_member(found, user, member=member)
        call = "add_member" if member else "remove_member"
        details = {"call": call, "member": user, "changed": changed}
        self.log.record(Event(self.actor, "collection_change", found.name, details=details))
        return {"collection": self._describe_collection(found), "changed": changed}

    # -- access -------------------------------------------------------------------------

    def _require(self, permission: str) -> None:
        if self.principal.may(permission):
            return
        details = {"permission": permission}
        self.log.record(Event(self.actor, "policy_block", "documents", "denied", details=details))
        self.principal.require(permission)

    def _collection_name(self, name: str) -> str:
        return PERSONAL + self.principal.user if name in ("", "~", "mine") else name

    def _listed_collections(self, collection: str | None) -> Collections:
        """The readable collections, or the one named if it is readable."""
        collections = self._readable_collections()
        if collection is not None:
            collections = [c for c in collections if c.name == self._collection_name(collection)]
            if not collections:
                raise self._no_collection(collection)
        return collections

    def _readable_collections(self) -> Collections:
        if self.principal.dev:
            return self.store.collections()
        return self.store.readable_collections(self.principal.user)

    def _readable_labels(self) -> LevelIds:
        clearance = self.policy.level(self.principal.clearance)
        return [level.id for level in self.policy.levels if level.rank <= clearance.rank]

    def _writable(self, collection: str | None) -> Collection:
        if (
            collection is None
            or self._collection_name(collection) == PERSONAL + self.principal.user
        ):
            return self.store.personal(self.principal.user)
        for readable in self._readable_collections():
            if readable.name == collection and (readable.shared or self.principal.dev):
                return readable
        raise self._no_collection(collection)

    def _no_collection(self, name: str) -> UsageError:
        # The same words whether it does not exist or is not the user's: nothing is revealed.
        return UsageError(
            f"no collection {name[:64]!r} that {self.principal.user} may use",
            code="no_collection",
            name=name[:64],
            user=self.principal.user,
        )

    def _readable_document(self, document_id: str) -> Document:
        if _DOCUMENT_ID.fullmatch(document_id):
            collections = {c.id for c in self._readable_collections()}
            labels = self._readable_labels()
            document = self.store.document(document_id)
            if document and document.collection in collections and document.label in labels:
                return document
        raise UsageError(
            f"no document {document_id[:40]!r} that {self.principal.user} may read",
            code="no_document",
            user=self.principal.user,
        )

    def _removable(self, document_id: str) -> Document:
        """Its own documents for a user; any in a shared collection for an officer."""
        if self.principal.may("documents.collections") and _DOCUMENT_ID.fullmatch(document_id):
            document = self.store.document(document_id)
            if document is not None and self._collection_of(document).shared:
                return document
        self._require("documents.use")
        document = self._readable_document(document_id)
        collection = self._collection_of(document)
        if collection.shared and document.added_by != self.principal.user:
            raise PermissionDeniedError(
                f"{document_id} was added by {document.added_by}; they or an officer remove it",
                code="not_your_document",
                added_by=document.added_by,
            )
        return document

    def _collection_of(self, document: Document) -> Collection:
        for collection in self.store.collections():
            if collection.id == document.collection:
                return collection
        raise ApplianceError(f"the documents store lost the collection of {document.id}")

    def _declared(self, level: str | None) -> Level:
        declared = self.policy.level(level or self.policy.default_level)
        clearance = self.policy.level(self.principal.clearance)
        if declared.rank > clearance.rank:
            raise BlockedError(
                f"{self.principal.user} is cleared to {clearance.name(self.policy.language)} and "
                f"cannot add a document at {declared.name(self.policy.language)}",
                code="above_clearance",
                label=declared.id,
                clearance=clearance.id,
                user=self.principal.user,
            )
        return declared

    def _superseded(self, target: Collection, document_id: str, existing: Document | None) -> str:
        old = self._readable_document(document_id)
        if old.collection != target.id:
            raise UsageError("a document supersedes one of the same collection")
        if existing is not None and old.id == existing.id:
            raise UsageError("a document cannot supersede itself")
        return old.id

    # -- describing -----------------------------------------------------------------------

    def _describe(self, document: Document, collection: str | None = None) -> dict[str, Any]:
        level = self.policy.level(document.label)
        return {
            "id": document.id,
            "name": document.name,
            "title": document.title,
            "collection": collection or self._collection_of(document).name,
            "format": document.format,
            "bytes": document.bytes,
            "pages": document.pages,
            "label": document.label,
            "label_name": level.name(self.policy.language),
            "effective": document.effective,
            "supersedes": document.supersedes,
            "added_by": document.added_by,
            "added_us": document.added_us,
            "sha256": document.sha256,
            "parser": document.parser,
            "chunker": document.chunker,
        }

    def _describe_collection(self, collection: Collection) -> dict[str, Any]:
        described: dict[str, Any] = {
            "name": collection.name,
            "shared": collection.shared,
            "owner": collection.owner,
            "created_by": collection.created_by,
        }
        if collection.shared and self.principal.may("documents.collections"):
            described["members"] = self.store.members(collection)
        return described


def _current(document: Document) -> bool:
    return document.parser == PARSER_VERSION and document.chunker == CHUNKER_VERSION


def _unchanged(
    document: Document, sha256: str, declared: Level, effective: str | None, supersedes: str | None
) -> bool:
    return (
        document.sha256 == sha256
        and _current(document)
        and document.declared == declared.id
        and document.effective == effective
        and document.supersedes == supersedes
    )


def listed_name(name: str) -> str:
    """The name a document is listed under: the file's own name, no folders."""
    base = PurePath(name.replace("\\", "/")).name.strip()
    if not base or len(base) > MAX_NAME or any(ord(c) < 32 or ord(c) == 127 for c in base):
        raise UsageError(
            f"{name[:80]!r} is not a file name a document can be listed under",
            code="bad_file_name",
            name=name[:80],
        )
    return base


def _effective(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise UsageError(f"--effective takes a date as YYYY-MM-DD, not {text[:20]!r}") from None
