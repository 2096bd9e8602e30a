"""Drafts rendered as HWPX, DOCX and Markdown, read back with the libraries and our own reader.

The fixed answer is the kind a model writes for a 공문: a heading, "1. 가. 1)"
numbering, lists with a nested item, a pipe table with Korean cells and a
ragged row, bold, italic and code, and a code fence. Each format is rendered
once per module (python-hwpx takes a fraction of a second a document).
"""

from __future__ import annotations

import datetime
import getpass
import io
import subprocess
import sys
import zipfile
from xml.etree import ElementTree

import docx
import pytest
from hwpx.document import HwpxDocument

from appliance.documents.parsers.docx import parse as parse_docx
from appliance.documents.parsers.hwpx import parse as parse_hwpx
from appliance.drafts import (
    FORMATS,
    Draft,
    Heading,
    ListBlock,
    ListItem,
    Marking,
    Paragraph,
    Run,
    Section,
    Table,
    parse_markdown,
    render,
)
from appliance.drafts.render import MAX_TEXT_BYTES, prepare
from appliance.errors import UsageError

ANSWER = """# 훈련 일정 변경

1. 관련: 가. 예비군 훈련 계획

가. 목적: **대비태세** 점검
나. 범위: 전 부대

- 일정은 **다음 주**로 옮깁니다.
  - 세부 시간은 *추후* 통보
- 장소는 `연병장`

3. 셋째 항목
4. 넷째 항목

| 부대 | 날짜 |
|---|:---:|
| 제1대대 | 12. 9. |
| 제2대대 |

```
점검표  작성
  들여쓰기 유지
```
"""
NOTICE = "예고문: 2029. 12. 31.까지 Ⅲ급비밀, 이후 일반문서로 재분류"
COPY = "사본 번호: 제7호"
CLASSIFIED = Marking("Ⅲ급비밀", NOTICE, COPY)
KST = datetime.timezone(datetime.timedelta(hours=9))
CREATED = datetime.datetime(2025, 3, 4, 9, 30, 15, tzinfo=KST)
SECTIONS = (Section("질문", "훈련 일정을 정리해 주십시오."), Section("답변", ANSWER))
DRAFT = Draft("훈련 일정 변경 공문", CLASSIFIED, SECTIONS, CREATED)
PUBLIC = Draft("공개 문서", Marking("공개"), (Section(None, ANSWER),), CREATED)
HOSTILE = "\x00\x01\x08\x0b\x0c\x1b\x7f\x85\ud800\udfff\ufffe\uffff"


@pytest.fixture(scope="module")
def hwpx_bytes() -> bytes:
    return render(DRAFT, "hwpx")


@pytest.fixture(scope="module")
def docx_bytes() -> bytes:
    return render(DRAFT, "docx")


def xml_text(data: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(data)) as package:
        return "".join(
            package.read(name).decode("utf-8")
            for name in package.namelist()
            if name.endswith((".xml", ".hpf", ".rdf"))
        )


# -- the Markdown parser ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "blocks"),
    [
        ("## 제목 ##", (Heading(2, (Run("제목"),)),)),
        ("첫 줄\n둘째 줄", (Paragraph((Run("첫 줄 둘째 줄"),)),)),
        ("가. 하나\n나. 둘", (Paragraph((Run("가. 하나"),)), Paragraph((Run("나. 둘"),)))),
        ("앞\n\n---\n\n뒤", (Paragraph((Run("앞"),)), Paragraph((Run("뒤"),)))),
        (
            "1. 가. 1) 세부",
            (ListBlock(True, (ListItem((Run("가. 1) 세부"),)),)),),
        ),
        (
            "- 위\n  - 아래\n- 끝",
            (
                ListBlock(
                    False,
                    (
                        ListItem((Run("위"),), (ListBlock(False, (ListItem((Run("아래"),)),)),)),
                        ListItem((Run("끝"),)),
                    ),
                ),
            ),
        ),
        (
            "3) 셋\n4) 넷",
            (ListBlock(True, (ListItem((Run("셋"),)), ListItem((Run("넷"),))), 3, ")"),),
        ),
        (
            "| 가 | 나 |\n|---|:-:|\n| 1 |\n| 2 | 3 | 4 |",
            (
                Table(
                    ((Run("가"),), (Run("나"),)),
                    (((Run("1"),), ()), ((Run("2"),), (Run("3"),))),
                ),
            ),
        ),
        (
            "```py\n  x = 1\n\n```",
            (Paragraph((Run("  x = 1\n", code=True),), preformatted=True),),
        ),
        (
            "**굵게**와 *기울임*, `코드`, \\*별\\*, a_b_c",
            (
                Paragraph(
                    (
                        Run("굵게", bold=True),
                        Run("와 "),
                        Run("기울임", italic=True),
                        Run(", "),
                        Run("코드", code=True),
                        Run(", *별*, a_b_c"),
                    )
                ),
            ),
        ),
        ("***둘 다***", (Paragraph((Run("둘 다", bold=True, italic=True),)),)),
    ],
)
def test_markdown_blocks(text, blocks) -> None:
    assert parse_markdown(text) == blocks


