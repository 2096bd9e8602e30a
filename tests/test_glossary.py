"""The glossary: English and spoken Korean read as the documents' words."""

from __future__ import annotations

import pytest

from appliance.documents import glossary
from appliance.documents.glossary import parse, stem

SMALL = """\
# a comment, then a blank line

휴가	leave, time off, vacation
포상휴가	reward leave
체력단련장	gym, fitness center, 헬스장
휴무 / 휴식	rest, 쉬
법인카드 / 정부구매카드	corporate card
"""


def korean(reading: glossary.Reading) -> list[tuple[str, ...]]:
    return [named.concept.korean for named in reading.named]


def test_english_words_are_matched_whole_longest_phrase_first_and_without_plurals():
    small = parse(SMALL)
    assert korean(small.read("How many days of reward leave?")) == [("포상휴가",)]
    assert korean(small.read("Is leave allowed?")) == [("휴가",)]
    assert korean(small.read("Are the GYMS open?")) == [("체력단련장",)]
    # Whole words: "leaves" is "leave", but "cleave" and "leaver" are nothing.
    assert korean(small.read("leaves")) == [("휴가",)]
    assert small.read("cleave leaver").named == []


def test_what_no_line_names_is_kept_as_unknown_less_the_words_every_question_has():
    reading = parse(SMALL).read("What does the fine for taking leave early cost?")
    assert korean(reading) == [("휴가",)]
    assert reading.unknown == ["fine", "taking", "early", "cost"]


def test_korean_aliases_match_in_the_text_and_one_syllable_ones_only_as_morphemes():
    small = parse(SMALL)
    assert korean(small.read("주말에 헬스장 몇 시까지 열어?")) == [("체력단련장",)]
    # 쉬 is in 쉬운 as letters; only the morpheme (쉬어, from Kiwi) names the concept.
    assert small.read("쉬운 질문").named == []
    assert korean(small.read("PX는 언제 쉬어?", ["px", "언제", "쉬"])) == [("휴무", "휴식")]
    # A document's own word names its concept too, and brings the other words for it.
    reading = small.read("법인카드로 결제하면?")
    assert korean(reading) == [("법인카드", "정부구매카드")]
    assert reading.korean == "법인카드 정부구매카드"


def test_plurals_are_taken_off_and_short_words_are_left_alone():
    assert [stem(w) for w in ("leaves", "boxes", "cards", "policies", "gas", "status")] == [
        "leave", "box", "card", "policy", "gas", "status",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "text",
    [
        "휴가 leave\n",  # no tab
        "휴가\tleave\textra\n",  # two tabs
        "\tleave\n",  # no Korean term
        "휴가 / \tleave\n",  # an empty alternative
        "휴가\tleave, , vacation\n",  # an empty alias
    ],
)
def test_a_malformed_line_is_refused_naming_it(text):
    with pytest.raises(ValueError, match="glossary line 1"):
        parse(text)


def test_the_shipped_glossary_reads_and_every_line_gives_korean_words():
    shipped = glossary.shipped()
    assert len(shipped.concepts) >= 250
    for concept in shipped.concepts:
        assert all(any("가" <= ch <= "힣" or ch.isascii() for ch in t) for t in concept.korean)
    reading = shipped.read("What is the daily allowance for an overseas business trip?")
    assert {"일비", "국외", "출장"} <= set(reading.korean.split())
    # The longest phrase is one concept: an overseas business trip, not "overseas" and
    # "business trip" apart (retrieval needs one chunk to say it, not two rules).
    assert ("국외 출장", "국외출장", "해외 출장") in korean(reading)
    assert ("출장",) not in korean(reading)


def test_an_english_word_with_two_senses_names_a_concept_only_in_the_phrase_for_it():
    shipped = glossary.shipped()
    fine = ("과태료", "벌금")
    assert fine in korean(shipped.read("What is the fine for leaking personal information?"))
    assert fine in korean(shipped.read("How much are the fines for speeding?"))
    assert fine not in korean(shipped.read("Is it fine to bring my phone to the office?"))
    # "March" the month is no road march.
    assert korean(shipped.read("What was decided in March?")) == []
