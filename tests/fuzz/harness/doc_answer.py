"""Documents: the parent's reading of a parser child's answer."""

from __future__ import annotations

from appliance.documents import sandbox
from appliance.documents.chunking import chunk_document
from appliance.documents.model import FORMATS, KINDS, Parsed
from appliance.errors import DocumentError
from tests.fuzz.harness.common import refusals


def fuzz_doc_answer(data: bytes) -> None:
    """The parent's reading of a parser child's answer (the JSON after the length).

    Whatever a compromised child sends is refused in one sentence, or is a
    result the service can store: fields in range, text that encodes, chunks.
    """
    with refusals(DocumentError):
        _check_parsed(sandbox._decode(data))


def _check_parsed(parsed: Parsed) -> None:
    assert parsed.format in FORMATS
    assert len(parsed.title) <= sandbox.TITLE_CHARS
    parsed.title.encode()
    assert parsed.pages is None or 0 <= parsed.pages <= sandbox.MOST_PAGES
    for block in parsed.blocks:
        assert block.kind in KINDS
        block.text.encode()
        for place in (block.page, block.section):
            assert place is None or 1 <= place <= sandbox.MOST_PAGES
    for chunk in chunk_document(parsed):
        chunk.text.encode()