def test_unclosed_markers_stay_text_and_take_linear_time() -> None:
    text = "**a " * 20_000 + "`b " * 20_000 + "__c _d " * 10_000
    (paragraph,) = parse_markdown(text)
    assert isinstance(paragraph, Paragraph)
    assert len("".join(run.text for run in paragraph.runs)) > 100_000


# -- HWPX ------------------------------------------------------------------------


def test_hwpx_holds_the_blocks_the_table_and_the_marking(hwpx_bytes) -> None:
    document = HwpxDocument.open(hwpx_bytes)
    texts = [paragraph.text for paragraph in document.paragraphs]
    assert texts[:3] == [COPY, "훈련 일정 변경 공문", "질문"]  # the copy number on top
    assert texts[-1] == NOTICE  # the 예고문 at the end
    for expected in ("훈련 일정 변경", "관련: 가. 예비군 훈련 계획", "가. 목적: 대비태세 점검"):
        assert expected in texts
    assert "일정은 다음 주로 옮깁니다." in texts
    assert "점검표  작성\n  들여쓰기 유지" in texts  # the fence, verbatim
    assert not any(marker in text for text in texts for marker in ("**", "`", "*추후*"))
    (table,) = [table for paragraph in document.paragraphs for table in paragraph.tables]
    cells = [[cell.text for cell in row.cells] for row in table.rows]
    assert cells == [["부대", "날짜"], ["제1대대", "12. 9."], ["제2대대", ""]]
    for section in document.sections:
        assert [h.text for h in section.properties.headers] == ["Ⅲ급비밀"]
        assert [f.text for f in section.properties.footers] == ["Ⅲ급비밀"]


def test_hwpx_lists_are_hancom_lists_and_headings_outline_styles(hwpx_bytes) -> None:
    document = HwpxDocument.open(hwpx_bytes)
    by_text = {paragraph.text: paragraph for paragraph in document.paragraphs}
    with zipfile.ZipFile(io.BytesIO(hwpx_bytes)) as package:
        header = ElementTree.fromstring(package.read("Contents/header.xml"))
    shapes = {e.get("id"): e for e in header.iter() if e.tag.endswith("}paraPr")}
    numbers = {e.get("id"): e for e in header.iter() if e.tag.endswith("}numbering")}
    headings = {}
    for text, kind in (("일정은 다음 주로 옮깁니다.", "BULLET"), ("셋째 항목", "NUMBER")):
        shape = shapes[by_text[text].para_pr_id_ref]
        (headings[text],) = [e for e in shape.iter() if e.tag.endswith("}heading")]
        assert headings[text].get("type") == kind
    heading = headings["셋째 항목"]
    assert numbers[heading.get("idRef")].get("start") == "3"  # where the answer started it
    assert by_text["훈련 일정 변경"].style_id_ref != "0"  # 개요 2: a heading, not body text


def test_our_reader_finds_the_marking_in_header_and_footer(hwpx_bytes) -> None:
    parsed = parse_hwpx(hwpx_bytes)
    kinds = {(block.kind, block.text) for block in parsed.blocks}
    assert ("header", "Ⅲ급비밀") in kinds
    assert ("footer", "Ⅲ급비밀") in kinds
    assert ("body", NOTICE) in kinds
    assert ("body", COPY) in kinds
    assert any(kind == "table" and "제1대대 | 12. 9." in text for kind, text in kinds)
    assert parsed.title == "훈련 일정 변경 공문"


