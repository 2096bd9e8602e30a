"""The documents of the evaluation set: real files of every format the appliance reads.

Each document's text is in `texts/<key>.txt` (or `.md`): one paragraph per
line (the text and Markdown files are added as they are written, blank lines
and all). What a file adds around the text (title,
header, footer, a table) and what the set declares about it (level,
effective date, the document it supersedes) is in `SPECS` below.

Classification markings are only ever in headers and footers: the bodies
name no level, so the label a document gets is the one its margins carry.

The files are the same bytes on every run: python-hwpx's object ids come
from a generator seeded with the document's key, and ZIP entries carry a
fixed time.
"""

from __future__ import annotations

import io
import random
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from unittest import mock

from tests import docfiles

TEXTS = Path(__file__).parent / "texts"
PDF_LINE_POINTS = 450  # a PDF line's width: A4 is 595 points, text starts at 72 (~40 syllables)
PDF_FONT = ("HYSMyeongJo-Medium", 12)  # what docfiles.pdf_bytes draws the body with
PDF_PAGE_LINES = 30  # lines 20 points apart between the header band and the footer band
ZIP_TIME = (2025, 1, 1, 0, 0, 0)
EXTENSIONS = {"hwpx": "hwpx", "hwp5": "hwp", "docx": "docx", "pdf": "pdf", "text": "txt"}
MARKDOWN = "markdown"  # a text file, named .md, with Markdown headings and lists

# Margins of the classified documents (the marking is all that sets their level).
RESTRICTED = "대외비"
SECRET_3 = "Ⅲ급비밀"
SECRET_2 = "Ⅱ급비밀"


@dataclass(frozen=True)
class Spec:
    key: str  # stable; questions name their gold document by it
    fmt: str  # hwpx, hwp5, docx, pdf, text or markdown
    name: str  # the file name it is added under
    title: str
    level: str = "public"  # the level declared, which is also what its markings say
    effective: str | None = None  # YYYY-MM-DD
    supersedes: str | None = None  # key of the document this one replaces
    header: str | None = None
    footer: str | None = None
    table: tuple[tuple[str, ...], ...] | None = None


@dataclass(frozen=True)
class Meta:
    level: str
    effective: str | None
    supersedes: str | None  # a key of an earlier document of the set
    title: str
    fmt: str


class Document(NamedTuple):
    """A document as a tuple: (key, file name, bytes, metadata)."""

    key: str
    name: str
    data: bytes
    meta: Meta


