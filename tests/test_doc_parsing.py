"""Document parsing: every format from a real file, refusals, and the parser child's sandbox.

Content is checked with the parsers in-process (fast); the sandbox is checked
end to end with real children, forked by the fork server or spawned, some of
them misbehaving on purpose (tests/docfiles.py run as a module), under small
limits.
"""

from __future__ import annotations

import os
import resource
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from appliance.documents import forkserver, sandbox
from appliance.documents.formats import sniff, sniff_family
from appliance.documents.model import Block, Parsed
from appliance.documents.parsers import clean_text, parse
from appliance.documents.sandbox import ParseLimits, ParserChild, parse_document
from appliance.errors import DocumentError
from tests import docfiles

MARKING = "Ⅱ급비밀"
HEADER = f"대외비 {MARKING}"
FOOTER = "SECRET - 1 -"
TABLE = [["구분", "내용"], ["일시", "2025. 3. 1."]]
ROWS = "구분 | 내용\n일시 | 2025. 3. 1."
FOOTNOTE = "각주: 근거 규정"
PARAGRAPHS = ["국방 행정 보고서", "둘째 문단입니다."]
MIB = 1 << 20


@pytest.fixture(scope="module", autouse=True)
def _no_fork_server_left():
    yield
    sandbox.stop_fork_server()


def document(maker, **extra) -> bytes:
    return maker(PARAGRAPHS, header=HEADER, footer=FOOTER, table=TABLE, footnote=FOOTNOTE, **extra)


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    return {
        "hwpx": document(docfiles.hwpx_bytes, title="보고서 제목"),
        "hwp5": document(docfiles.hwp5_bytes, title="보고서 제목"),
        "docx": document(docfiles.docx_bytes, title="보고서 제목", nested=[["안쪽", "표"]]),
        "pdf": docfiles.pdf_bytes(
            [PARAGRAPHS, ["셋째 쪽 본문"]],
            header=HEADER,
            footer=FOOTER,
            table=TABLE,
            title="보고서 제목",
        ),
        "text": "\ufeff# 보고서 제목\n\n국방 행정 보고서\n둘째 줄\n\n\n셋째 문단\n".encode(),
    }


def kinds(parsed: Parsed, kind: str) -> list[Block]:
    return [block for block in parsed.blocks if block.kind == kind]


# Each format, in-process ------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["hwpx", "hwp5"])
def test_hwp_formats_keep_headers_footers_tables_and_footnotes(files, fmt) -> None:
    parsed = parse(files[fmt])
    assert parsed.format == fmt
    assert parsed.title == "보고서 제목"
    assert [block.text for block in kinds(parsed, "header")] == [HEADER]  # once, not per page
    assert [block.text for block in kinds(parsed, "footer")] == [FOOTER]
    assert [block.text for block in kinds(parsed, "table")] == [ROWS]
    assert [block.text for block in kinds(parsed, "footnote")] == [FOOTNOTE]
    assert [block.text for block in kinds(parsed, "body")] == PARAGRAPHS
    assert {block.section for block in parsed.blocks} == {1}
    assert {block.page for block in parsed.blocks} == {None}


def test_docx_keeps_headers_footers_nested_tables_and_footnotes(files) -> None:
    parsed = parse(files["docx"])
    assert parsed.format == "docx"
    assert parsed.title == "보고서 제목"
    assert [block.text for block in kinds(parsed, "header")] == [HEADER]
    assert [block.text for block in kinds(parsed, "footer")] == [FOOTER]
    assert [block.text for block in kinds(parsed, "table")] == [ROWS, "안쪽 | 표"]
    assert [block.text for block in kinds(parsed, "footnote")] == [FOOTNOTE]
    assert [block.text for block in kinds(parsed, "body")] == PARAGRAPHS
    assert {block.section for block in parsed.blocks} == {1}


@pytest.mark.parametrize("fmt", ["hwpx", "docx"])
def test_each_section_has_its_own_header(fmt) -> None:
    parsed = parse(docfiles.two_sections(fmt))
    assert len(parsed.blocks) == 4
    assert {(block.kind, block.text, block.section) for block in parsed.blocks} == {
        ("header", "1장 머리말", 1),
        ("body", "1장 본문", 1),
        ("header", "2장 머리말", 2),
        ("body", "2장 본문", 2),
    }


