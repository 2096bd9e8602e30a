"""Answers about one file the user names (`ask --file`), without adding it anywhere.

The file takes the way in that `docs add` takes, up to the store: the role's
permission, the policy's size limit, the disposable parser child (same
limits), the label (declared at the session's level, raised by every marking
and labelling rule found), the refusal above the reader's clearance, the
chunker. Then nothing is stored: no store row, no temporary file; the chunks
live in this process's memory for the question (or a chat's questions).

A file that fits FILE_CHUNKS chunks and FILE_CHARS characters goes into the
prompt whole, in order. A larger one gives the RANKED chunks (within
FILE_CHARS) that BM25 ranks best for the question (Kiwi morphemes and
bigrams, as the retriever scores them, with statistics over this file's
chunks alone), put back in document order; a question none of its terms
matches gets the file's opening. The dense
embedder is left out: a passage costs e5 about 1.7 s on a busy 2-core host,
and a one-off file's vectors would be computed again for every question.

Every reading is audited as `doc_ask` (the file's sha256, size, format,
label, findings; its name and title sealed to the officers), a refusal too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from appliance.audit import Actor, AuditLog, Event
from appliance.documents import index as keyword
from appliance.documents.answers import SOURCES, place
from appliance.documents.chunking import chunk_document
from appliance.documents.labels import DocumentLabel, document_label
from appliance.documents.library import listed_name
from appliance.documents.sandbox import parse_document
from appliance.documents.store import Chunk
from appliance.errors import BlockedError, DocumentError
from appliance.grounding import Grounding, Source
from appliance.identity import Principal
from appliance.policy import Level, Policy

FILE_CHUNKS = 6  # a file this short (and FILE_CHARS) is given whole
FILE_CHARS = 6000  # the most of a file's text one prompt is given
RANKED = SOURCES  # chunks of a longer file given, as many as retrieval gives passages
MAX_QUESTION = 2000  # characters of a question that are read for ranking
EMPTY = {
    "ko": "이 파일에서 읽을 수 있는 글을 찾지 못했습니다.",
    "en": "The file has no text the appliance can read.",
}


@dataclass
class OneFile:
    """A file read for questions: its label and chunks, in memory only."""

    name: str
    id: str  # the first 32 hex digits of its sha256: sources and audit events name it
    label: Level
    chunks: tuple[Chunk, ...]
    language: str
    _fields: tuple[keyword.FieldIndex, keyword.FieldIndex] | None = field(default=None, repr=False)

    def ground(self, question: str) -> Grounding:
        """The chunks a question is given, as numbered sources in document order."""
        if not self.chunks:
            return Grounding((), EMPTY[self.language], {"file": self.id, "chunks": 0})
        whole = (
            len(self.chunks) <= FILE_CHUNKS and sum(len(c.text) for c in self.chunks) <= FILE_CHARS
        )
        ranked = [] if whole else self._ranked(question)
        given = "whole" if whole else "ranked" if ranked else "opening"
        order = ranked or list(range(len(self.chunks)))
        chosen: list[int] = []
        total = 0
        for row in order:
            if len(chosen) == (FILE_CHUNKS if whole else RANKED):
                break
            size = len(self.chunks[row].text)
            if total + size <= FILE_CHARS:
                chosen.append(row)
                total += size
        sources = tuple(
            self._source(number, row) for number, row in enumerate(sorted(chosen), start=1)
        )
        details = {"file": self.id, "chunks": len(self.chunks), "given": given}
        return Grounding(sources, None, details)

    def _source(self, number: int, row: int) -> Source:
        chunk = self.chunks[row]
        return Source(
            number=number,
            text=chunk.text,
            label=self.label,
            title=self.name,
            place=place(chunk.page, chunk.section),
            chunk_id=row + 1,
            document_id=self.id,
        )

    def _ranked(self, question: str) -> list[int]:
        """The chunks with a positive BM25 score for `question`, best first."""
        asked = keyword.analyse([question.strip()[:MAX_QUESTION]])[0]
        morphemes, grams = self._index()
        (by_morpheme,), _ = keyword.bm25([morphemes], asked.morphemes)
        (by_gram,), _ = keyword.bm25([grams], asked.grams, keyword.GRAM_WEIGHT)
        scores = by_morpheme + by_gram
        found = [row for row in range(len(self.chunks)) if scores[row] > 0]
        return sorted(found, key=lambda row: (-float(scores[row]), row))

    def _index(self) -> tuple[keyword.FieldIndex, keyword.FieldIndex]:
        """The chunks' two keyword fields, analysed once (a chat asks again and again)."""
        if self._fields is None:
            morphemes, grams = keyword.FieldBuilder(), keyword.FieldBuilder()
            for terms in keyword.analyse([chunk.text for chunk in self.chunks]):
                postings = terms.postings()
                names, tfs = keyword.decode(postings)
                split = postings.split
                morphemes.add(postings.words, names[:split], tfs[:split])
                grams.add(postings.grams, names[split:], tfs[split:])
            self._fields = (morphemes.build(), grams.build())
        return self._fields


