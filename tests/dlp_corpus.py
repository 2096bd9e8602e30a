"""A labelled DLP corpus: identifiers in Korean admin sentences, evasions, and clean text.

Deterministic (seeded). Each sample is a text and the (detector, start, end)
spans it must yield; clean samples must yield nothing. Shared by the tests
(recall and precision per detector) and bench/dlp.py.
"""

from __future__ import annotations

import calendar
import random
from dataclasses import dataclass

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
