"""A labelled DLP corpus: identifiers in Korean admin sentences, evasions, and clean text.

Deterministic (seeded). Each sample is a text and the (detector, start, end)
spans it must yield; clean samples must yield nothing. Shared by the tests
(recall and precision per detector) and bench/dlp.py.
"""

# ruff: noqa: RUF001 (look-alike characters are the point of the evasions below)
from __future__ import annotations

import calendar
import random
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

RRN_WEIGHTS = (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5)


@dataclass(frozen=True)
class Sample:
    text: str
    spans: tuple[tuple[str, int, int], ...]  # (detector, start, end)


TEMPLATES = (
    "담당자 확인 결과 {} 로 등록되어 있습니다.",
    "민원인 요청에 따라 {}를 재확인 바랍니다.",
    "첨부 서류의 {} 항목이 누락되었습니다.",
    "다음 정보({})를 인사 시스템에 입력하였습니다.",
    "{} 관련하여 내일까지 회신 부탁드립니다.",
)
CLEAN = (
    "2026년 11월 28일 오전 10시 대회의실에서 예산 검토 회의를 개최합니다.",
    "훈련 참가 인원은 총 1,234명이며 예산은 56,000,000원입니다.",
    "문서번호 제2026-1123호를 참조하여 보고서를 작성하시기 바랍니다.",
    "대표번호 1588-1234 로 문의하시면 안내해 드립니다.",
    "제3차 회의 결과 보고서는 12페이지 분량입니다.",
    "차량 번호 12가 3456 은 주차 등록이 완료되었습니다.",
    "The budget review meeting is on 2026-11-28 at 10:00 in room 301.",
    "Version 3.12.4 of the software was installed on 14 workstations.",
    "비밀번호는 주기적으로 변경하시기 바랍니다.",
    "이번 분기 목표 달성률은 98.5%로 집계되었습니다.",
    "우편번호 04383 서울특별시 용산구 이태원로 22",
    "접수번호 2026112800123 으로 처리되었습니다.",
    "회의록 작성 기준은 secret 이라는 단어와 무관합니다.",
    "Top performers received a certificate of recognition.",
)


def _rrn(rng: random.Random, valid_checksum: bool, foreigner: bool = False) -> str:
    year = rng.randint(1950, 2019)
    month = rng.randint(1, 12)
    day = rng.randint(1, calendar.monthrange(year, month)[1])
    old = year < 2000
    gender = (
        rng.choice((5, 6) if old else (7, 8))
        if foreigner
        else rng.choice((1, 2) if old else (3, 4))
    )
    front = f"{year % 100:02d}{month:02d}{day:02d}{gender}" + "".join(
        str(rng.randint(0, 9)) for _ in range(5)
    )
    total = sum(int(d) * w for d, w in zip(front, RRN_WEIGHTS, strict=True))
    check = ((13 if foreigner else 11) - total % 11) % 10
    if not valid_checksum:
        check = (check + rng.randint(1, 9)) % 10
    return f"{front[:6]}-{front[6:]}{check}"


def _business(rng: random.Random, valid: bool = True) -> str:
    digits = [rng.randint(0, 9) for _ in range(9)]
    weights = (1, 3, 7, 1, 3, 7, 1, 3, 5)
    total = sum(d * w for d, w in zip(digits, weights, strict=True)) + digits[8] * 5 // 10
    check = (10 - total % 10) % 10
    if not valid:
        check = (check + rng.randint(1, 9)) % 10
    text = "".join(map(str, digits)) + str(check)
    return f"{text[:3]}-{text[3:5]}-{text[5:]}"


def _corporate(rng: random.Random) -> str:
    while True:
        digits = [rng.randint(0, 9) for _ in range(12)]
        # Registry-office numbers: the 7th digit is rarely a valid gender digit
        # with a valid date before it; keep only unambiguous ones, as issued.
        if digits[6] in (0, 9):
            break
    total = sum(d * w for d, w in zip(digits, (1, 2) * 6, strict=True))
    text = "".join(map(str, digits)) + str((10 - total % 10) % 10)
    return f"{text[:6]}-{text[6:]}"


def _phone(rng: random.Random) -> str:
    if rng.random() < 0.7:
        return f"010-{rng.randint(2000, 9999)}-{rng.randint(0, 9999):04d}"
    return f"02-{rng.randint(200, 999)}-{rng.randint(0, 9999):04d}"