SPECS: tuple[Spec, ...] = (
    Spec(
        "leave-rule-2023",
        "hwpx",
        "휴가업무처리지침_2023.hwpx",
        "휴가 업무 처리 지침",
        effective="2023-03-01",
        header="○○사단 인사참모처",
        footer="- 인사참모처 -",
        table=(
            ("휴가 종류", "일수"),
            ("간부 연가", "연 21일 이내"),
            ("병사 연가", "복무기간 중 24일"),
        ),
    ),
    Spec(
        "leave-rule-2025",
        "hwpx",
        "휴가업무처리지침_2025개정.hwpx",
        "휴가 업무 처리 지침(개정)",
        effective="2025-07-01",
        supersedes="leave-rule-2023",
        header="○○사단 인사참모처",
        footer="- 인사참모처 -",
        table=(
            ("휴가 종류", "일수"),
            ("간부 연가", "연 21일 이내"),
            ("병사 연가", "복무기간 중 24일"),
        ),
    ),
    Spec(
        "security-inspection-2025",
        "docx",
        "2025년_보안점검_계획.docx",
        "2025년 보안점검 계획",
        level="restricted",
        effective="2025-02-17",
        header=RESTRICTED,
        footer=f"{RESTRICTED} / 정보보호과",
        table=(("구분", "기간", "대상"), ("보안점검", "3. 10. ~ 3. 21.", "12개 대대")),
    ),
    Spec(
        "security-inspection-2026",
        "docx",
        "2026년_보안점검_계획.docx",
        "2026년 보안점검 계획",
        level="restricted",
        effective="2026-03-02",
        header=RESTRICTED,
        footer=f"{RESTRICTED} / 정보보호과",
        table=(("구분", "기간", "대상"), ("보안점검", "4. 6. ~ 4. 17.", "14개 대대")),
    ),
    Spec(
        "budget-execution-q1",
        "hwp5",
        "2025_1분기_예산집행실적.hwp",
        "2025년 1분기 부대 운영비 집행 실적 보고",
        header="○○사단 재정과",
        table=(("구분", "금액"), ("배정액", "4억 2,000만 원"), ("1분기 집행액", "1억 1,340만 원")),
    ),
    Spec(
        "budget-execution-q2",
        "hwp5",
        "2025_2분기_예산집행실적.hwp",
        "2025년 2분기 부대 운영비 집행 실적 보고",
        header="○○사단 재정과",
        table=(("구분", "금액"), ("배정액", "4억 2,000만 원"), ("누계 집행액", "2억 3,870만 원")),
    ),
    Spec(
        "budget-guideline-2025",
        "pdf",
        "2025년도_부대운영비_집행지침.pdf",
        "2025년도 부대 운영비 집행 지침",
        effective="2025-01-01",
        header="○○사단 재정과",
        footer="- 재정과 -",
    ),
    Spec(
        "maintenance-plan",
        "hwpx",
        "2025_하반기_장비정비계획.hwpx",
        "2025년 하반기 장비 정비 계획",
        header="○○사단 군수참모처",
        table=(("장비", "수량"), ("전술차량", "146대"), ("발전기", "38대"), ("통신장비", "212점")),
    ),
    Spec(
        "supply-request",
        "docx",
        "보급품_청구_및_불출_업무지침.docx",
        "보급품 청구 및 불출 업무 지침",
        effective="2025-02-01",
        header="○○사단 군수참모처",
        footer="- 군수참모처 -",
    ),
    Spec(
        "vehicle-maintenance-report",
        "text",
        "2025_3분기_차량정비실적.txt",
        "2025년 3분기 차량 정비 실적 보고",
    ),
    Spec(
        "training-plan-2025h2",
        "pdf",
        "2025_하반기_교육훈련계획.pdf",
        "2025년 하반기 교육훈련 계획",
        level="restricted",
        header=RESTRICTED,
        footer=RESTRICTED,
        table=(
            ("과제", "시기"),
            ("체력 검정", "9. 15. ~ 9. 26."),
            ("동계 훈련", "12. 1. ~ 12. 5."),
        ),
    ),
    Spec(
        "cyber-training",
        MARKDOWN,
        "2025_정보보호교육_계획.md",
        "2025년 정보보호 교육 실시 계획",
    ),
    Spec(
        "travel-expense-2024",
        "hwp5",
        "출장여비지급지침_2024.hwp",
        "출장 및 여비 지급 지침",
        effective="2024-01-01",
        header="○○사단 재정과",
    ),
    Spec(
        "travel-expense-2026",
        "docx",
        "출장여비지급지침_2026개정.docx",
        "출장 및 여비 지급 지침(개정)",
        effective="2026-01-01",
        supersedes="travel-expense-2024",
        header="○○사단 재정과",
    ),
    Spec(
        "duty-guideline",
        "hwpx",
        "당직근무지침.hwpx",
        "당직 근무 지침",
        effective="2025-03-01",
        header="○○사단 인사참모처",
        footer="- 인사참모처 -",
        table=(
            ("구분", "근무 시간"),
            ("평일", "18:00 ~ 다음 날 08:30"),
            ("휴일", "08:30 ~ 다음 날 08:30"),
        ),
    ),
    Spec(
        "duty-roster-notice",
        "text",
        "2025년10월_당직근무편성_알림.txt",
        "2025년 10월 당직 근무 편성 알림",
    ),
    Spec(
        "civil-complaint",
        "docx",
        "민원처리지침.docx",
        "민원 처리 지침",
        effective="2025-01-01",
        header="○○사단 민원실",
        footer="- 민원실 -",
    ),
    Spec(
        "civil-complaint-report",
        "pdf",
        "2025_상반기_민원처리결과.pdf",
        "2025년 상반기 민원 처리 결과 보고",
        header="○○사단 민원실",
        footer="- 민원실 -",
        table=(("유형", "건수"), ("사격 및 훈련 소음", "61"), ("도로 및 교통 불편", "38")),
    ),
    Spec(
        "facility-management",
        "hwp5",
        "시설물관리_보수업무지침.hwp",
        "시설물 관리 및 보수 업무 지침",
        effective="2024-09-01",
        header="○○사단 시설과",
    ),
    Spec(
        "barracks-renovation",
        MARKDOWN,
        "2025_생활관개선공사_추진계획.md",
        "2025년 생활관 개선 공사 추진 계획",
    ),
    Spec(
        "meeting-safety-2025-09",
        "docx",
        "2025년9월_안전관리위원회_회의록.docx",
        "2025년 9월 안전관리위원회 회의록",
        header="○○사단 안전관리위원회",
    ),
    Spec(
        "meeting-admin-2025-11",
        "text",
        "2025년11월_행정업무조정회의_결과.txt",
        "2025년 11월 행정업무 조정회의 결과",
    ),
    Spec(
        "audit-result-2025",
        "pdf",
        "2025년_정기회계감사_결과.pdf",
        "2025년 정기 회계감사 결과 보고",
        level="restricted",
        header=RESTRICTED,
        footer=f"{RESTRICTED} - 감찰참모부",
    ),
    Spec(
        "audit-supply-2024",
        "hwpx",
        "2024년_물자관리감사_결과.hwpx",
        "2024년 물자관리 감사 결과 보고",
        header="○○사단 감찰참모부",
    ),
    Spec(
        "comms-security",
        "hwpx",
        "통신보안_운용지침.hwpx",
        "통신보안 운용 지침",
        level="secret-3",
        effective="2025-04-01",
        header=SECRET_3,
        footer=f"{SECRET_3} (보호기간: 2028. 12. 31.)",
    ),
    Spec(
        "emergency-exercise",
        "pdf",
        "2025_을지비상대비훈련_시행계획.pdf",
        "2025년 을지 비상대비 훈련 시행 계획",
        level="secret-2",
        header=SECRET_2,
        footer=f"{SECRET_2} 사본 제3호",
        table=(("일자", "주요 내용"), ("8. 18.", "비상소집"), ("8. 19.", "통합 방위 협조 회의")),
    ),
    Spec(
        "fuel-reserve",
        "hwp5",
        "2025_3분기_유류비축현황.hwp",
        "2025년 3분기 유류 비축 및 보급 현황 보고",
        level="secret-3",
        header=SECRET_3,
        footer=SECRET_3,
    ),
    Spec(
        "privacy-protection",
        "text",
        "개인정보보호_업무지침.txt",
        "개인정보 보호 업무 지침",
        effective="2024-06-01",
    ),
    Spec(
        "health-checkup",
        "docx",
        "2025_장병건강검진_시행계획.docx",
        "2025년 장병 건강검진 시행 계획",
        header="○○사단 의무참모처",
    ),
    Spec(
        "welfare-facility",
        "hwp5",
        "복지시설_운영규정.hwp",
        "복지시설 운영 규정",
        effective="2025-05-01",
        header="○○사단 복지지원과",
        table=(("시설", "평일", "휴일"), ("체력단련장", "06:00 ~ 22:00", "09:00 ~ 20:00")),
    ),
    Spec(
        "official-doc-handling",
        MARKDOWN,
        "공문서_작성_관리요령.md",
        "공문서 작성 및 관리 요령",
    ),
    Spec(
        "outside-pass",
        "hwpx",
        "외출외박_운영지침.hwpx",
        "외출 및 외박 운영 지침",
        effective="2025-03-01",
        header="○○사단 인사참모처",
    ),
    Spec(
        "fire-safety-inspection",
        "pdf",
        "2025_하반기_소방안전점검_결과.pdf",
        "2025년 하반기 소방안전 점검 결과 보고",
        header="○○사단 시설과",
        footer="- 시설과 -",
    ),
    Spec(
        "overtime-work",
        "docx",
        "시간외근무_휴일근무_운영지침.docx",
        "시간외 근무 및 휴일 근무 운영 지침",
        effective="2025-01-01",
        header="○○사단 인사참모처",
    ),
    Spec(
        "visitor-access",
        "text",
        "면회_방문객_출입절차.txt",
        "면회 및 방문객 출입 절차 안내",
    ),
    Spec(
        "annual-report-2025",
        "pdf",
        "2025년_업무추진실적_2026년_계획.pdf",
        "2025년 부대 업무 추진 실적 및 2026년 중점 추진 계획",
        header="○○사단 기획관리참모부",
        footer="- 기획관리참모부 -",
    ),
)

