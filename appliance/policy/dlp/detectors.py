"""Detectors for Korean identifiers, military references and classification markings.

Each detector is a compiled pattern plus a validator: checksums where the
number carries one, calendar dates and gender digits for registration
numbers, a keyword anchor where the shape alone is too common (bank
accounts, service numbers), and the `mgrs` package for grid references.
Detectors see normalised text (normalize.py): a run of spaces is one space,
every dash a hyphen. Separators may be a hyphen, a dot, a space or a line
break. Number detectors read the `digits` view, where O and l stand for 0 and 1.

Every quantifier over separators is bounded or possessive, so no pattern
backtracks over a long run of anything: the work is linear in the text.
"""

from __future__ import annotations

import calendar
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import mgrs

_SEP = r"\s?+[-.一]?+\s?+"  # 一 (the Hanja for one) is drawn as a dash
_NOT_DIGIT_BEFORE = r"(?<!\d)"
_NOT_DIGIT_AFTER = r"(?!\d)"

RRN_WEIGHTS = (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5)
CORPORATE_WEIGHTS = (1, 2) * 6
BUSINESS_WEIGHTS = (1, 3, 7, 1, 3, 7, 1, 3, 5)


@dataclass(frozen=True)
class Finding:
    """A detected identifier or marking, by type and position (never kept by value)."""

    detector: str
    start: int
    end: int
    evidence: str  # how it was confirmed: "checksum", "date-and-gender", "keyword", ...
    marking: str | None = None  # for markings: restricted, cui, secret-3, secret-2, secret-1


Detector = Callable[[str], Iterator[Finding]]


def _digits(text: str) -> list[int]:
    return [int(char) for char in text if char.isdigit()]


# -- registration numbers (주민등록번호, 외국인등록번호, 법인등록번호) ----------------------

_THIRTEEN = re.compile(
    _NOT_DIGIT_BEFORE + r"(\d{2})(\d{2})(\d{2})" + _SEP + r"(\d)(\d{6})" + _NOT_DIGIT_AFTER
)
_CORPORATE_KEYWORD = re.compile(r"[법法]\s?[인人]")
_CENTURY = {1: 1900, 2: 1900, 5: 1900, 6: 1900, 3: 2000, 4: 2000, 7: 2000, 8: 2000}


def rrn_checksum_ok(digits: list[int], foreigner: bool) -> bool:
    total = sum(d * w for d, w in zip(digits, RRN_WEIGHTS, strict=False))
    check = ((13 if foreigner else 11) - total % 11) % 10
    return check == digits[12]


def corporate_checksum_ok(digits: list[int]) -> bool:
    total = sum(d * w for d, w in zip(digits, CORPORATE_WEIGHTS, strict=False))
    return (10 - total % 10) % 10 == digits[12]


def _date_ok(yy: str, mm: str, dd: str, gender: int) -> bool:
    century = _CENTURY.get(gender)
    if century is None:
        return False
    year, month, day = century + int(yy), int(mm), int(dd)
    return 1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]


def registration_numbers(text: str) -> Iterator[Finding]:
    """13-digit numbers: resident (gender digit 1-4) or foreigner (5-8) with a
    valid date, else corporate after the keyword 법인 with a valid checksum.

    Numbers issued since October 2020 carry no valid checksum, so a valid
    date and gender digit is enough; the checksum only raises the evidence.
    A valid resident number stays one after 법인: about one in ten passes the
    corporate checksum too, and the word is easy to put in front.
    """
    for match in _THIRTEEN.finditer(text):
        yy, mm, dd, gender_text, _ = match.groups()
        digits = _digits(match.group(0))
        gender = int(gender_text)
        if _date_ok(yy, mm, dd, gender):
            foreigner = gender >= 5
            checksum = rrn_checksum_ok(digits, foreigner)
            evidence = "checksum" if checksum else "date-and-gender"
            name = "foreigner_rn" if foreigner else "rrn"
            yield Finding(name, match.start(), match.end(), evidence)
        elif corporate_checksum_ok(digits) and _CORPORATE_KEYWORD.search(
            text, max(0, match.start() - 12), match.start()
        ):
            yield Finding("corporate_rn", match.start(), match.end(), "keyword-and-checksum")


# -- 사업자등록번호 -------------------------------------------------------------------