def _passport(rng: random.Random) -> str:
    letter = rng.choice("MSRODG")
    if rng.random() < 0.5:
        return f"{letter}{rng.randint(0, 99999999):08d}"
    return f"{letter}{rng.randint(0, 999):03d}{rng.choice('ABCDEFGH')}{rng.randint(0, 9999):04d}"


def _driver(rng: random.Random) -> str:
    region, year = rng.randint(11, 28), rng.randint(0, 99)
    return f"{region}-{year:02d}-{rng.randint(0, 999999):06d}-{rng.randint(0, 99):02d}"


def _mgrs(rng: random.Random) -> str:
    square = rng.choice(("CS", "CT", "BS", "CR", "DS"))
    return f"52S {square} {rng.randint(10000, 99999)} {rng.randint(10000, 99999)}"


def _evade(rng: random.Random, value: str) -> str:
    """Full-width digits, zero-width characters, or spaces/dots for hyphens."""
    kind = rng.choice(("fullwidth", "zerowidth", "spaces", "dots"))
    if kind == "fullwidth":
        return "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in value)
    if kind == "zerowidth":
        at = rng.randint(1, len(value) - 1)
        return value[:at] + "\u200b" + value[at:]
    return value.replace("-", " " if kind == "spaces" else ".")


def _place(rng: random.Random, detector: str, value: str, prefix: str = "") -> Sample:
    template = rng.choice(TEMPLATES)
    before, after = template.split("{}")
    start = len(before) + len(prefix)
    text = before + prefix + value + after
    return Sample(text, ((detector, start, start + len(value)),))


def build(seed: int = 20261128, per_detector: int = 40) -> list[Sample]:
    rng = random.Random(seed)
    samples: list[Sample] = []
    for _ in range(per_detector):
        samples.append(_place(rng, "rrn", _rrn(rng, True), "주민등록번호 "))
        samples.append(_place(rng, "rrn", _rrn(rng, False)))  # issued since 2020: no checksum
        samples.append(_place(rng, "rrn", _evade(rng, _rrn(rng, True))))
        samples.append(_place(rng, "foreigner_rn", _rrn(rng, rng.random() < 0.5, True)))
        samples.append(_place(rng, "business_rn", _business(rng), "사업자등록번호 "))
        samples.append(_place(rng, "corporate_rn", _corporate(rng), "법인등록번호 "))
        samples.append(_place(rng, "phone", _phone(rng), "연락처 "))
        samples.append(_place(rng, "phone", _evade(rng, _phone(rng))))
        samples.append(_place(rng, "passport", _passport(rng), "여권번호 "))
        samples.append(_place(rng, "driver_license", _driver(rng), "운전면허 "))
        account = f"{rng.randint(100, 999)}-{rng.randint(10, 99)}-{rng.randint(100000, 999999)}"
        samples.append(_place(rng, "bank_account", account, "국민은행 계좌 "))
        service = f"{rng.randint(10, 26)}-{rng.randint(10000000, 79999999)}"
        samples.append(_place(rng, "service_number", service, "군번 "))
        samples.append(_place(rng, "mgrs", _mgrs(rng), "집결지 좌표 "))
    for marking, text in (
        ("secret-2", "Ⅱ급비밀"),
        ("secret-2", "2급 비밀"),
        ("secret-3", "Ⅲ급비밀"),
        ("secret-1", "Ⅰ급비밀"),
        ("restricted", "대외비"),
        ("secret-2", "SECRET//NOFORN"),
        ("secret-1", "TOP SECRET//SI"),
        ("secret-3", "CONFIDENTIAL"),
        ("cui", "CUI"),
    ):
        samples.append(_place(rng, f"marking:{marking}", text, "문서 등급: "))
    # Negatives: no identifier, or shapes that must not be taken for one.
    samples += [Sample(text, ()) for text in CLEAN]
    for _ in range(per_detector):
        month_13 = f"{rng.randint(50, 99)}13{rng.randint(10, 28)}"
        bad_date = f"{month_13}-{rng.randint(1, 2)}{rng.randint(0, 999999):06d}"
        samples.append(Sample(rng.choice(TEMPLATES).format(bad_date), ()))
        samples.append(
            Sample(rng.choice(TEMPLATES).format("사업자 " + _business(rng, valid=False)), ())
        )
        unanchored = f"{rng.randint(100, 999)}-{rng.randint(10, 99)}-{rng.randint(100000, 999999)}"
        samples.append(Sample(rng.choice(TEMPLATES).format("관리번호 " + unanchored), ()))
    return samples


