"""Real documents made in memory, for the parsing tests and any test that ingests.

Each maker writes a genuine file with the library that writes that format:
HWPX with python-hwpx, HWP 5 with python-hwpx's HWP 5 writer, DOCX with
python-docx, PDF with reportlab (Korean through its built-in CID fonts,
which PDFium reads back). The hostile variants (protected, bombs, truncated)
are built from those.

Run as a module (`python -m tests.docfiles LIMITS`) this file is a parser
child that misbehaves on purpose, speaking the child's protocol after
hardening itself the same way: the document it is sent names what it does.
"""

from __future__ import annotations

import dataclasses
import io
import random
import struct
import zipfile
import zlib

HWPML = (
    '<?xml version="1.0" encoding="UTF-8" standalone="no" ?>\n'
    '<HWPML Version="2.8" SubVersion="8.0.0.0" Style2="embed"><HEAD SecCnt="1"/>'
    '<BODY><SECTION Id="0"><P><TEXT><CHAR>옛 형식 문서</CHAR></TEXT></P></SECTION></BODY>'
    "</HWPML>\n"
).encode()
HWP3 = b"HWP Document File V3.00 \x1a\x01\x02\x03\x04\x05" + bytes(200)
DISTRIBUTION_NOTICE = "이 문서는 배포용 문서입니다. 한컴오피스에서 열어 주십시오."
MIB = 1 << 20


# HWPX and HWP 5 ---------------------------------------------------------------------------


def hwpx_bytes(
    paragraphs: list[str],
    *,
    header: str | None = None,
    footer: str | None = None,
    table: list[list[str]] | None = None,
    footnote: str | None = None,
    title: str | None = None,
) -> bytes:
    """An HWPX document: the paragraphs, then the table; the footnote on the first paragraph."""
    from hwpx import HwpxDocument

    document = HwpxDocument.new()
    if header is not None:
        document.page.set_header(text=header)
    if footer is not None:
        document.page.set_footer(text=footer)
    added = [document.add_paragraph(text) for text in paragraphs]
    if footnote is not None:
        document.notes.add_footnote(footnote, added[0])
    if table:
        grid = document.add_table(len(table), len(table[0]))
        for row, cells in enumerate(table):
            for column, text in enumerate(cells):
                grid.cell(row, column).text = text
    if title is not None:
        document.package.set_document_metadata(title=title)
    return document.to_bytes()


def two_sections(fmt: str) -> bytes:
    """An HWPX or DOCX document of two sections, each with its own header and a paragraph."""
    if fmt == "hwpx":
        from hwpx import HwpxDocument

        document = HwpxDocument.new()
        document.page.set_header(text="1장 머리말")
        document.add_paragraph("1장 본문")
        second = document.add_section()
        document.page.set_header(text="2장 머리말", section=second)
        document.add_paragraph("2장 본문", section=second)
        return document.to_bytes()
    import docx

    word = docx.Document()
    word.sections[0].header.paragraphs[0].text = "1장 머리말"
    word.add_paragraph("1장 본문")
    section = word.add_section()
    section.header.is_linked_to_previous = False
    section.header.paragraphs[0].text = "2장 머리말"
    word.add_paragraph("2장 본문")
    out = io.BytesIO()
    word.save(out)
    return out.getvalue()


def encrypted_hwpx() -> bytes:
    """A password-protected HWPX as Hancom saves one: the manifest declares the section
    encrypted (ODF package encryption) and its bytes are ciphertext."""
    parts = hwpx_parts(hwpx_bytes(["암호로 보호된 본문"]))
    parts["META-INF/manifest.xml"] = (
        b'<?xml version="1.0" encoding="UTF-8"?>'
        b'<odf:manifest xmlns:odf="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0">'
        b'<odf:file-entry odf:full-path="Contents/section0.xml" odf:media-type="text/xml">'
        b'<odf:encryption-data odf:checksum-type="SHA1/1K" odf:checksum="AAAA">'
        b'<odf:algorithm odf:algorithm-name="http://www.w3.org/2001/04/xmlenc#aes256-cbc"/>'
        b"</odf:encryption-data></odf:file-entry></odf:manifest>"
    )
    parts["Contents/section0.xml"] = random.Random("hwpx").randbytes(2048)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), parts.pop("mimetype"))
        for name, data in parts.items():
            archive.writestr(name, data, zipfile.ZIP_DEFLATED)
    return out.getvalue()