_BUSINESS = re.compile(
    _NOT_DIGIT_BEFORE + r"\d{3}" + _SEP + r"\d{2}" + _SEP + r"\d{5}" + _NOT_DIGIT_AFTER
)


def business_checksum_ok(digits: list[int]) -> bool:
    total = sum(d * w for d, w in zip(digits, BUSINESS_WEIGHTS, strict=False))
    total += digits[8] * 5 // 10
    return (10 - total % 10) % 10 == digits[9]


def business_numbers(text: str) -> Iterator[Finding]:
    for match in _BUSINESS.finditer(text):
        if business_checksum_ok(_digits(match.group(0))):
            yield Finding("business_rn", match.start(), match.end(), "checksum")


# -- 여권번호, 운전면허번호, 전화번호 --------------------------------------------------------

_PASSPORT = re.compile(r"(?<![A-Za-z0-9])[MSRODG](?:\d{8}|\d{3}[A-Z]\d{4})(?![A-Za-z0-9])")
_REGIONS = "서울|부산|경기|강원|충북|충남|전북|전남|경북|경남|제주|대구|인천|광주|대전|울산"
_DRIVER = re.compile(
    rf"(?:{_NOT_DIGIT_BEFORE}(?:1[1-9]|2[0-8])|(?:{_REGIONS})\s?)"
    + _SEP
    + r"\d{2}"
    + _SEP
    + r"\d{6}"
    + _SEP
    + r"\d{2}"
    + _NOT_DIGIT_AFTER
)
# The area code may stand in brackets, or before one: (02) 748-1234, 02) 748-1234.
# An opening bracket stays outside the finding.
_PHONE = re.compile(
    r"(?<![\d+])(?:\(\s?)?((?:\+\s?82"
    + _SEP
    + r"(?:\(0\)\s?)?0?(?:1[016789]|2|[3-6][1-5]|70)"
    + r"|(?:01[016789]|0(?:2|[3-6][1-5]|70))(?:\s?\))?)"
    + _SEP
    + r"\d{3,4}"
    + _SEP
    + r"\d{4}"
    + _NOT_DIGIT_AFTER
    + ")"
)


def phones(text: str) -> Iterator[Finding]:
    for match in _PHONE.finditer(text):
        yield Finding("phone", match.start(1), match.end(1), "pattern")


def _simple(name: str, pattern: re.Pattern[str], evidence: str) -> Detector:
    def detect(text: str) -> Iterator[Finding]:
        for match in pattern.finditer(text):
            yield Finding(name, match.start(), match.end(), evidence)

    return detect


# -- anchored by a keyword: bank accounts, 군번 -------------------------------------------

_BANKS = (
    "국민|신한|우리|하나|농협|기업|산업|수협|외환|씨티|SC제일|카카오뱅크|케이뱅크|토스뱅크|우체국"
)
# Digit groups joined by separators; the groups are counted in Python, not by
# backtracking over the ways to split a run of digits.
_ACCOUNT = re.compile(
    rf"(?:계좌(?:번호)?|통장|입금|예금주|(?:{_BANKS})(?:은행)?)[^\d\n]{{0,12}}?"
    rf"({_NOT_DIGIT_BEFORE}\d++(?:(?:\s?+[-.]|\s)\s?+\d++)*+)"
)
_SERVICE = re.compile(
    rf"[군軍]\s?[번番][^\d\n]{{0,8}}?({_NOT_DIGIT_BEFORE}\d{{2}}{_SEP}\d{{5,8}}{_NOT_DIGIT_AFTER})"
)
_GROUP = re.compile(r"\d+")


def bank_accounts(text: str) -> Iterator[Finding]:
    for match in _ACCOUNT.finditer(text):
        groups = _GROUP.findall(match.group(1))
        if len(groups) <= 5 and 10 <= sum(map(len, groups)) <= 14:
            yield Finding("bank_account", match.start(1), match.end(1), "keyword")


def service_numbers(text: str) -> Iterator[Finding]:
    for match in _SERVICE.finditer(text):
        yield Finding("service_number", match.start(1), match.end(1), "keyword")


# -- MGRS grid references ---------------------------------------------------------------

_MGRS = re.compile(
    r"(?<![A-Za-z0-9])(\d{1,2}[C-HJ-NP-X])\s?([A-HJ-NP-Z]{2})\s?"
    r"(\d{2,5}\s\d{2,5}|\d{4,10})(?![A-Za-z0-9])"
)
_converter = mgrs.MGRS()


