"""From a question to the sources an answer may use, or the appliance's refusal.

Retrieval runs as the asking user (`Library.search`: their collections, their
clearance, inside the queries); when its evidence says the documents do not
answer, the turn gets the appliance's own sentence instead of sources and
the model is not asked. What a client is told about the sources (title,
place, label, version, the cited passage's offsets) is only what the user
may read.
"""

from __future__ import annotations

from typing import Any

from appliance.documents.library import Library
from appliance.documents.retrieve import Passage
from appliance.grounding import Grounding, Source

SOURCES = 5  # passages put in a prompt
DECLINED = {
    "ko": "열람할 수 있는 문서에서 이 질문에 대한 답을 찾지 못했습니다.",
    "en": "The documents you may read do not answer this question.",
}
# What the documents never mention, after the sentence above: the question's own words.
ABSENT = {
    "ko": " 문서에 나오지 않는 말: {words}.",
    "en": " They never mention: {words}.",
}
ABSENT_SHOWN = 5  # words named at most


def ground(library: Library, question: str, *, collection: str | None = None) -> Grounding:
    retrieval = library.search(question, collection=collection, k=SOURCES)
    language = library.policy.language if library.policy.language in DECLINED else "en"
    details = {"evidence": {key: round(value, 4) for key, value in retrieval.evidence.items()}}
    if not retrieval.answerable or not retrieval.passages:
        return Grounding((), declined(language, retrieval.absent), details)
    sources = tuple(
        _source(library, number, passage)
        for number, passage in enumerate(retrieval.passages, start=1)
    )
    return Grounding(sources, None, details)


def declined(language: str, absent: tuple[str, ...] = ()) -> str:
    """The appliance's answer when the documents do not answer, naming (from the
    question) what they never mention, so the user can ask in the documents' words."""
    text = DECLINED[language]
    if absent:
        words = ", ".join(absent[:ABSENT_SHOWN])
        text += ABSENT[language].format(words=words)
    return text


def _source(library: Library, number: int, passage: Passage) -> Source:
    return Source(
        number=number,
        text=passage.text,
        label=library.policy.level(passage.label),
        title=passage.title or passage.name,
        place=place(passage.page, passage.section),
        chunk_id=passage.chunk_id,
        document_id=passage.document_id,
        effective=passage.effective,
        superseded=passage.superseded,
    )


def place(page: int | None, section: int | None) -> str:
    if page is not None:
        return f"p. {page}"
    if section is not None:
        return f"section {section}"
    return ""


def describe(grounding: Grounding, language: str) -> list[dict[str, Any]]:
    """The sources as a client lists them under the answer."""
    return [
        {
            "n": source.number,
            "document": source.document_id,
            "chunk": source.chunk_id,
            "title": source.title,
            "place": source.place,
            "label": source.label.id,
            "label_name": source.label.name(language),
            "effective": source.effective,
            "superseded": source.superseded,
        }
        for source in grounding.sources
    ]