def test_an_unclassified_draft_has_no_notice_or_copy_number() -> None:
    for fmt in FORMATS:
        data = render(PUBLIC, fmt)
        text = data.decode("utf-8") if fmt == "md" else xml_text(data)
        assert "공개" in text
        assert "예고문" not in text
        assert "사본 번호" not in text
    parsed = parse_hwpx(render(PUBLIC, "hwpx"))
    assert {b.text for b in parsed.blocks if b.kind in ("header", "footer")} == {"공개"}


def test_hwpx_metadata_names_nobody(hwpx_bytes) -> None:
    with zipfile.ZipFile(io.BytesIO(hwpx_bytes)) as package:
        described = package.read("Contents/content.hpf").decode("utf-8")
        assert {entry.date_time for entry in package.infolist()} == {(2025, 3, 4, 0, 30, 14)}
    assert "<opf:title>훈련 일정 변경 공문</opf:title>" in described
    assert "2025-03-04T00:30:15Z" in described
    assert "synthetic-fixture-author" not in described
    assert getpass.getuser() not in described


# -- DOCX ------------------------------------------------------------------------


def test_docx_styles_table_and_marking(docx_bytes) -> None:
    document = docx.Document(io.BytesIO(docx_bytes))
    paragraphs = document.paragraphs
    assert (paragraphs[0].text, paragraphs[-1].text) == (COPY, NOTICE)
    styles = {p.text: p.style.name for p in paragraphs}
    assert styles["훈련 일정 변경 공문"] == "Title"
    assert styles["답변"] == "Heading 1"
    assert styles["훈련 일정 변경"] == "Heading 2"
    assert styles["일정은 다음 주로 옮깁니다."] == "List Bullet"
    assert styles["세부 시간은 추후 통보"] == "List Bullet 2"
    assert styles["관련: 가. 예비군 훈련 계획"] == "List Number"
    assert styles["가. 목적: 대비태세 점검"] == "Normal"
    bold = [run.text for p in paragraphs for run in p.runs if run.bold]
    assert bold == ["대비태세", "다음 주"]
    assert not any("**" in p.text or "`" in p.text for p in paragraphs)
    table = document.tables[0]
    assert table.style.name == "Table Grid"
    assert [[c.text for c in row.cells] for row in table.rows] == [
        ["부대", "날짜"],
        ["제1대대", "12. 9."],
        ["제2대대", ""],
    ]
    for section in document.sections:
        assert [p.text for p in section.header.paragraphs] == ["Ⅲ급비밀"]
        assert [p.text for p in section.footer.paragraphs] == ["Ⅲ급비밀"]
    marginals = {(b.kind, b.text) for b in parse_docx(docx_bytes).blocks if b.kind != "body"}
    assert {("header", "Ⅲ급비밀"), ("footer", "Ⅲ급비밀")} <= marginals


def test_docx_ordered_lists_restart_at_their_own_number(docx_bytes) -> None:
    document = docx.Document(io.BytesIO(docx_bytes))
    numbered = {
        p.text: p._p.pPr.numPr.numId.val
        for p in document.paragraphs
        if p._p.pPr is not None and p._p.pPr.numPr is not None
    }
    assert numbered["셋째 항목"] == numbered["넷째 항목"] != numbered["관련: 가. 예비군 훈련 계획"]
    numbering = document.part.numbering_part.element.xml
    assert '<w:startOverride w:val="3"/>' in numbering


def test_docx_properties_name_nobody(docx_bytes) -> None:
    properties = docx.Document(io.BytesIO(docx_bytes)).core_properties
    assert properties.author == properties.last_modified_by == ""
    assert properties.title == "훈련 일정 변경 공문"
    assert properties.created == properties.modified == CREATED
    assert "python-docx" not in xml_text(docx_bytes)
    assert getpass.getuser() not in properties.author


# -- Markdown --------------------------------------------------------------------


def test_markdown_carries_the_marking_first_and_last() -> None:
    text = render(DRAFT, "md").decode("utf-8")
    lines = text.strip().split("\n")
    assert "Ⅲ급비밀" in lines[0]
    assert "Ⅲ급비밀" in lines[-1]
    assert [line for line in lines[1:6] if line] == [COPY, NOTICE]
    assert "# 훈련 일정 변경 공문" in lines
    assert "| 제1대대 | 12. 9. |" in lines
    assert "| 제2대대 |  |" in lines
    assert "- 일정은 **다음 주**로 옮깁니다." in lines
    assert "  - 세부 시간은 *추후* 통보" in lines
    assert "3. 셋째 항목" in lines