def hwpx_parts(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def hwp5_bytes(
    paragraphs: list[str],
    *,
    header: str | None = None,
    footer: str | None = None,
    table: list[list[str]] | None = None,
    footnote: str | None = None,
    title: str | None = None,
) -> bytes:
    """The same document as `hwpx_bytes`, written as HWP 5 by python-hwpx's writer."""
    from hwpx.hwp5.writer import write_hwp5

    package = hwpx_bytes(
        paragraphs, header=header, footer=footer, table=table, footnote=footnote, title=title
    )
    return write_hwp5(hwpx_parts(package))


def protected_hwp5(kind: str) -> bytes:
    """An HWP 5 document protected by "password", "distribution" or "drm".

    The FileHeader carries the flag. A distribution document is laid out as
    Hancom writes one: the real text encrypted in ViewText/Section0 (random
    bytes here), and in BodyText and the preview only a notice.
    """
    from hwpx.hwp5.cfb import CompoundFile, build_compound_file, read_all_streams
    from hwpx.hwp5.fileheader import FLAG_BITS, parse_file_header

    secret = hwp5_bytes(["작전 계획 본문: 절대 추출되면 안 됨"], header="Ⅱ급비밀")
    streams = dict(read_all_streams(CompoundFile(secret)))
    header = parse_file_header(streams["FileHeader"])
    flags = header.flags | (1 << FLAG_BITS[kind])
    streams["FileHeader"] = dataclasses.replace(header, flags=flags).to_bytes()
    if kind == "distribution":
        notice = dict(read_all_streams(CompoundFile(hwp5_bytes([DISTRIBUTION_NOTICE]))))
        scrambled = random.Random(kind).randbytes(len(streams["BodyText/Section0"]) + 256)
        streams["ViewText/Section0"] = scrambled
        streams["BodyText/Section0"] = notice["BodyText/Section0"]
        streams["PrvText"] = DISTRIBUTION_NOTICE.encode("utf-16-le")
    return build_compound_file(sorted(streams.items()))


def ole_bytes(streams: dict[str, bytes]) -> bytes:
    from hwpx.hwp5.cfb import build_compound_file

    return build_compound_file(sorted(streams.items()))


def encrypted_docx() -> bytes:
    """What Office writes for a password-protected DOCX: an OLE file, not a ZIP."""
    filler = random.Random("docx").randbytes(4096)
    info = b"\x04\x00\x04\x00" + bytes(60)
    return ole_bytes({"EncryptionInfo": info, "EncryptedPackage": filler})


def legacy_doc() -> bytes:
    return ole_bytes({"WordDocument": bytes(1024), "1Table": bytes(512)})


# DOCX -------------------------------------------------------------------------------------

FOOTNOTES_XML = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<w:footnotes xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
    '<w:footnote w:type="separator" w:id="-1"><w:p><w:r><w:separator/></w:r></w:p></w:footnote>'
    '<w:footnote w:type="continuationSeparator" w:id="0"><w:p><w:r><w:continuationSeparator/>'
    "</w:r></w:p></w:footnote>"
    '<w:footnote w:id="1"><w:p><w:r><w:footnoteRef/></w:r><w:r><w:t xml:space="preserve"> {text}'
    "</w:t></w:r></w:p></w:footnote></w:footnotes>"
)


