"""DOCX: body, tables, every section's headers and footers, footnotes and endnotes.

python-docx opens the package; the text is read from its XML directly, so
that text boxes, content controls and symbol characters are kept and field
codes and deleted text are not. The package is first read member by member
against the ZIP limits and handed to python-docx re-packed from those bytes:
python-docx reads members with `ZipFile.read`, which a lying size would let
inflate far beyond what was checked.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator, Mapping
from typing import Any

import docx
from docx.opc.constants import RELATIONSHIP_TYPE
from docx.oxml import parse_xml

from appliance.documents.formats import ZipLimits, read_zip_parts
from appliance.documents.model import Block, Parsed
from appliance.documents.parsers import finish
from appliance.errors import DocumentError

W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
R = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
MC_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
# Not text: properties, field codes, deleted text, and the fallback copy of a text box.
SKIPPED = frozenset(
    {W + "pPr", W + "rPr", W + "tblPr", W + "trPr", W + "tcPr", W + "instrText", W + "del"}
    | {W + "delText", MC_FALLBACK, W + "sectPr", W + "tblGrid"}
)
NOTE_SEPARATORS = frozenset({"separator", "continuationSeparator", "continuationNotice"})
NOTE_PARTS = {RELATIONSHIP_TYPE.FOOTNOTES: "footnote", RELATIONSHIP_TYPE.ENDNOTES: "endnote"}
MARGINAL_TAGS = {W + "headerReference": "header", W + "footerReference": "footer"}


def parse(data: bytes, *, zip_limits: ZipLimits | None = None) -> Parsed:
    parts = read_zip_parts(data, zip_limits or ZipLimits())
    for name, blob in parts.items():
        if name.endswith((".xml", ".rels")) and b"<!DOCTYPE" in blob.replace(b"\x00", b""):
            raise DocumentError("The DOCX document declares a DTD.", code="malformed")
    document = _open(_repack(parts))
    walker = _Walker()
    try:
        body = document.element.body
        walker.body(body)
        walker.marginals(body, document.part.related_parts)
        walker.notes(document.part.rels.values())
        title = document.core_properties.title or ""
    except (SyntaxError, KeyError, ValueError):  # lxml's XMLSyntaxError is a SyntaxError
        raise DocumentError("The DOCX document is damaged.", code="malformed") from None
    return finish("docx", walker.blocks, title=title, pages=None)


def _repack(parts: Mapping[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for name, blob in parts.items():
            archive.writestr(name, blob)
    return out.getvalue()


def _open(package: bytes) -> Any:
    try:
        return docx.Document(io.BytesIO(package))
    except ValueError as exc:
        if "not a Word file" in str(exc):  # a macro-enabled document (.docm) or a template
            raise DocumentError(
                "Macro-enabled Word documents and templates are not supported; save it as DOCX "
                "and try again.",
                code="unsupported_format",
            ) from None
        raise DocumentError("The DOCX document is damaged.", code="malformed") from None
    except MemoryError:
        raise
    except Exception:  # KeyError, XMLSyntaxError, PackageNotFoundError: a broken package
        raise DocumentError("The DOCX document is damaged.", code="malformed") from None


class _Walker:
    """Blocks in reading order; a section ends with the paragraph that holds its sectPr."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self.section = 1
        self._note_sections: dict[tuple[str, str], int] = {}

    def body(self, body: Any) -> None:
        for element in _blocks(body):
            if element.tag == W + "tbl":
                self._table(element)
                continue
            self._add("body", "".join(self._inline(element)))
            properties = element.find(W + "pPr")
            if properties is not None and properties.find(W + "sectPr") is not None:
                self.section += 1

    def marginals(self, body: Any, related: Mapping[str, Any]) -> None:
        """Each section's headers and footers (default, first page, even), each text once."""
        sections = [
            element
            for element in body.iter(W + "sectPr")
            if element.getparent().tag in (W + "pPr", W + "body")
        ]
        for number, properties in enumerate(sections, 1):
            self.section = number
            seen: set[tuple[str, str]] = set()
            for reference in properties:
                kind = MARGINAL_TAGS.get(reference.tag)
                part = related.get(reference.get(R + "id", ""))
                if kind is None or part is None:
                    continue
                text = self._flat(parse_xml(part.blob))
                if (kind, text) not in seen:
                    seen.add((kind, text))
                    self._add(kind, text)

    def notes(self, relationships: Any) -> None:
        """Footnotes and endnotes, placed in the section that refers to them."""
        for relationship in relationships:
            kind = NOTE_PARTS.get(relationship.reltype)
            if kind is None or relationship.is_external:
                continue
            for note in parse_xml(relationship.target_part.blob):
                if note.tag != W + kind or note.get(W + "type") in NOTE_SEPARATORS:
                    continue
                section = self._note_sections.get((kind, note.get(W + "id", "")))
                text = self._flat(note)
                self.blocks.append(Block(text=text, kind="footnote", section=section))

    def _table(self, table: Any) -> None:
        nested: list[Any] = []
        self._add("table", "\n".join(self._rows(table, nested)))
        for inner in nested:  # tables inside cells follow as tables of their own
            self._table(inner)

    def _rows(self, table: Any, nested: list[Any]) -> list[str]:
        rows = []
        for row in _children(table, W + "tr"):
            cells = []
            for cell in _children(row, W + "tc"):
                texts = []
                for element in _blocks(cell):
                    if element.tag == W + "tbl":
                        nested.append(element)
                    else:
                        texts.append("".join(self._inline(element)))
                cells.append(" ".join(" ".join(texts).split()))
            if any(cells):
                rows.append(" | ".join(cells))
        return rows

    def _flat(self, element: Any) -> str:
        """All the text of a header, footer, note or text box; tables as rows."""
        lines: list[str] = []
        for block in _blocks(element):
            if block.tag == W + "tbl":
                pending = [block]
                while pending:
                    lines.extend(self._rows(pending.pop(0), pending))
            else:
                lines.append("".join(self._inline(block)))
        return "\n".join(lines)

    def _inline(self, element: Any) -> Iterator[str]:
        for child in element:
            tag = child.tag
            if tag in SKIPPED or not isinstance(tag, str):
                continue
            if tag == W + "t":
                yield child.text or ""
            elif tag == W + "tab":
                yield "\t"
            elif tag in (W + "br", W + "cr"):
                yield "\n"
            elif tag == W + "noBreakHyphen":
                yield "-"
            elif tag == W + "sym":
                yield _symbol(child.get(W + "char", ""))
            elif tag in (W + "footnoteReference", W + "endnoteReference"):
                kind = "footnote" if tag == W + "footnoteReference" else "endnote"
                self._note_sections[(kind, child.get(W + "id", ""))] = self.section
            elif tag == W + "txbxContent":
                yield "\n" + self._flat(child) + "\n"
            else:
                yield from self._inline(child)

    def _add(self, kind: str, text: str) -> None:
        self.blocks.append(Block(text=text, kind=kind, section=self.section))


def _blocks(container: Any) -> Iterator[Any]:
    """The paragraphs and tables of a body, cell, header or note, through content controls."""
    for child in container:
        if child.tag in (W + "p", W + "tbl"):
            yield child
        elif child.tag in (W + "sdt", W + "sdtContent", W + "customXml"):
            yield from _blocks(child)


def _children(element: Any, tag: str) -> Iterator[Any]:
    """Rows of a table or cells of a row, through content controls around them."""
    for child in element:
        if child.tag == tag:
            yield child
        elif child.tag in (W + "sdt", W + "sdtContent", W + "customXml"):
            yield from _children(child, tag)


def _symbol(code: str) -> str:
    """A w:sym character (a symbol font's code point, often private use: cleaned later)."""
    try:
        value = int(code, 16)
    except ValueError:
        return ""
    return chr(value) if 0 < value < 0x110000 else ""