def test_markdown_output_parses_back_to_the_same_blocks() -> None:
    blocks = parse_markdown(render(DRAFT, "md").decode("utf-8"))
    expected = tuple(
        Heading(block.level + 1, block.runs) if isinstance(block, Heading) else block
        for block in prepare(DRAFT).blocks
    )
    assert blocks[3] == Heading(1, (Run("훈련 일정 변경 공문"),))  # after marking, copy, notice
    assert blocks[4:-1] == expected


def test_markdown_escapes_what_would_read_as_markup() -> None:
    text = "\\# 아님\n\n1\\. 목록 아님\n\n\\- 아님\n\n\\*\\*굵지 않음\\*\\*"
    draft = Draft("t", Marking("공개"), (Section(None, text),), CREATED)
    blocks = parse_markdown(render(draft, "md").decode("utf-8"))
    assert blocks[2:-1] == parse_markdown(text)
    assert all(isinstance(block, Paragraph) for block in blocks[2:-1])


# -- hostile and oversized input -------------------------------------------------


def test_controls_and_lone_surrogates_are_removed_before_the_libraries() -> None:
    text = f"# 제{HOSTILE}목\n\n본문{HOSTILE}\n\n| 가{HOSTILE} | 나 |\n|---|---|\n| 다 |"
    draft = Draft(f"제{HOSTILE}목", Marking(f"대외{HOSTILE}비"), (Section(HOSTILE, text),), CREATED)
    for fmt in FORMATS:
        data = render(draft, fmt)
        text_out = data.decode("utf-8") if fmt == "md" else xml_text(data)
        assert "대외비" in text_out
        assert not set(HOSTILE) & set(text_out)


def test_an_oversized_draft_is_refused_in_one_sentence() -> None:
    huge = Draft("t", Marking("공개"), (Section(None, "가" * (MAX_TEXT_BYTES // 3 + 1)),), CREATED)
    with pytest.raises(UsageError) as refused:
        render(huge, "hwpx")
    assert refused.value.code == "draft_invalid"
    many = Draft("t", Marking("공개"), (Section(None, "\n\n".join(["문단"] * 10_001)),), CREATED)
    with pytest.raises(UsageError, match="too long"):
        render(many, "docx")


@pytest.mark.parametrize(
    "text",
    [
        "| " + " | ".join(["열"] * 51) + " |\n|" + "---|" * 51,  # too wide
        "| a |\n|---|\n" + "| 1 |\n" * 2001,  # too long
        "".join(f"{'  ' * depth}- {depth}\n" for depth in range(10)),  # too deep
        "**a** b " * 201,  # one paragraph, too many formatted pieces
    ],
)
def test_limits_are_usage_errors(text) -> None:
    with pytest.raises(UsageError) as refused:
        render(Draft("t", Marking("공개"), (Section(None, text),), CREATED), "md")
    assert refused.value.code == "draft_invalid"


@pytest.mark.parametrize(
    ("draft", "fmt"),
    [
        (Draft("t", Marking("공개"), (), CREATED.replace(tzinfo=None)), "md"),
        (Draft("t", Marking(" \x00 "), (), CREATED), "md"),
        (DRAFT, "pdf"),
    ],
)
def test_invalid_drafts_are_usage_errors(draft, fmt) -> None:
    with pytest.raises(UsageError) as refused:
        render(draft, fmt)
    assert refused.value.code == "draft_invalid"


def test_a_library_failure_is_a_usage_error(monkeypatch) -> None:
    import appliance.drafts.docx

    def broken(_):
        raise ValueError("deep inside python-docx")

    monkeypatch.setattr(appliance.drafts.docx, "render_docx", broken)
    with pytest.raises(UsageError) as failed:
        render(DRAFT, "docx")
    assert failed.value.code == "draft_failed"


# -- determinism and weight ------------------------------------------------------


def test_the_same_draft_gives_the_same_bytes(hwpx_bytes, docx_bytes) -> None:
    assert render(DRAFT, "hwpx") == hwpx_bytes
    assert render(DRAFT, "docx") == docx_bytes
    assert render(DRAFT, "md") == render(DRAFT, "md")


def test_importing_drafts_loads_neither_library() -> None:
    code = (
        "import sys, appliance.drafts\n"
        "assert not {'hwpx', 'docx', 'lxml'} & {m.split('.')[0] for m in sys.modules}"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