# Pairs a retriever must tell apart: versions of one rule, two years of one plan,
# and documents on one topic with different numbers or of a different kind.
CONFUSABLE: tuple[tuple[str, str], ...] = (
    ("leave-rule-2023", "leave-rule-2025"),  # the newer supersedes the older
    ("travel-expense-2024", "travel-expense-2026"),  # the newer supersedes the older
    ("security-inspection-2025", "security-inspection-2026"),  # the same plan, two years
    ("budget-execution-q1", "budget-execution-q2"),  # the same report, two quarters
    ("audit-result-2025", "audit-supply-2024"),  # two audits, different counts
    ("maintenance-plan", "vehicle-maintenance-report"),  # a plan and a report on maintenance
    ("civil-complaint", "civil-complaint-report"),  # the rule and a half-year's results
    ("duty-guideline", "duty-roster-notice"),  # the rule and a month's notice
    ("leave-rule-2025", "outside-pass"),  # leave and passes: dates, limits, returns
    ("security-inspection-2025", "fire-safety-inspection"),  # two inspections
    ("facility-management", "barracks-renovation"),  # facilities: the rule and a project
    ("annual-report-2025", "security-inspection-2025"),  # the year's summary repeats plans
)


def spec(key: str) -> Spec:
    for found in SPECS:
        if found.key == key:
            return found
    raise KeyError(key)