def test_pdf_pages_have_their_header_and_footer(files) -> None:
    parsed = parse(files["pdf"])
    assert (parsed.format, parsed.pages, parsed.title) == ("pdf", 2, "보고서 제목")
    assert [(block.text, block.page) for block in kinds(parsed, "header")] == [
        (HEADER, 1),
        (HEADER, 2),
    ]
    assert [(block.text, block.page) for block in kinds(parsed, "footer")] == [
        (FOOTER, 1),
        (FOOTER, 2),
    ]
    first, second = kinds(parsed, "body")
    assert first.page == 1
    assert first.text.startswith("\n".join(PARAGRAPHS))
    assert "구분" in first.text
    assert "2025. 3. 1." in first.text  # a PDF table is text on the page: its cells are kept
    assert (second.text, second.page) == ("셋째 쪽 본문", 2)


def test_text_and_markdown(files) -> None:
    parsed = parse(files["text"])
    assert parsed.format == "text"
    assert parsed.title == "보고서 제목"
    assert [block.text for block in parsed.blocks] == [
        "# 보고서 제목",
        "국방 행정 보고서\n둘째 줄",
        "셋째 문단",
    ]
    utf16 = parse("\ufeff첫 줄\r\n둘째 줄".encode("utf-16-le"))
    assert utf16.text == "첫 줄\n둘째 줄"


def test_the_title_falls_back_to_the_first_body_line() -> None:
    parsed = parse(docfiles.hwpx_bytes(["  첫 줄이 제목  ", "본문"], header=HEADER))
    assert parsed.title == "첫 줄이 제목"
    long = parse(("가" * 300).encode())
    assert len(long.title) <= 121


def test_private_use_characters_are_mapped_or_dropped() -> None:
    assert clean_text("\uf0b7 항목\ue0bc\U000f0001\U00100000 끝\uf8ff") == "• 항목 끝"
    assert clean_text("줄\r\n바꿈\x00\x1b") == "줄\n바꿈"
    hwpx = parse(docfiles.hwpx_bytes(["\uf0a7 첫째\ue0c3 항목"], header="대외비\uf09f"))
    assert [block.text for block in hwpx.blocks] == ["대외비●", "■ 첫째 항목"]
    text = parse("\uf0b7 목록\ue000".encode())
    assert text.text == "• 목록"
    for parsed in (hwpx, text):
        assert not any(0xE000 <= ord(char) <= 0xF8FF for char in parsed.text)


# Sniffing ---------------------------------------------------------------------------------


def test_sniffing_reads_bytes_never_names(files, tmp_path: Path) -> None:
    misnamed = tmp_path / "보고서.hwp"
    misnamed.write_bytes(files["hwpx"])
    data = misnamed.read_bytes()
    assert sniff(data) == "hwpx"
    assert parse(data).format == "hwpx"
    for fmt, family in [("hwpx", "zip"), ("docx", "zip"), ("hwp5", "ole"), ("pdf", "pdf")]:
        assert sniff_family(files[fmt][:4096]) == family
        assert sniff(files[fmt]) == fmt
    assert sniff_family(files["text"][:4096]) == "text"


@pytest.mark.parametrize(
    ("data", "code", "says"),
    [
        (docfiles.HWPML, "unsupported_format", "HWPML"),
        (docfiles.HWP3, "unsupported_format", "HWP 3"),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "unsupported_format", "PNG"),
        (bytes(range(256)) * 4, "unsupported_format", "not a supported document"),
        ("텍스트".encode("cp949"), "unsupported_format", "not a supported document"),
    ],
)
def test_what_no_parser_takes_is_refused_from_its_first_bytes(data, code, says) -> None:
    with pytest.raises(DocumentError, match=says) as refused:
        sniff_family(data[:4096])
    assert refused.value.code == code


def test_containers_that_are_not_documents_are_named() -> None:
    cases = [
        (docfiles.legacy_doc(), "unsupported_format", "legacy Word"),
        (docfiles.ole_bytes({"Workbook": bytes(600)}), "unsupported_format", "Excel"),
        (docfiles.ole_bytes({"Other": bytes(600)}), "unsupported_format", "not an HWP"),
        (docfiles.encrypted_docx(), "protected", "password-protected Office"),
        (
            docfiles.raw_zip([docfiles._stored("[Content_Types].xml", b"<T/>")]),
            "unsupported_format",
            "neither an HWPX nor a DOCX",
        ),
        (
            docfiles.raw_zip(
                [
                    docfiles._stored("[Content_Types].xml", b"<T/>"),
                    docfiles._stored("xl/workbook.xml", b"<w/>"),
                ]
            ),
            "unsupported_format",
            "XLSX",
        ),
    ]
    for data, code, says in cases:
        with pytest.raises(DocumentError, match=says) as refused:
            sniff(data)
        assert refused.value.code == code


