"""The retrieval evaluation set itself: its files parse, its spans are there, its labels hold.

bench/docs.py measures the retriever on this set; these tests keep the set
honest: every document is a real file the appliance's parser reads, every
gold span is in its document's text as parsed, the classification each
document declares is what its markings (in its margins only) say, and the
set has the size and mix it claims.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import pytest

from appliance.documents import sandbox
from appliance.documents.labels import document_label
from appliance.documents.model import Parsed
from appliance.documents.sandbox import parse_document
from appliance.policy import load_policy, shipped_policy
from tests.docs_eval import (
    CONFUSABLE,
    SPECS,
    corpus,
    documents,
    holds_span,
    normalise,
    questions,
)

FORMATS = {"hwpx", "hwp5", "docx", "pdf", "text", "markdown"}
PARSED_AS = {"markdown": "text"}  # Markdown is read as text


@pytest.fixture(scope="module")
def policy():
    return load_policy(shipped_policy("defense-kr"))


@pytest.fixture(scope="module")
def made():
    return {document.key: document for document in documents()}


@pytest.fixture(scope="module")
def parsed(made) -> dict[str, Parsed]:
    try:
        with ThreadPoolExecutor(4) as pool:
            keys = list(made)
            found = pool.map(lambda key: parse_document(made[key].data), keys)
            return dict(zip(keys, found, strict=True))
    finally:
        sandbox.stop_fork_server()


def test_the_set_has_its_size_and_mix(made):
    asked = list(questions())
    assert len(made) >= 30
    assert {document.meta.fmt for document in made.values()} == FORMATS
    assert len(asked) >= 60
    assert sum(q.lang == "en" for q in asked) >= 10
    assert sum(not q.answerable for q in asked) >= 6
    assert sum(q.answerable for q in asked) >= 60
    assert {level for document in made.values() if (level := document.meta.level) != "public"} >= {
        "restricted",
        "secret-3",
        "secret-2",
    }
    asked_about = Counter(q.gold for q in asked if q.answerable)
    assert set(asked_about) == set(made), "every document is some question's gold"


def test_keys_names_and_versions_are_consistent(made):
    keys = [spec.key for spec in SPECS]
    assert len(set(keys)) == len(keys)
    assert len({document.name for document in made.values()}) == len(made)
    for spec in SPECS:
        extension = "md" if spec.fmt == "markdown" else corpus.EXTENSIONS[spec.fmt]
        assert spec.name.endswith("." + extension)
        if spec.effective is not None:
            date.fromisoformat(spec.effective)
        if spec.supersedes is not None:  # added after the one it replaces, and newer
            older = corpus.spec(spec.supersedes)
            assert keys.index(older.key) < keys.index(spec.key)
            assert older.effective is not None
            assert spec.effective is not None
            assert older.effective < spec.effective
    superseded = {spec.supersedes for spec in SPECS if spec.supersedes}
    assert {"leave-rule-2023", "travel-expense-2024"} <= superseded
    for pair in CONFUSABLE:
        assert set(pair) <= set(keys)


def test_questions_are_well_formed(made):
    asked = list(questions())
    assert len({q.id for q in asked}) == len(asked)
    assert len({normalise(q.text) for q in asked}) == len(asked)
    for q in asked:
        assert (q.gold is None) == (q.span is None), q.id
        assert q.lang in ("ko", "en")
        assert q.text.isascii() == (q.lang == "en"), q.id
        if q.answerable:
            assert q.gold in made, q.id
            assert normalise(q.span) not in normalise(q.text), f"{q.id} copies its answer"


def test_the_documents_are_the_same_bytes_every_time(made):
    for fmt in FORMATS:
        spec = next(spec for spec in SPECS if spec.fmt == fmt)
        assert corpus.file_bytes(spec) == made[spec.key].data, fmt


def test_every_document_parses_as_its_format(made, parsed):
    for key, document in made.items():
        assert parsed[key].format == PARSED_AS.get(document.meta.fmt, document.meta.fmt), key
        if document.meta.fmt not in ("text", "markdown"):  # a text file's title is its first line
            assert normalise(parsed[key].title) == normalise(document.meta.title), key
        body = normalise(" ".join(b.text for b in parsed[key].blocks if b.kind == "body"))
        for paragraph in corpus.paragraphs(key):
            assert normalise(paragraph.lstrip("#- ")) in body, (key, paragraph)


def test_every_gold_span_is_in_its_document_and_no_other(parsed):
    texts = {key: normalise(document.text) for key, document in parsed.items()}
    for q in questions():
        if not q.answerable:
            continue
        assert normalise(q.span) in texts[q.gold], (q.id, q.span)
        assert holds_span(parsed[q.gold].text, q.span)
        # Only another version of the same rule may say the same (the current one is gold).
        versions = {corpus.spec(q.gold).supersedes} | {
            spec.key for spec in SPECS if spec.supersedes == q.gold
        }
        elsewhere = {key for key, text in texts.items() if normalise(q.span) in text}
        assert elsewhere - {q.gold} <= versions, (q.id, elsewhere)


def test_labels_are_as_declared_and_come_from_the_margins(policy, made, parsed):
    for key, document in made.items():
        label = document_label(policy, parsed[key], policy.lowest)
        assert label.label.id == document.meta.level, (key, label)
        body = Parsed(
            parsed[key].format,
            parsed[key].title,
            parsed[key].pages,
            tuple(b for b in parsed[key].blocks if b.kind not in ("header", "footer")),
        )
        assert document_label(policy, body, policy.lowest).label == policy.lowest, key
        if document.meta.level != "public":
            assert label.markings, key


def test_a_passage_holds_a_span_when_it_overlaps_it():
    span = "출발 예정일 5일 전까지 인사관리체계로 신청한다"
    assert holds_span("연가와 포상휴가는 출발 예정일 5일\n전까지 인사관리체계로 신청한다.", span)
    assert holds_span("연가와 포상휴가는 출발 예정일 5일 전까지", span)  # the span's start
    assert holds_span("인사관리체계로 신청한다. 인사관리체계를 쓸 수 없으면", span)  # its end
    assert holds_span("5일 전까지 인사관리체계로", span)  # inside it
    assert not holds_span("출발 예정일 3일 전까지 휴가신청서를 제출한다.", span)
    assert not holds_span("신청한다. 다음 조", span)  # too little of it