def read_file(
    name: str,
    data: bytes,
    *,
    policy: Policy,
    principal: Principal,
    log: AuditLog,
    level: Level,
) -> OneFile:
    """Parse, label and chunk a file for questions at `level` (the session's), or refuse
    it as `docs add` would; audited either way."""
    actor = Actor(principal.user, principal.role)
    if not principal.may("documents.use"):
        denied = {"permission": "documents.use"}
        log.record(Event(actor, "policy_block", "documents", "denied", details=denied))
        principal.require("documents.use")
    name = listed_name(name)
    sha256 = hashlib.sha256(data).hexdigest()
    file_id = sha256[:32]
    facts: dict[str, Any] = {"sha256": sha256, "bytes": len(data)}

    def refused(code: str, label: Level | None = None, read: DocumentLabel | None = None) -> None:
        details: dict[str, Any] = {**facts, "code": code}
        if read is not None:
            details |= {"findings": read.findings, "markings": list(read.markings)}
        outcome = "failed" if code == "parser_failed" else "denied"
        label_id = label.id if label is not None else None
        event = Event(actor, "doc_ask", file_id, outcome, label_id, details)
        log.record(event, {"name": name})

    limits = policy.documents
    if len(data) > limits.max_file_bytes:
        refused("too_large")
        raise DocumentError(
            f"{name} is {len(data) >> 20} MiB; the policy takes documents up to "
            f"{limits.max_file_mb} MiB",
            code="too_large",
            name=name,
            most_mib=limits.max_file_mb,
        )
    try:
        parsed = parse_document(data)
    except DocumentError as exc:
        refused(exc.code)
        raise DocumentError(f"{name}: {exc.message}", code=exc.code, name=name) from None
    read = document_label(policy, parsed, level)
    clearance = policy.level(principal.clearance)
    if read.label.rank > clearance.rank:
        refused("above_clearance", read.label, read)
        raise BlockedError(
            f"{name} is {read.label.name(policy.language)} ({read.raised_by()}), above the "
            f"clearance of {principal.user}; it was not read",
            code="above_clearance",
            file=name,
            label=read.label.id,
            clearance=clearance.id,
            user=principal.user,
        )
    chunks = tuple(chunk_document(parsed))
    read_facts: dict[str, Any] = {
        **facts,
        "format": parsed.format,
        "pages": parsed.pages,
        "declared": level.id,
        "findings": read.findings,
        "markings": list(read.markings),
        "chunks": len(chunks),
    }
    event = Event(actor, "doc_ask", file_id, "ok", read.label.id, read_facts)
    log.record(event, {"name": name, "title": parsed.title[:200]})
    language = policy.language if policy.language in EMPTY else "en"
    return OneFile(name, file_id, read.label, chunks, language)