# -- Unicode: clean text that uses what the normaliser folds, and evasions ----------------

# Ordinary text with no-break spaces, dashes, Hanja, Roman numerals, compatibility
# forms and Greek or Cyrillic words: none of it may be flagged.
CLEAN_UNICODE = (
    "회의는 2026\u00a0년 11\u00a0월 28\u00a0일 10:00–12:00에 대회의실에서 열립니다.",
    "예산 범위는 1,000,000원～2,000,000원이며 집행률은 98.5\u202f%입니다.",
    "제Ⅱ장 인사 관리와 제Ⅲ절 복무 규정을 참조하십시오.",
    "Ⅱ급 정비 대상 차량은 12대, Ⅰ급 정비 대상은 3대입니다.",
    "비밀번호는 ９자리 이상으로 설정하고 90일마다 변경하십시오.",
    "그 비밀이 급히 알려질 이유는 없습니다.",
    "對外 협력 과제와 秘書室 업무 분장을 정리하였습니다.",
    "Σ 합계는 ΑΒΓ 항목의 평균이며 Ω 값은 별도입니다.",
    "Москва и Санкт-Петербург — крупные города России.",
    "The O2 sensor and the IO board were replaced in room 1O1.",
    "Section I, Part II and Annex III apply from 1 January 2026.",
    "Call extension 1234 or press 0 for the operator.",
    "ｶﾀｶﾅ 표기와 ﾀﾞ 같은 반각 문자는 그대로 둡니다.",
    "㈜대한과 ㈔한국협회의 협약은 ㉿ 표시와 함께 게시합니다.",
    "진행 순서: ① 초안, ② 검토, ③ 확정 — 총 3단계입니다.",
    "접수 기간은 2026. 11. 28.부터 2026. 12. 31.까지입니다.",
    "전화는 내선 2345번, 팩스는 내선 6789번입니다.",
    "이 문서는 UNCLASSIFIED이며 secret이라는 단어와 무관합니다.",
    "문서 번호\u00a0: 제2026–1123호, 분류\u00a0: 일반",
    "표 1.\n구분\t2025\t2026\n인원\t1,200\t1,234\n예산\t56\t60",
    "버전 3.12.4 → 3.13.0 업그레이드, 빌드 번호 20261128.",
    "ⅰ) 목적 ⅱ) 범위 ⅲ) 절차 순서로 기술합니다.",
    "Café, naïve, Ærø and façade are ordinary words.",
    "👍🏽 확인했습니다 ☺️ 감사합니다.",
    "국방부 대표전화 1577-9090, 민원 110.",
    "한자 표기: 國防部, 人事, 法人格, 秘密保持 협약 검토.",
)


@dataclass(frozen=True)
class Kind:
    """An identifier or marking, written after its keyword, and what must find it."""

    name: str
    keyword: str
    value: str
    expect: str  # detector, or marking:ID
    anchored: bool = False  # found only after its keyword


KINDS = (
    Kind("rrn", "주민등록번호", "900101-1234568", "rrn"),
    Kind("mobile", "연락처", "010-2345-6789", "phone"),
    Kind("landline", "연락처", "02) 748-1234", "phone"),
    Kind("service_number", "군번", "12-34567890", "service_number", anchored=True),
    Kind("mgrs", "집결지 좌표", "52S CG 12345 67890", "mgrs"),
    Kind("graded", "문서 등급:", "Ⅱ급 비밀", "marking:secret-2"),
    Kind("graded_after", "문서 등급:", "비밀(Ⅱ급)", "marking:secret-2"),
    Kind("graded_hanja", "문서 등급:", "Ⅱ級秘密", "marking:secret-2"),
    Kind("restricted", "문서 등급:", "대외비", "marking:restricted"),
    Kind("restricted_hanja", "문서 등급:", "對外秘", "marking:restricted"),
    Kind("top_secret", "Classification:", "TOP SECRET", "marking:secret-1"),
)

