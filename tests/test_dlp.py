"""DLP detectors on a labelled corpus: recall and precision per detector, evasions, actions."""

from __future__ import annotations

from collections import Counter

import pytest

from appliance.policy import OutputGuard, check_input, load_policy, scan, shipped_policy
from tests.dlp_corpus import build

CORPUS = build()
DEFENSE = load_policy(shipped_policy("defense-kr"))


def _label(finding) -> str:
    return f"marking:{finding.marking}" if finding.marking else finding.detector


def _score():
    true_pos, false_pos, expected = Counter(), Counter(), Counter()
    for sample in CORPUS:
        found = {(_label(f), f.start, f.end) for f in scan(sample.text, DEFENSE)}
        wanted = set(sample.spans)
        for span in wanted:
            expected[span[0]] += 1
        for span in found:
            (true_pos if span in wanted else false_pos)[span[0]] += 1
    return true_pos, false_pos, expected


TRUE_POS, FALSE_POS, EXPECTED = _score()
DETECTORS = sorted(EXPECTED)


def test_the_corpus_covers_every_detector_and_marking() -> None:
    assert {d.split(":")[0] for d in DETECTORS} >= {
        "rrn", "foreigner_rn", "passport", "driver_license", "phone", "business_rn",
        "corporate_rn", "bank_account", "service_number", "mgrs", "marking",
    }  # fmt: skip
    assert sum(1 for sample in CORPUS if not sample.spans) >= 100


@pytest.mark.parametrize("detector", DETECTORS)
def test_recall_per_detector(detector: str) -> None:
    assert TRUE_POS[detector] / EXPECTED[detector] >= 0.97, (TRUE_POS, EXPECTED)


@pytest.mark.parametrize("detector", DETECTORS)
def test_precision_per_detector(detector: str) -> None:
    found = TRUE_POS[detector] + FALSE_POS[detector]
    assert found > 0
    assert TRUE_POS[detector] / found >= 0.97, (detector, FALSE_POS)


def test_clean_text_has_no_findings() -> None:
    noisy = [s.text for s in CORPUS if not s.spans and scan(s.text, DEFENSE)]
    assert noisy == []


@pytest.mark.parametrize(
    "text",
    [
        "９００１０１－１２３４５６８",  # full-width digits and hyphen
        "900101\u200b-1234568",  # zero-width space
        "9001\u200d01 1234568",  # zero-width joiner, space separator
        "900101.1234568",  # dot separator
        "900101 - 1234568",  # spaced hyphen
    ],
)
def test_evasions_are_normalised_and_spans_point_at_the_original(text: str) -> None:
    (finding,) = scan(f"번호: {text} 입니다", DEFENSE)
    assert finding.detector == "rrn"
    assert f"번호: {text} 입니다"[finding.start : finding.end] == text


def test_a_number_issued_since_2020_is_flagged_without_a_checksum() -> None:
    (finding,) = scan("900101-1234567", DEFENSE)  # checksum digit would be 8
    assert (finding.detector, finding.evidence) == ("rrn", "date-and-gender")
    assert scan("901301-1234567", DEFENSE) == []  # month 13
    assert scan("900101-9234567", DEFENSE) == []  # no such gender digit


def test_input_actions_redact_block_and_raise_the_label() -> None:
    lowest = DEFENSE.lowest
    redacted = check_input(DEFENSE, "연락처 010-1234-5678 입니다", lowest)
    assert redacted.text == "연락처 ***-****-**** 입니다"
    assert redacted.blocked is None
    blocked = check_input(DEFENSE, "주민번호 900101-1234568", lowest)
    assert blocked.blocked is not None
    assert blocked.blocked.detector == "rrn"
    labelled = check_input(DEFENSE, "Ⅱ급비밀 문서 요약", lowest)
    assert labelled.label.id == "secret-2"
    custom = check_input(DEFENSE, "작전명 '번개' 준비 현황", lowest)
    assert custom.label.id == "secret-2"
    assert custom.summary() == [
        {"type": "operation-codename", "start": 0, "end": 7, "action": "label"}
    ]


def test_findings_are_summarised_without_values() -> None:
    checked = check_input(DEFENSE, "연락처 010-1234-5678", DEFENSE.lowest)
    assert "010" not in str(checked.summary())


@pytest.mark.parametrize("cut", [1, 3, 7, 11, 13, 20])
def test_streamed_output_never_shows_part_of_an_identifier(cut: int) -> None:
    answer = "담당자 연락처는 010-2345-6789 이고, 추가 문의는 내선으로 바랍니다. " * 2
    guard = OutputGuard(DEFENSE, DEFENSE.lowest)
    shown = []
    for start in range(0, len(answer), cut):
        shown.append(guard.feed(answer[start : start + cut]))
        assert "010-2345" not in "".join(shown)
        assert "2345-6789" not in "".join(shown)
    shown.append(guard.finish())
    assert "".join(shown) == answer.replace("010-2345-6789", "***-****-****")
    assert [f["type"] for f in guard.summary()] == ["phone", "phone"]


def test_a_blocked_output_stops_the_stream() -> None:
    guard = OutputGuard(DEFENSE, DEFENSE.lowest)
    text = guard.feed("집결지는 52S CG 12345 67890 입니다. " + "이후 내용 " * 20) + guard.finish()
    assert guard.blocked is not None
    assert guard.blocked.detector == "mgrs"
    assert "12345" not in text