def text_of(key: str) -> str:
    """The document's source text as written."""
    fmt = spec(key).fmt
    return (TEXTS / f"{key}.{'md' if fmt == MARKDOWN else 'txt'}").read_text("utf-8")


def paragraphs(key: str) -> list[str]:
    return [line for line in text_of(key).splitlines() if line.strip()]


def documents() -> Iterator[Document]:
    """Every document of the set, each one made as a real file; superseded ones come first."""
    for item in SPECS:
        meta = Meta(item.level, item.effective, item.supersedes, item.title, item.fmt)
        yield Document(item.key, item.name, file_bytes(item), meta)


def file_bytes(item: Spec) -> bytes:
    table = [list(row) for row in item.table] if item.table else None
    margins = {"header": item.header, "footer": item.footer, "table": table, "title": item.title}
    if item.fmt in ("text", MARKDOWN):
        return text_of(item.key).encode("utf-8")
    if item.fmt == "pdf":
        return docfiles.pdf_bytes(pdf_pages(item), **margins)
    with seeded_ids(item.key):
        if item.fmt == "hwpx":
            return fixed_zip_times(docfiles.hwpx_bytes(paragraphs(item.key), **margins))
        if item.fmt == "hwp5":
            return docfiles.hwp5_bytes(paragraphs(item.key), **margins)
        if item.fmt == "docx":
            return fixed_zip_times(docfiles.docx_bytes(paragraphs(item.key), **margins))
    raise ValueError(f"no format {item.fmt!r}")


def pdf_pages(item: Spec) -> list[list[str]]:
    """The paragraphs as PDF pages of lines: each wrapped at spaces to the page's width and
    kept on one page, a new page begun when the next paragraph does not fit."""
    pages: list[list[str]] = [[]]
    room = PDF_PAGE_LINES - (len(item.table) + 1 if item.table else 0)  # the table: page 1
    for paragraph in paragraphs(item.key):
        wrapped = wrap(paragraph)
        if len(wrapped) > room and pages[-1]:
            pages.append([])
            room = PDF_PAGE_LINES
        pages[-1].extend(wrapped)
        room -= len(wrapped)
    return pages


def wrap(paragraph: str) -> list[str]:
    """The paragraph as lines no wider than PDF_LINE_POINTS, broken at spaces (so the text
    reads back the same, a line break standing where a space was)."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont

    font, size = PDF_FONT
    if font not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(font))
    lines: list[str] = []
    line = ""
    for word in paragraph.split(" "):
        candidate = f"{line} {word}" if line else word
        if line and pdfmetrics.stringWidth(candidate, font, size) > PDF_LINE_POINTS:
            lines.append(line)
            line = word
        else:
            line = candidate
    lines.append(line)
    return lines


@contextmanager
def seeded_ids(key: str) -> Iterator[None]:
    """python-hwpx's object ids drawn from a generator seeded with `key`."""
    from hwpx.oxml import _document_primitives

    rng = random.Random(key)

    def uuid4() -> uuid.UUID:
        return uuid.UUID(int=rng.getrandbits(128), version=4)

    with mock.patch.object(_document_primitives, "uuid4", uuid4):
        yield


def fixed_zip_times(data: bytes) -> bytes:
    """The same package with every entry dated ZIP_TIME, in the same order and compression."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            fixed = zipfile.ZipInfo(info.filename, ZIP_TIME)
            fixed.compress_type = info.compress_type
            fixed.external_attr = info.external_attr
            target.writestr(fixed, source.read(info))
    return out.getvalue()