# Protected documents ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "says"),
    [("password", "password"), ("distribution", "distribution"), ("drm", "DRM")],
)
def test_protected_hwp5_is_refused_without_its_placeholder(kind, says) -> None:
    with pytest.raises(DocumentError, match=says) as refused:
        parse(docfiles.protected_hwp5(kind))
    assert refused.value.code == "protected"
    assert "배포용 문서입니다" not in refused.value.message
    assert "작전 계획" not in refused.value.message


def test_an_encrypted_hwpx_is_refused() -> None:
    with pytest.raises(DocumentError, match="encrypted") as refused:
        parse(docfiles.encrypted_hwpx())
    assert refused.value.code == "protected"


def test_a_pdf_that_needs_a_password_is_refused_one_with_only_an_owner_password_is_read() -> None:
    plain = docfiles.pdf_bytes([["열람 가능한 본문"]])
    with pytest.raises(DocumentError, match="password") as refused:
        parse(docfiles.encrypted_pdf(plain))
    assert refused.value.code == "protected"
    assert "열람 가능한 본문" in parse(docfiles.encrypted_pdf(plain, user_password="")).text


def test_protected_documents_are_refused_through_the_child(files) -> None:
    for data in (
        docfiles.protected_hwp5("distribution"),
        docfiles.encrypted_pdf(files["pdf"]),
        docfiles.encrypted_docx(),
    ):
        with pytest.raises(DocumentError) as refused:
            parse_document(data)
        assert refused.value.code == "protected"
        assert "배포용 문서입니다" not in refused.value.message


# The sandbox, end to end ------------------------------------------------------------------


def test_every_format_parses_the_same_in_the_child(files, capfd) -> None:
    for data in files.values():
        assert parse_document(data) == parse(data)
    assert capfd.readouterr() == ("", "")  # nothing of the child reaches our stdout or stderr


def test_parallel_calls_each_get_their_own_child(files) -> None:
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(parse_document, [files["hwpx"], files["pdf"], files["docx"]]))
    assert [result.format for result in results] == ["hwpx", "pdf", "docx"]


@pytest.mark.parametrize("start", [ParserChild.start, ParserChild.spawn], ids=["forked", "spawned"])
def test_the_child_is_hardened_before_it_is_sent_the_document(start) -> None:
    limits = ParseLimits(memory_bytes=768 * MIB, cpu_seconds=30)
    with start(limits) as child:
        report = child.wait_ready()
        status = Path(f"/proc/{child.pid}/status").read_text()
        proc_limits = Path(f"/proc/{child.pid}/limits").read_text()
        environ = Path(f"/proc/{child.pid}/environ").read_bytes()
        cwd = os.readlink(f"/proc/{child.pid}/cwd")
        owner = Path(f"/proc/{child.pid}/mem").stat().st_uid
        assert report["dumpable"] == 0
        assert "NoNewPrivs:\t1" in status
        assert _limit(proc_limits, "Max address space") == str(768 * MIB)
        assert _limit(proc_limits, "Max cpu time") == "30"
        assert _limit(proc_limits, "Max file size") == "0"
        assert _limit(proc_limits, "Max core file size") == "0"
        assert _limit(proc_limits, "Max open files") == "16"
        assert (environ, cwd) == (b"", "/")
        # A non-dumpable process's /proc files belong to root, out of its own user's reach.
        assert owner == 0
        assert child.parse(b"plain text") == parse(b"plain text")


def _limit(table: str, name: str) -> str:
    line = next(line for line in table.splitlines() if line.startswith(name))
    return line[len(name) :].split()[0]


def test_the_parent_refuses_a_child_that_reports_itself_unhardened() -> None:
    limits = ParseLimits()
    good = {
        "pid": 7,
        "dumpable": 0,
        "no_new_privs": 1,
        "core": 0,
        "address_space": limits.memory_bytes,
        "cpu": limits.cpu_seconds,
        "file_size": 0,
        "open_files": 16,
    }
    assert sandbox._hardened(good, limits, 7)
    for name, value in [("dumpable", 1), ("no_new_privs", 0), ("file_size", -1), ("pid", 8)]:
        assert not sandbox._hardened({**good, name: value}, limits, 7)