def grid_references(text: str) -> Iterator[Finding]:
    for match in _MGRS.finditer(text):
        zone, square, numbers = match.groups()
        parts = numbers.split()
        if len("".join(parts)) % 2 or (len(parts) == 2 and len(parts[0]) != len(parts[1])):
            continue
        try:
            with warnings.catch_warnings():  # "Latitude Warning": near a band edge, still valid
                warnings.simplefilter("ignore", RuntimeWarning)
                _converter.toLatLon(zone + square + "".join(parts))
        except Exception:
            continue
        yield Finding("mgrs", match.start(), match.end(), "mgrs")


# -- classification markings --------------------------------------------------------------

# English markings are upper case; Korean particles attach to them directly
# ("SECRET을"), so their boundaries are Latin letters, not \b.
_CAVEATS = r"(?://[A-Z0-9,/-]+(?: [A-Z0-9,/-]+)*)?"  # SECRET//REL TO KOR, USA


def _english(words: str) -> str:
    return rf"(?<![A-Za-z]){words}(?![A-Za-z])"


# Korean markings in Hangul, Hanja (traditional, simplified, Japanese) or a mix:
# Ⅱ급비밀, 2급 비밀, 이급비밀, Ⅱ級秘密, 二級秘密, 비밀(Ⅱ급), 秘密(Ⅱ級), 대외비, 對外秘.
# NFKD has made Ⅱ "II"; l and | are drawn as I too.
_GRADE = r"\s?[급級级]"
_SECRET = r"[비秘祕]\s?[밀密]"
_STROKES = r"[Iil|]{1,3}"
_LEVEL_WORDS = {
    **dict.fromkeys("1일一壹壱", 1),
    **dict.fromkeys("2이二貳贰弐", 2),
    **dict.fromkeys("3삼三參参叁", 3),
}
_LEVEL = rf"(?<![A-Za-z0-9|])(?P<level>{_STROKES}|[{''.join(_LEVEL_WORDS)}])"
# After the word the level is never 이, the subject particle: 비밀이 급히 ...
_LEVEL_AFTER = rf"(?<![A-Za-z0-9|])(?P<after>{_STROKES}|[123一二三壹貳參壱弐参贰叁])"
_TOP_SECRET = _english(r"TOP[\s_-]?SECRET")
_CUI = _english("CUI") + "|" + _english(r"CONTROLLED\s?UNCLASSIFIED\s?INFORMATION")
_MARKING = re.compile(
    rf"{_LEVEL}{_GRADE}\s?{_SECRET}"
    rf"|{_SECRET}\s?[(\[]?\s?(?:제\s?)?{_LEVEL_AFTER}{_GRADE}(?:\s?[)\]])?"
    rf"|(?P<secret1>{_TOP_SECRET}{_CAVEATS})"
    rf"|(?P<secret3>{_english('CONFIDENTIAL')}{_CAVEATS})"
    rf"|(?P<secret2>{_english('SECRET')}{_CAVEATS})"
    r"|(?P<restricted>[대對对対大]\s?[외外]\s?[비秘祕])"
    rf"|(?P<cui>{_CUI})"
)
_MARKING_IDS = {
    "secret1": "secret-1",
    "secret2": "secret-2",
    "secret3": "secret-3",
    "restricted": "restricted",
    "cui": "cui",
}


def _marking(match: re.Match[str]) -> str:
    level = match.group("level") or match.group("after")
    if level is None:
        return _MARKING_IDS[match.lastgroup or ""]
    return f"secret-{_LEVEL_WORDS.get(level, len(level))}"  # strokes: I, II, III


def markings(text: str) -> Iterator[Finding]:
    for match in _MARKING.finditer(text):
        yield Finding("marking", match.start(), match.end(), "marking", _marking(match))


# Number detectors read the `digits` view of the text, the others the text itself.
NUMBERS: tuple[Detector, ...] = (
    registration_numbers,
    business_numbers,
    _simple("driver_license", _DRIVER, "pattern"),
    phones,
    bank_accounts,
    service_numbers,
    grid_references,  # MGRS letters are never I or O
)
WORDS: tuple[Detector, ...] = (
    _simple("passport", _PASSPORT, "pattern"),
    markings,
)
