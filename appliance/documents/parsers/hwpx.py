"""HWPX (OWPML): body, headers, footers, master pages, tables and notes, by section.

The section XML is walked directly: python-hwpx's plain text leaves headers
out, and its extractor repeats them. A header or footer is emitted once per
section for each distinct text (python-hwpx writes a section's header both
in its section properties and as a control). The HWP 5 parser reuses
`extract` on the parts python-hwpx converts an .hwp into.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from xml.etree.ElementTree import Element

from appliance.documents.formats import ZipLimits, read_zip_parts
from appliance.documents.model import Block, Parsed
from appliance.documents.parsers import finish, local_name, parse_xml
from appliance.errors import DocumentError

SECTION_PART = re.compile(r"(?:^|/)section(\d+)\.xml$", re.IGNORECASE)
CONTENT_HPF = "Contents/content.hpf"
MANIFEST = "META-INF/manifest.xml"
MARGINALS = {"header": "header", "footer": "footer", "footNote": "footnote", "endNote": "footnote"}


def parse(data: bytes, *, zip_limits: ZipLimits | None = None) -> Parsed:
    parts = read_zip_parts(data, zip_limits or ZipLimits())
    refuse_encrypted(parts)
    title, blocks = extract(parts)
    return finish("hwpx", blocks, title=title, pages=None)


def refuse_encrypted(parts: Mapping[str, bytes]) -> None:
    """Password-protected and distribution HWPX list encrypted parts in the manifest."""
    manifest = parts.get(MANIFEST)
    if manifest is None:
        return
    root = parse_xml(manifest, "manifest")
    if any(local_name(element.tag) == "encryption-data" for element in root.iter()):
        raise DocumentError(
            "The HWPX document is encrypted (password-protected or a distribution document) "
            "and cannot be read.",
            code="protected",
        )


def extract(parts: Mapping[str, bytes]) -> tuple[str, list[Block]]:
    """The title and the blocks of an HWPX package given as its parts."""
    title, sections, master_pages = _package(parts)
    blocks: list[Block] = []
    for number, path in enumerate(sections, 1):
        walker = _SectionWalker(number)
        root = parse_xml(parts[path], "section")
        walker.section(root)
        for reference in root.iter():
            if local_name(reference.tag) == "masterPage":
                page = master_pages.get(reference.get("idRef", ""))
                if page is not None:  # text on every page of the section, like a header
                    walker.marginal("header", parse_xml(parts[page], "master page"))
        blocks.extend(walker.blocks)
    return title, blocks


def _package(parts: Mapping[str, bytes]) -> tuple[str, list[str], dict[str, str]]:
    """Title, section parts in reading order, and master-page parts by id, from content.hpf."""
    title = ""
    sections: list[str] = []
    master_pages: dict[str, str] = {}
    if CONTENT_HPF in parts:
        root = parse_xml(parts[CONTENT_HPF], "package description")
        items: dict[str, str] = {}
        for element in root.iter():
            name = local_name(element.tag)
            if name == "title" and not title:
                title = "".join(element.itertext())
            elif name == "item":
                href = _part(parts, element.get("href", ""))
                if href is not None:
                    items[element.get("id", "")] = href
                    if "masterpage" in href.lower():
                        master_pages[element.get("id", "")] = href
            elif name == "itemref":
                href = items.get(element.get("idref", ""), "")
                if SECTION_PART.search(href) and href not in sections:
                    sections.append(href)
    if not sections:  # no usable spine: the section parts by number
        found = [(int(m.group(1)), name) for name in parts if (m := SECTION_PART.search(name))]
        sections = [name for _, name in sorted(found)]
    if not sections:
        raise DocumentError("The HWPX document has no sections.", code="malformed")
    return title, sections, master_pages


def _part(parts: Mapping[str, bytes], href: str) -> str | None:
    for candidate in (href, f"Contents/{href}"):
        if candidate in parts:
            return candidate
    return None


class _SectionWalker:
    """The blocks of one section: each top-level paragraph's text as a body block,
    then what it anchors (tables, notes, headers, footers) as blocks of their kind."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.blocks: list[Block] = []
        self._marginals: set[tuple[str, str]] = set()

    def section(self, root: Element) -> None:
        for paragraph in root:
            if local_name(paragraph.tag) == "p":
                self.paragraph(paragraph)

    def paragraph(self, paragraph: Element) -> None:
        anchored: list[Element] = []
        self._add("body", "".join(self._inline(paragraph, anchored)))
        self._anchored(anchored)

    def marginal(self, kind: str, element: Element) -> None:
        text = self._flat(element)
        if (kind, text) not in self._marginals:
            self._marginals.add((kind, text))
            self._add(kind, text)

    def _anchored(self, elements: list[Element]) -> None:
        for element in elements:
            name = local_name(element.tag)
            if name == "tbl":
                self._table(element)
            elif MARGINALS[name] == "footnote":
                self._add("footnote", self._flat(element))
            else:
                self.marginal(MARGINALS[name], element)

    def _table(self, table: Element) -> None:
        nested: list[Element] = []
        self._add("table", "\n".join(self._rows(table, nested)))
        self._anchored(nested)  # tables and notes inside cells follow as blocks of their own

    def _rows(self, table: Element, anchored: list[Element]) -> list[str]:
        """One line per row, its cells' text joined by " | "."""
        rows: list[str] = []
        for row in table:
            if local_name(row.tag) != "tr":
                continue
            cells = [
                " ".join("".join(self._inline(cell, anchored)).split())
                for cell in row
                if local_name(cell.tag) == "tc"
            ]
            if any(cells):
                rows.append(" | ".join(cells))
        return rows

    def _flat(self, element: Element) -> str:
        """All the text under `element`, tables as rows, for a header, footer or note."""
        anchored: list[Element] = []
        lines = ["".join(self._inline(element, anchored))]
        while anchored:
            inner = anchored.pop(0)
            if local_name(inner.tag) == "tbl":
                lines.extend(self._rows(inner, anchored))
            else:
                lines.append("".join(self._inline(inner, anchored)))
        return "\n".join(lines)

    def _inline(self, element: Element, anchored: list[Element]) -> Iterator[str]:
        """The running text under `element`; tables and notes go to `anchored`."""
        for child in element:
            name = local_name(child.tag)
            if name == "tbl" or name in MARGINALS:
                anchored.append(child)
            elif name == "t":
                yield from _run_text(child)
            elif name == "tab":
                yield "\t"
            elif name == "lineBreak":
                yield "\n"
            elif name == "p":  # a paragraph of a text box, cell or note
                yield "\n"
                yield from self._inline(child, anchored)
            else:
                yield from self._inline(child, anchored)

    def _add(self, kind: str, text: str) -> None:
        self.blocks.append(Block(text=text, kind=kind, section=self.number))


def _run_text(element: Element) -> Iterator[str]:
    """An `hp:t`: its text, with tabs and line breaks among it, and nothing of its marks."""
    yield element.text or ""
    for child in element:
        name = local_name(child.tag)
        if name == "tab":
            yield "\t"
        elif name == "lineBreak":
            yield "\n"
        yield child.tail or ""