# An evasion turns (keyword, value) into (text before the value, the value as written).
Evasion = Callable[[str, str], tuple[str, str]]


def _chars(*categories: str, ranges: tuple[tuple[int, int], ...] = ((0, 0x10FFFF),)) -> str:
    return "".join(
        chr(code)
        for low, high in ranges
        for code in range(low, high + 1)
        if unicodedata.category(chr(code)) in categories
    )


SPACES = _chars("Zs") + "\t\u2800"
DASHES = _chars("Pd") + "\u2212\u207b\u208b\u2796\u02d7\u2043\u2500\u30fc\u3161"
FORMAT = _chars("Cf")  # bidi controls, zero-width characters, tags, soft hyphen, ...
VARIATION = "".join(map(chr, [*range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)]))
MARKS = _chars("Mn", "Me", ranges=((0x300, 0x36F), (0x1AB0, 0x1AFF), (0x20D0, 0x20FF)))
FILLERS = "\u3164\u115f\u1160\uffa0"
DIGIT_ZEROS = (0xFF10, 0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x660, 0x6F0, 0x966, 0xE50)
DIGIT_TABLES = [
    str.maketrans("0123456789", "".join(chr(zero + i) for i in range(10))) for zero in DIGIT_ZEROS
] + [
    str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹"),
    str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉"),
    str.maketrans("0123456789", "⓪①②③④⑤⑥⑦⑧⑨"),
]
LETTER_TABLES = [
    str.maketrans("ACEKMOPSTX", "АСЕКМОРЅТХ"),  # Cyrillic
    str.maketrans("ABEKMNOPTX", "ΑΒΕΚΜΝΟΡΤΧ"),  # Greek
    str.maketrans("ACEGOPRST", "ᴀᴄᴇɢᴏᴘʀꜱᴛ"),  # small capitals
    {code: code - 0x41 + 0x1D400 for code in range(0x41, 0x5B)},  # mathematical bold
    {code: code + 0xFEE0 for code in range(0x21, 0x7F)},  # full-width
    {0x2161: "ΙΙ"},  # Ⅱ as two Greek capital iotas
    {0x2161: "‖"},
]
DIGIT_LOOKALIKES = [str.maketrans("0", "O"), str.maketrans("0", "o"), str.maketrans("01", "Оl")]


def _joined(chars: str) -> list[Evasion]:
    return [lambda keyword, value, c=c: (c.join(keyword + " ") + c, c.join(value)) for c in chars]


def _replaced(old: str, chars: str) -> list[Evasion]:
    return [
        lambda keyword, value, c=c: (keyword + " ", "".join(c if x in old else x for x in value))
        for c in chars
    ]


def _translated(tables: list[dict[int, Any]]) -> list[Evasion]:
    return [lambda keyword, value, t=t: (keyword + " ", value.translate(t)) for t in tables]


def _nfd(keyword: str, value: str) -> tuple[str, str]:
    return unicodedata.normalize("NFD", keyword + " "), unicodedata.normalize("NFD", value)


def _overridden(keyword: str, value: str) -> tuple[str, str]:
    return keyword + " ", "\u202e" + value[::-1]  # shown as `value`; a U+202C follows


EVASIONS: dict[str, list[Evasion]] = {
    "space": _replaced(" -", SPACES),
    "dash": _replaced("-", DASHES),
    "format": _joined(FORMAT),
    "variation": _joined(VARIATION),
    "mark": _joined(MARKS),
    "filler": _joined(FILLERS),
    "nfd": [_nfd],
    "digits": _translated(DIGIT_TABLES),
    "letters": _translated(LETTER_TABLES),
    "digit_lookalikes": _translated(DIGIT_LOOKALIKES),
    "override": [_overridden],
}


def evaded(kind: Kind, evasion: Evasion) -> Sample | None:
    """`kind` written with `evasion` in a sentence; None if the evasion changes
    nothing that matters to finding it."""
    head, value = evasion(kind.keyword, kind.value)
    if value == kind.value and (head == kind.keyword + " " or not kind.anchored):
        return None
    before = "확인 결과 " + head
    after = ("\u202c" if value.startswith("\u202e") else "") + " 로 등록되어 있습니다."
    start = len(before)
    return Sample(before + value + after, ((kind.expect, start, start + len(value)),))