def docx_bytes(
    paragraphs: list[str],
    *,
    header: str | None = None,
    footer: str | None = None,
    table: list[list[str]] | None = None,
    footnote: str | None = None,
    title: str | None = None,
    nested: list[list[str]] | None = None,
) -> bytes:
    """A DOCX document; `nested` puts a table inside the first cell of `table`.

    python-docx writes no footnotes: the part is added by hand, as Word lays it out.
    """
    import docx
    from docx.opc.constants import CONTENT_TYPE, RELATIONSHIP_TYPE
    from docx.opc.packuri import PackURI
    from docx.opc.part import Part
    from docx.oxml import parse_xml

    document = docx.Document()
    section = document.sections[0]
    if header is not None:
        section.header.paragraphs[0].text = header
    if footer is not None:
        section.footer.paragraphs[0].text = footer
    added = [document.add_paragraph(text) for text in paragraphs]
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for row, cells in enumerate(table):
            for column, text in enumerate(cells):
                grid.cell(row, column).text = text
        if nested:
            inner = grid.cell(0, 0).add_table(rows=len(nested), cols=len(nested[0]))
            for row, cells in enumerate(nested):
                for column, text in enumerate(cells):
                    inner.cell(row, column).text = text
    if footnote is not None:
        from xml.sax.saxutils import escape

        part = Part(
            PackURI("/word/footnotes.xml"),
            CONTENT_TYPE.WML_FOOTNOTES,
            FOOTNOTES_XML.format(text=escape(footnote)).encode(),
            document.part.package,
        )
        document.part.relate_to(part, RELATIONSHIP_TYPE.FOOTNOTES)
        reference = parse_xml(
            '<w:r xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
            '<w:rPr><w:vertAlign w:val="superscript"/></w:rPr><w:footnoteReference w:id="1"/></w:r>'
        )
        added[0]._p.append(reference)
    if title is not None:
        document.core_properties.title = title
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


# PDF --------------------------------------------------------------------------------------


def pdf_bytes(
    pages: list[list[str]],
    *,
    header: str | None = None,
    footer: str | None = None,
    table: list[list[str]] | None = None,
    title: str | None = None,
) -> bytes:
    """A PDF of A4 pages with Korean text (reportlab's CID fonts, which need no font file).

    The header and footer are stamped at the top and bottom of every page; the
    table is drawn, ruled, below the first page's lines.
    """
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    for font in ("HYSMyeongJo-Medium", "HYGothic-Medium"):
        pdfmetrics.registerFont(UnicodeCIDFont(font))
    out = io.BytesIO()
    sheet = canvas.Canvas(out, pagesize=A4, invariant=True)
    if title is not None:
        sheet.setTitle(title)
    width, height = A4
    for number, lines in enumerate(pages, 1):
        if header is not None:
            sheet.setFont("HYGothic-Medium", 10)
            sheet.drawCentredString(width / 2, height - 30, header)
        sheet.setFont("HYSMyeongJo-Medium", 12)
        y = height - 110
        for line in lines:
            sheet.drawString(72, y, line)
            y -= 20
        if table and number == 1:
            y -= 10
            for row in table:
                for column, text in enumerate(row):
                    sheet.rect(72 + 120 * column, y - 6, 120, 20)
                    sheet.drawString(78 + 120 * column, y, text)
                y -= 20
        if footer is not None:
            sheet.setFont("HYGothic-Medium", 10)
            sheet.drawCentredString(width / 2, 25, footer)
        sheet.showPage()
    sheet.save()
    return out.getvalue()


def encrypted_pdf(data: bytes, *, user_password: str = "1234", owner: str = "officer") -> bytes:
    """`data` encrypted (AES-256); with an empty user password it opens without one."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password=owner, algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# ZIP bombs --------------------------------------------------------------------------------


def deflated_zeros(mebibytes: int) -> bytes:
    """A raw deflate stream of `mebibytes` MiB of zeros, made without making them:
    full flushes make every MiB compress to the same bytes, which are repeated."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(MIB)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    return first + again * (mebibytes - 1) + compressor.flush()


