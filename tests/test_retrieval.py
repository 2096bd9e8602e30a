"""Retrieval: Korean keywords, dense vectors, the reader's filter inside the ranking, versions,
the answerability decision, and what removal and an older store leave.

Everything is real: the encrypted store, Kiwi's morphemes and the e5 embedder.
One home serves the module (loading Kiwi and e5 is the slow part); each test
works in shared collections of its own and searches only those, so tests do
not see each other's documents.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from itertools import count
from pathlib import Path

import apsw
import numpy as np
import pytest

from appliance.audit import AuditLog, audit_dir
from appliance.documents import index, retrieve
from appliance.documents.embed import Thresholds
from appliance.documents.library import Library
from appliance.documents.retrieve import Retriever, fill_synthetic, question_years
from appliance.documents.store import CIPHER, DocumentStore
from appliance.errors import ConfigError, UsageError
from appliance.identity import Principal
from appliance.policy import load_policy, shipped_policy

KIM = Principal("kim", "operator", "restricted")  # cleared to 대외비
PARK = Principal("park", "operator", "secret-2")
LEE = Principal("lee", "officer", "secret-2")
POLICY = load_policy(shipped_policy("defense-kr"))
_names = count()

LEAVE_2024 = (
    "2024년 장병 휴가 규정\n장병의 연가는 연 21일로 한다. 포상휴가는 최대 7일까지 부여한다."
)
LEAVE_2025 = (
    "2025년 장병 휴가 규정\n장병의 연가는 연 24일로 한다. 포상휴가는 최대 10일까지 부여한다."
)
BUDGET = (
    "예산 집행 지침\n각 부대는 배정된 예산안을 분기별 집행 계획에 따라 집행하고 실적을 보고한다."
)
SECURITY = (
    "보안 교육 지침\n모든 인원은 매 분기 1회 이상 보안 교육을 이수한다. "
    "신규 전입자는 보안 서약서를 제출한다."
)
VEHICLE = (
    "군용 차량 운행 규정\n군용 차량은 배차 승인 없이 운행할 수 없다. "
    "영내 제한 속도는 시속 20킬로미터이다."
)
MEAL = "급식 운영 지침\n장병 1인 1일 기본 급식비는 13,000원이다. 부대는 매주 식단을 게시한다."


@dataclass
class Home:
    path: Path
    log: AuditLog
    store: DocumentStore
    key: bytes

    def as_(self, principal: Principal) -> Library:
        return Library(self.path, POLICY, self.log, principal, self.store)

    def shared(self, *members: str) -> str:
        """A new shared collection with these members."""
        name = f"공유{next(_names)}"
        lee = self.as_(LEE)
        lee.create_collection(name)
        for member in members:
            lee.set_member(name, member, member=True)
        return name


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    path = tmp_path_factory.mktemp("retrieval")
    key = os.urandom(32)
    with AuditLog(audit_dir(path)) as log, DocumentStore(path / "store.db", key) as store:
        yield Home(path, log, store, key)


def add(library: Library, collection: str, text: str, **kwargs: str) -> str:
    name = f"문서{next(_names)}.txt"
    added = library.add(name, text.encode(), collection=collection, **kwargs)
    return str(added["document"]["id"])


def test_morphemes_find_a_word_inside_its_inflected_and_compound_forms(home):
    kim = home.as_(KIM)
    shelf = home.shared("kim")
    budget = add(kim, shelf, BUDGET)
    leave = add(kim, shelf, LEAVE_2025)
    found = kim.search("예산", collection=shelf, mode="keyword")
    assert [p.document_id for p in found.passages][:1] == [budget]
    start, end = found.passages[0].snippet
    assert found.passages[0].text[start:end] == "예산"
    # Whitespace words miss it: "예산안을" and "예산" are different words to them.
    spaced = kim.search("예산안", collection=shelf, mode="whitespace")
    assert budget not in [p.document_id for p in spaced.passages]
    # A two-syllable noun followed by a particle is found by itself.
    leave_found = kim.search("연가", collection=shelf, mode="keyword")
    assert [p.document_id for p in leave_found.passages][:1] == [leave]
    assert leave_found.answerable


def test_an_english_question_finds_its_korean_document(home):
    kim = home.as_(KIM)
    shelf = home.shared("kim")
    add(kim, shelf, BUDGET)
    vehicle = add(kim, shelf, VEHICLE)
    add(kim, shelf, MEAL)
    question = "What is the speed limit for military vehicles inside the base?"
    # It shares no word with the Korean text: whitespace BM25 finds nothing.
    assert kim.search(question, collection=shelf, mode="whitespace").passages == []
    # The glossary's Korean words for what it names (군용 차량, 제한) find it by keyword;
    # the hybrid retriever puts it first and answers.
    keyword = kim.search(question, collection=shelf, mode="keyword")
    assert keyword.passages[0].document_id == vehicle
    found = kim.search(question, collection=shelf)
    assert found.passages[0].document_id == vehicle
    assert found.answerable, found.evidence


def test_a_spoken_word_is_read_as_the_documents_word(home):
    kim = home.as_(KIM)
    shelf = home.shared("kim")
    add(kim, shelf, BUDGET)
    meal = add(kim, shelf, MEAL)
    # 밥값 is nowhere in the text; the glossary reads it as 식비 / 급식비, which is.
    found = kim.search("밥값은 하루에 얼마야?", collection=shelf)
    assert found.passages[0].document_id == meal
    assert found.answerable, found.evidence
    assert found.absent == ()


def test_a_question_about_what_no_readable_text_mentions_is_declined_naming_it(home):
    kim = home.as_(KIM)
    shelf = home.shared("kim", "park", "choi")
    for text in (LEAVE_2025, BUDGET, MEAL):
        add(kim, shelf, text)
    # Near the topic (leave, pay) but about what the documents never say.
    found = kim.search("육아휴직 기간에 봉급은 얼마나 나와?", collection=shelf)
    assert not found.answerable
    assert found.passages, "the passages are still ranked; only the answer is declined"
    assert {"육아", "휴직", "봉급"} <= set(found.absent)
    assert found.evidence["absent"] == len(found.absent)
    # The same question about what they do say is answered.
    answered = kim.search("포상휴가는 최대 며칠이야?", collection=shelf)
    assert answered.answerable, answered.evidence
    assert answered.absent == ()
    # What a reader cannot read does not count as mentioned: a 대외비 document saying
    # 봉급 changes nothing for a reader cleared to public only.
    add(home.as_(PARK), shelf, "봉급 지급 지침\n육아휴직 기간의 봉급은 50퍼센트를 지급한다.",
        level="restricted")  # fmt: skip
    public = Principal("choi", "operator", "public")
    again = home.as_(public).search("육아휴직 기간에 봉급은 얼마나 나와?", collection=shelf)
    assert set(again.absent) == set(found.absent)
    assert home.as_(PARK).search("육아휴직 기간에 봉급은 얼마나 나와?", collection=shelf).answerable


def test_a_word_of_several_parts_is_mentioned_only_where_one_chunk_says_it_all(home):
    kim = home.as_(KIM)
    shelf = home.shared("kim")
    add(kim, shelf, "국내 출장 여비 지침\n국내 출장의 일비는 하루 25,000원으로 한다.")
    add(kim, shelf, "휴가 중 국외여행 지침\n휴가 중 국외여행은 출발 7일 전까지 신고한다.")
    # One rule says 국외 (travel abroad on leave), another 출장 (trips at home): neither
    # says anything of a business trip abroad.
    question = "What is the daily allowance for an overseas business trip?"
    found = kim.search(question, collection=shelf)
    assert not found.answerable
    assert found.absent == ("국외 출장",)
    add(kim, shelf, "국외 출장 여비 지침\n국외 출장의 일비는 하루 미화 40달러로 한다.")
    answered = kim.search(question, collection=shelf)
    assert answered.absent == ()
    assert answered.answerable, answered.evidence


def test_an_english_word_before_a_full_stop_is_one_word_and_asked_about_by_the_glossary(home):
    # Kiwi cuts some English words before a full stop (vacation. -> vacat, ion.): the
    # pieces are one word again, and English words count as asked about only through
    # the glossary's concepts, never as Korean terms the documents lack.
    assert {"vacation", "gpt"} <= set(index.analyse(["my vacation. GPT."])[0].morphemes)
    kim = home.as_(KIM)
    shelf = home.shared("kim")
    leave = add(kim, shelf, LEAVE_2025)
    add(kim, shelf, BUDGET)
    found = kim.search("A question about my vacation. How many days of annual leave do "
                       "soldiers get?", collection=shelf)  # fmt: skip
    assert found.absent == ()
    assert found.passages[0].document_id == leave
    assert found.answerable, found.evidence


def test_what_is_above_the_readers_clearance_or_outside_their_collections_changes_nothing(
    home,
):
    kim, park = home.as_(KIM), home.as_(PARK)
    shelf = home.shared("kim", "park")
    for text in (BUDGET, SECURITY, VEHICLE, LEAVE_2025):
        add(kim, shelf, text)
    questions = ["보안 교육은 얼마나 자주 받나?", "예산 집행 실적 보고", "영내 속도"]

    def seen() -> list[tuple[list[tuple[int, float, str]], dict[str, float], bool]]:
        results = [kim.search(q, collection=shelf, k=10) for q in questions]
        results += [kim.search(q, collection=shelf, k=10, mode="keyword") for q in questions]
        results += [kim.search(q, k=10) for q in questions]  # every collection kim may use
        return [
            ([(p.chunk_id, p.score, p.label) for p in r.passages], r.evidence, r.answerable)
            for r in results
        ]

    before = seen()
    # In the same collection, marked Ⅱ급비밀 (the label kim may not read) and full of
    # the same words; and in a collection kim may not use, at kim's own level.
    secret = "Ⅱ급비밀\n보안 교육 예산 집행 실적 보고. 보안 교육은 매월 받는다. 영내 속도 제한."
    hidden = add(park, shelf, secret)
    assert home.store.document(hidden).label == "secret-2"
    elsewhere = home.shared("park")
    add(park, elsewhere, "보안 교육 예산 집행 실적 보고. 보안 교육 영내 속도.")
    assert seen() == before
    # Park, cleared for it, finds it: it is there, only not for kim.
    found = park.search("보안 교육은 얼마나 자주 받나?", collection=shelf, k=10)
    assert hidden in [p.document_id for p in found.passages]
    for r in [kim.search(q, k=10, mode=m) for q in questions for m in ("hybrid", "dense")]:
        assert all(p.label in ("public", "restricted") for p in r.passages)
        assert hidden not in [p.document_id for p in r.passages]


def test_another_users_personal_collection_is_invisible(home):
    kim, park = home.as_(KIM), home.as_(PARK)
    own = add(park, "~", "박 대위의 개인 메모\n드론봇전투단 정찰 드론 비행 훈련 계획을 검토한다.")
    assert park.search("드론봇전투단 비행 훈련").passages[0].document_id == own
    for mode in ("hybrid", "keyword", "dense", "whitespace"):
        found = kim.search("드론봇전투단 비행 훈련", mode=mode)
        assert own not in [p.document_id for p in found.passages]
    with pytest.raises(UsageError, match="no collection"):
        kim.search("드론봇전투단", collection="~park")


def test_the_current_version_wins_unless_the_question_names_the_year(home):
    kim = home.as_(KIM)
    shelf = home.shared("kim")
    old = add(kim, shelf, LEAVE_2024, effective="2024-01-01")
    new = add(kim, shelf, LEAVE_2025, effective="2025-01-01", supersedes=old)
    add(kim, shelf, MEAL)
    current = kim.search("장병 연가는 며칠인가?", collection=shelf)
    ranked = [p.document_id for p in current.passages]
    assert ranked[0] == new
    assert ranked.index(old) > ranked.index(new)
    marked = {p.document_id: p.superseded for p in current.passages}
    assert marked[old]
    assert not marked[new]
    assert current.passages[0].effective == "2025-01-01"
    named = kim.search("2024년 장병 연가는 며칠이었나?", collection=shelf)
    assert named.passages[0].document_id == old
    assert named.passages[0].superseded  # still marked: there is a newer version
    # 작년 names a year too.
    last_year = kim.search("작년 연가 일수", collection=shelf)
    expected = old if date.today().year - 1 == 2024 else new
    assert last_year.passages[0].document_id == expected


def test_years_named_in_a_question():
    today = date(2025, 6, 1)
    assert question_years("2024년 예산", today) == {2024}
    assert question_years("작년과 올해 예산", today) == {2024, 2025}
    assert question_years("재작년 예산", today) == {2023}
    assert question_years("예산 20240101 집행", today) == set()
    assert question_years("연가는 며칠인가?", today) == set()


def test_a_question_the_documents_do_not_answer_is_declined(home):
    kim = home.as_(KIM)
    shelf = home.shared("kim")
    for text in (BUDGET, SECURITY, VEHICLE, MEAL, LEAVE_2025):
        add(kim, shelf, text)
    for question in ("김치찌개 끓이는 법", "축구 경기 결과는?", "Who won the world cup?"):
        declined = kim.search(question, collection=shelf)
        assert not declined.answerable, (question, declined.evidence)
        assert declined.evidence["dense_top"] < 0.9
    answered = kim.search("보안 교육은 얼마나 자주 받아야 하나?", collection=shelf)
    assert answered.answerable, answered.evidence


def test_removing_a_document_removes_its_postings_and_vectors(home):
    kim = home.as_(KIM)
    shelf = home.shared("kim")
    before = home.store.counts()
    document = add(kim, shelf, SECURITY + "\n" + VEHICLE)
    added = home.store.counts()
    chunks = added["chunks"] - before["chunks"]
    assert chunks >= 1
    assert added["postings"] - before["postings"] == chunks
    assert added["vectors"] - before["vectors"] == chunks
    assert kim.search("보안 서약서", collection=shelf).passages[0].document_id == document
    kim.remove(document)
    assert home.store.counts() == before
    assert kim.search("보안 서약서", collection=shelf).passages == []


def test_an_unchanged_chunk_keeps_its_vector(home, monkeypatch):
    kim = home.as_(KIM)
    shelf = home.shared("kim")
    first = "첫 문단: 예비군 훈련은 연 1회 받는다."
    document = add(kim, shelf, first)
    embedded: list[str] = []
    retriever = kim.retriever
    original = retriever.embedder.embed_passages

    def counting(texts: list[str]) -> np.ndarray:
        embedded.extend(texts)
        return original(texts)

    monkeypatch.setattr(retriever.embedder, "embed_passages", counting)
    name = home.store.document(document).name
    kim.add(name, f"{first}\n\n{'둘째 문단: 훈련 불참자는 보충 훈련을 받는다. ' * 30}".encode(),
            collection=shelf)  # fmt: skip
    assert embedded
    assert all("첫 문단" not in text for text in embedded)


def test_bm25_over_partitions_is_bm25_over_their_union():
    texts = [
        ["예산", "집행", "예산"],
        ["보안", "교육"],
        ["예산", "보안", "보고", "실적", "예산"],
        ["교육"],
    ]

    def field(rows: list[list[str]]) -> index.FieldIndex:
        builder = index.FieldBuilder()
        for words in rows:
            counted = index.Counter(words)
            builder.add(len(words), list(counted), np.asarray(list(counted.values()), "<u2"))
        return builder.build()

    split, _ = index.bm25([field(texts[:2]), field(texts[2:])], ["예산", "보안"])
    whole, _ = index.bm25([field(texts)], ["예산", "보안"])
    assert np.allclose(np.concatenate(split), whole[0])
    alone, _ = index.bm25([field(texts[:2])], ["예산", "보안"])
    assert not np.allclose(alone[0], whole[0][:2])  # the statistics are the parts' own


def test_a_version_1_store_is_migrated_and_indexed_when_first_searched(home, tmp_path):
    key = os.urandom(32)
    path = tmp_path / "old.db"
    with AuditLog(audit_dir(tmp_path)) as log, DocumentStore(path, key) as store:
        Library(tmp_path, POLICY, log, KIM, store).add("a.txt", SECURITY.encode())
    # What a version-1 store is: no retrieval tables, schema 1.
    db = apsw.Connection(str(path))
    db.execute(f"PRAGMA cipher = '{CIPHER}'")
    db.execute(f"PRAGMA hexkey = '{key.hex()}'")
    db.execute("DROP TABLE postings; DROP TABLE vectors; DROP TABLE partitions; "
               "UPDATE meta SET value = '1' WHERE key = 'schema'")  # fmt: skip
    db.close()
    with AuditLog(audit_dir(tmp_path)) as log, DocumentStore(path, key) as store:
        assert store.counts()["postings"] == 0
        kim = Library(tmp_path, POLICY, log, KIM, store, Retriever(store, home_embedder(home)))
        assert kim.search("보안 서약서").passages
        counts = store.counts()
        assert counts["postings"] == counts["vectors"] == counts["chunks"]
    db = apsw.Connection(str(path))
    db.execute(f"PRAGMA cipher = '{CIPHER}'")
    db.execute(f"PRAGMA hexkey = '{key.hex()}'")
    db.execute("UPDATE meta SET value = '9' WHERE key = 'schema'")
    db.close()
    with pytest.raises(ConfigError, match="schema 9"):
        DocumentStore(path, key)


def test_postings_another_analyser_made_are_computed_again(home, tmp_path):
    key = os.urandom(32)
    path = tmp_path / "analysed.db"
    text = "영문 용어 지침\n연가는 영문으로 annual vacation. 이라고 적는다."
    with AuditLog(audit_dir(tmp_path)) as log, DocumentStore(path, key) as store:
        Library(tmp_path, POLICY, log, KIM, store).add("a.txt", text.encode())

    def stored(analyser: str) -> None:
        """The store as an analyser that cut the word (vacat) left it."""
        db = apsw.Connection(str(path))
        db.execute(f"PRAGMA cipher = '{CIPHER}'")
        db.execute(f"PRAGMA hexkey = '{key.hex()}'")
        db.execute("UPDATE postings SET terms = replace(terms, 'vacation', 'vacat')")
        db.execute("UPDATE meta SET value = ? WHERE key = 'analyser'", (analyser,))
        db.close()

    def found() -> bool:
        with AuditLog(audit_dir(tmp_path)) as log, DocumentStore(path, key) as store:
            retriever = Retriever(store, home_embedder(home))
            kim = Library(tmp_path, POLICY, log, KIM, store, retriever)
            return bool(kim.search("vacation", mode="keyword").passages)

    stored(index.ANALYSER)  # marked as the current analyser's: kept, and so not found
    assert not found()
    stored("kiwi-1")
    assert found()
    assert found(), "computed once, then kept"


def home_embedder(home: Home):
    return home.as_(KIM).retriever.embedder


class Fixed:
    """An embedder whose every question is one given vector."""

    name = "fixed"
    dim = 384
    thresholds = Thresholds(least=0.0, cross=0.0)

    def __init__(self, vector: np.ndarray) -> None:
        self.vector = vector

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return np.tile(self.vector, (len(texts), 1))

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        raise AssertionError("a synthetic store has its vectors")


def test_a_large_readable_set_is_searched_by_sign_bits_then_exactly(tmp_path, monkeypatch):
    levels = ["public", "대외비"]  # two partitions: the shortlist spans both
    with DocumentStore(tmp_path / "bench.db", os.urandom(32)) as store:
        first = fill_synthetic(store, 1500, embedder_name="fixed", per_document=100)
        second = fill_synthetic(store, 700, collection="more", label="대외비",
                                embedder_name="fixed", seed=1)  # fmt: skip
        collections = [first, second]
        stored = [*store.partition(first, "public", "fixed").rows,
                  *store.partition(second, "대외비", "fixed").rows]  # fmt: skip
        rng = np.random.default_rng(1)
        for row in [*rng.choice(1500, 3, replace=False), *rng.choice(700, 3, replace=False) + 1500]:
            target = stored[int(row)]
            vector = np.frombuffer(target.vector.data, np.int8).astype(np.float32)
            noisy = vector / np.linalg.norm(vector) + rng.normal(0, 0.02, 384).astype(np.float32)
            retriever = Retriever(store, Fixed(noisy / np.linalg.norm(noisy)))
            exact = retriever.search("질문", collections=collections, labels=levels,
                                     mode="dense", k=10)  # fmt: skip
            monkeypatch.setattr(retrieve, "EXACT_DENSE", 100)
            monkeypatch.setattr(retrieve, "SHORTLIST", 150)
            shortlisted = retriever.search("질문", collections=collections, labels=levels,
                                           mode="dense", k=10)  # fmt: skip
            monkeypatch.undo()
            assert exact.passages[0].chunk_id == target.chunk
            assert shortlisted.passages[0].chunk_id == target.chunk
            assert shortlisted.passages[0].label == levels[int(row >= 1500)]
            assert shortlisted.evidence["dense_top"] == exact.evidence["dense_top"]
