"""The output guard with normalisation: an identifier split anywhere across streamed
tokens (inside a decomposed syllable, between a digit and its mark, behind
invisible padding, after its keyword was already shown) never shows."""

from __future__ import annotations

import unicodedata

import pytest

from appliance.policy import OutputGuard, load_policy, shipped_policy

DEFENSE = load_policy(shipped_policy("defense-kr"))
TAIL = " 입니다. 나머지 안내는 추후 공지합니다." * 3
NFD = unicodedata.normalize("NFD", "군번")
FULL_WIDTH = {code: code + 0xFEE0 for code in range(0x21, 0x7F)}


def _stream(answer: str, cut: int) -> tuple[str, OutputGuard]:
    guard = OutputGuard(DEFENSE, DEFENSE.lowest)
    shown = [guard.feed(answer[start : start + cut]) for start in range(0, len(answer), cut)]
    shown.append(guard.finish())
    return "".join(shown), guard


def _digits(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKC", text) if c.isdigit())


@pytest.mark.parametrize(
    ("answer", "detector"),
    [
        ("담당자 군번은 12-34567890" + TAIL, "service_number"),  # the keyword shows first
        (f"담당자 {NFD} 12-34567890" + TAIL, "service_number"),
        ("담당자 군" + "\u200b" * 60 + "번 12-34567890" + TAIL, "service_number"),
        ("연락처 0\u03011\u03010-2\u0301345-6789" + TAIL, "phone"),
        ("연락처 010" + "\u200b" * 80 + "-2345-6789" + TAIL, "phone"),
        ("연락처 010" + " " * 200 + "2345\u00a06789" + TAIL, "phone"),
        ("주민번호 " + "900101-1234568".translate(FULL_WIDTH) + TAIL, "rrn"),
        ("좌표 52S CG 12345\u2003" + "\ufe0f" * 50 + "67890" + TAIL, "mgrs"),
    ],
    ids=[
        "keyword-shown-first",
        "keyword-decomposed",
        "keyword-padded",
        "digits-with-marks",
        "padding-over-holdback",
        "long-space-run",
        "full-width",
        "variation-selectors",
    ],
)
@pytest.mark.parametrize("cut", [1, 2, 3, 5, 7, 13])
def test_no_part_of_an_identifier_is_ever_shown(answer: str, detector: str, cut: int) -> None:
    shown, guard = _stream(answer, cut)
    assert _digits(shown) == ""
    assert [f["type"] for f in guard.summary()] == [detector]
    if guard.blocked is None:
        assert len(shown) > len(TAIL)  # the rest of the answer still shows


@pytest.mark.parametrize("marking", ["대외비", "Ⅱ급비밀", "비밀(Ⅱ급)"])
@pytest.mark.parametrize("cut", [1, 2, 3])
def test_a_marking_split_inside_a_decomposed_syllable_still_raises_the_label(
    marking: str, cut: int
) -> None:
    _, guard = _stream("이 문서는 " + unicodedata.normalize("NFD", marking) + TAIL, cut)
    expected = "restricted" if marking == "대외비" else "secret-2"
    assert guard.label.id == expected
    assert [f["type"] for f in guard.summary()] == ["marking"]


def test_positions_are_those_of_the_answer_as_written() -> None:
    answer = "앞부분 " * 20 + "연락처 \u200b010-2345-6789\u200b" + TAIL
    _, guard = _stream(answer, 4)
    (finding,) = guard.findings
    assert answer[finding.start : finding.end] == "010-2345-6789"