@pytest.mark.parametrize(
    ("shape", "honest", "code"),
    [
        ("hwpx", True, "parser_failed"),
        ("docx", True, "parser_failed"),
        ("hwpx", False, "malformed"),
        ("docx", False, "malformed"),
    ],
)
def test_zip_bombs_are_refused_and_the_caller_is_unaffected(files, shape, honest, code) -> None:
    bomb = docfiles.zip_bomb(shape, honest=honest)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DocumentError) as refused:
        parse_document(bomb)
    assert refused.value.code == code
    growth_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert growth_kib < 256 * 1024  # the bomb inflates to 3.5 GiB; none of it here
    assert parse_document(files["hwpx"]).format == "hwpx"


def test_a_truncated_pdf_is_malformed(files) -> None:
    with pytest.raises(DocumentError, match="truncated") as refused:
        parse_document(files["pdf"][: len(files["pdf"]) // 2])
    assert refused.value.code == "malformed"


@pytest.mark.parametrize("forked", [True, False], ids=["forked", "spawned"])
def test_a_child_that_runs_out_of_memory_is_stopped(monkeypatch, forked) -> None:
    monkeypatch.setattr(sandbox, "FORK_SERVER", forked)
    # Six honest 100 MiB parts: within ZIP limits raised for the test, beyond 512 MiB of memory.
    package = docfiles.zeros_package(6, 100)
    limits = ParseLimits(memory_bytes=512 * MIB, zip_ratio=1 << 20, zip_total_bytes=1 << 40)
    with pytest.raises(DocumentError) as refused:
        parse_document(package, limits)
    assert refused.value.code == "parser_failed"
    assert refused.value.message == (
        "The document could not be parsed: the parser ran out of memory (limit 512 MiB)."
    )


def test_the_fork_server_is_started_again_when_it_is_gone(files) -> None:
    assert parse_document(files["text"]).format == "text"
    server = forkserver._fork_server()
    server.process.kill()
    server.process.wait()
    assert parse_document(files["hwpx"]).format == "hwpx"
    assert forkserver._fork_server() is not server


# A child that misbehaves on purpose (tests/docfiles.py run as the child) -------------------


@pytest.fixture
def misbehaving(monkeypatch):
    monkeypatch.setattr(sandbox, "FORK_SERVER", False)
    monkeypatch.setattr(sandbox, "CHILD_MODULE", "tests.docfiles")

    def run(action: str, **limits) -> DocumentError:
        with pytest.raises(DocumentError) as refused:
            parse_document(action.encode(), ParseLimits(**limits))
        return refused.value

    return run


def test_a_child_over_its_cpu_limit_is_stopped(misbehaving) -> None:
    error = misbehaving("spin", cpu_seconds=2)
    assert error.code == "parser_failed"
    assert error.message == "The document could not be parsed: the parser exceeded 2 s of CPU."


def test_a_child_past_the_deadline_is_killed(misbehaving) -> None:
    error = misbehaving("sleep", wall_seconds=2.0)
    assert error.message == "The document could not be parsed: the parser took longer than 2 s."


def test_a_crashing_child_is_reported_by_its_signal(misbehaving) -> None:
    error = misbehaving("segfault")
    assert error.message == (
        f"The document could not be parsed: the parser crashed (signal {int(signal.SIGSEGV)})."
    )


def test_a_child_that_floods_its_output_is_cut_off(misbehaving) -> None:
    error = misbehaving("flood", output_bytes=MIB)
    assert error.message == (
        "The document could not be parsed: the parser's answer was larger than 1 MiB."
    )


@pytest.mark.parametrize("action", ["garbage", "bad-kind", "odd-code"])
def test_answers_that_break_the_rules_are_refused(misbehaving, action, capfd) -> None:
    error = misbehaving(action)
    assert error.code == "parser_failed"
    assert "gave an invalid answer" in error.message or "no valid answer" in error.message
    assert capfd.readouterr() == ("", "")


def test_a_childs_refusal_comes_through_as_its_own(misbehaving) -> None:
    error = misbehaving("refusal")
    assert (error.code, error.message) == ("protected", "The PDF is password-protected.")
