"""Split a parsed document into chunks: the passages retrieval ranks and answers cite.

Body text is gathered paragraph by paragraph into passages of about
TARGET characters that never cross a page or section (a citation names one
place), and a paragraph longer than MAXIMUM is cut at sentence ends. Tables
keep their rows together; each distinct header and footer is one chunk of
its own kind, so a marking that lives there stays findable and cited.

A chunk's hash covers its kind and text: re-reading an unchanged passage
gives the same hash, and the store keeps its row. Bump CHUNKER_VERSION when
the output for the same blocks changes; `docs reindex` redoes what is stale.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator

from appliance.documents.model import Block, Parsed
from appliance.documents.store import Chunk

CHUNKER_VERSION = "1"
TARGET = 700  # characters a passage aims at
MAXIMUM = 1200  # no chunk is longer
_SENTENCE_END = re.compile(r"(?<=[.!?。？！])\s+|(?<=다\.)|\n+")  # noqa: RUF001


def chunk_document(parsed: Parsed) -> list[Chunk]:
    chunks: list[Chunk] = []
    seen_margins: set[tuple[str, str]] = set()
    passage: list[str] = []
    where: tuple[int | None, int | None] = (None, None)

    def flush() -> None:
        if passage:
            chunks.append(_chunk("\n".join(passage), "body", *where))
            passage.clear()

    for block in parsed.blocks:
        text = block.text.strip()
        if not text:
            continue
        if block.kind in ("header", "footer"):
            if (block.kind, text) not in seen_margins:  # repeated on every page: once
                seen_margins.add((block.kind, text))
                chunks.extend(_chunk(piece, block.kind, block.page, block.section)
                              for piece in _pieces(text))  # fmt: skip
            continue
        if block.kind != "body":
            flush()
            chunks.extend(_chunk(piece, block.kind, block.page, block.section)
                          for piece in _pieces(text))  # fmt: skip
            continue
        if (block.page, block.section) != where or _length(passage) + len(text) > TARGET:
            flush()
            where = (block.page, block.section)
        for piece in _pieces(text):
            if passage and _length(passage) + len(piece) > TARGET:
                flush()
            passage.append(piece)
    flush()
    return chunks


def _chunk(text: str, kind: str, page: int | None, section: int | None) -> Chunk:
    digest = hashlib.sha256(f"{kind}\0{text}".encode()).hexdigest()[:32]
    return Chunk(text, kind, page, section, digest)


def _length(parts: list[str]) -> int:
    return sum(len(part) + 1 for part in parts)


def _pieces(text: str) -> Iterator[str]:
    """`text` whole if short enough, else cut at sentence ends (or hard, at MAXIMUM)."""
    if len(text) <= MAXIMUM:
        yield text
        return
    piece = ""
    for sentence in _SENTENCE_END.split(text):
        sentence = sentence.strip()
        while len(sentence) > MAXIMUM:  # a run without sentence ends
            if piece:
                yield piece
                piece = ""
            yield sentence[:MAXIMUM]
            sentence = sentence[MAXIMUM:]
        if piece and len(piece) + 1 + len(sentence) > TARGET:
            yield piece
            piece = ""
        piece = f"{piece} {sentence}".strip() if sentence else piece
    if piece:
        yield piece


def block_place(block: Block) -> str:
    """Where a block is, as a citation says it: "p. 3", "section 2" or ""."""
    if block.page is not None:
        return f"p. {block.page}"
    if block.section is not None:
        return f"section {block.section}"
    return ""