def raw_zip(entries: list[tuple[str, bytes, int, int, int]]) -> bytes:
    """A ZIP written by hand: (name, stored bytes, method, declared size, CRC) per entry,
    so that sizes can be declared as anything."""
    out = bytearray()
    central = bytearray()
    for name, stored, method, size, crc in entries:
        encoded = name.encode()
        offset = len(out)
        out += struct.pack(
            "<IHHHHHIIIHH",
            0x04034B50,
            20,
            0,
            method,
            0,
            0x21,
            crc,
            len(stored),
            size,
            len(encoded),
            0,
        )
        out += encoded + stored
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            20,
            20,
            0,
            method,
            0,
            0x21,
            crc,
            len(stored),
            size,
            len(encoded),
            0,
            0,
            0,
            0,
            0,
            offset,
        )
        central += encoded
    end = struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), len(out), 0
    )
    return bytes(out + central + end)


def _stored(name: str, data: bytes) -> tuple[str, bytes, int, int, int]:
    return (name, data, zipfile.ZIP_STORED, len(data), zlib.crc32(data))


def zip_bomb(shape: str = "hwpx", *, honest: bool = True, mebibytes: int = 3584) -> bytes:
    """An HWPX- or DOCX-shaped package whose main part inflates to `mebibytes` MiB.

    Honest: the directory declares the real size. Lying: it declares 4 KiB
    (with the CRC of those first 4 KiB), so a reader that trusts it and asks
    zlib for everything at once inflates gigabytes before it truncates.
    """
    bomb = deflated_zeros(mebibytes)
    size = mebibytes * MIB if honest else 4096
    crc = 0 if honest else zlib.crc32(bytes(4096))
    if shape == "hwpx":
        head = [_stored("mimetype", b"application/hwp+zip")]
        main = "Contents/section0.xml"
    else:
        head = [_stored("[Content_Types].xml", b"<Types/>")]
        main = "word/document.xml"
    return raw_zip([*head, (main, bomb, zipfile.ZIP_DEFLATED, size, crc)])


def zeros_package(parts: int, mebibytes: int) -> bytes:
    """An HWPX-shaped package of `parts` honest parts of `mebibytes` MiB of zeros each:
    within ZIP limits raised for it, it takes that much memory to read."""
    stream = deflated_zeros(mebibytes)
    crc = zlib.crc32(bytes(mebibytes * MIB))
    entries = [_stored("mimetype", b"application/hwp+zip")]
    for index in range(parts):
        entries.append(
            (f"BinData/zeros{index}.bin", stream, zipfile.ZIP_DEFLATED, mebibytes * MIB, crc)
        )
    return raw_zip(entries)


# A misbehaving parser child ---------------------------------------------------------------


def _misbehave(argv: list[str]) -> int:
    """Harden as the real child does, say ready, read the document, then do what it says."""
    import json
    import os
    import signal
    import sys
    import time

    from appliance.documents import child

    limits = json.loads(argv[1])
    child.harden(limits)
    sys.stdout.buffer.write(child.READY + json.dumps(child.report()).encode() + b"\n")
    sys.stdout.buffer.flush()
    action = child._read_frame(sys.stdin.buffer).decode()
    if action == "spin":
        while True:
            pass
    if action == "sleep":
        time.sleep(3600)
    if action == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    if action == "flood":
        sys.stdout.buffer.write(child.FRAME.pack(1 << 40))
        while True:
            sys.stdout.buffer.write(b"x" * 65536)
    answers = {
        "garbage": b"not json at all",
        "bad-kind": json.dumps(
            {
                "format": "pdf",
                "title": "",
                "pages": 1,
                "blocks": [{"text": "x", "kind": "secret", "page": 1, "section": None}],
            }
        ).encode(),
        "refusal": json.dumps(
            {"error": {"code": "protected", "message": "The PDF is password-protected."}}
        ).encode(),
        "odd-code": json.dumps({"error": {"code": "rm -rf", "message": "hi"}}).encode(),
    }
    answer = answers[action]
    sys.stdout.buffer.write(child.FRAME.pack(len(answer)) + answer)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_misbehave(sys.argv))
