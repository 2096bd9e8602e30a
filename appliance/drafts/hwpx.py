"""HWPX output with python-hwpx, from its blank document.

The marking is the section's page header and page footer (`doc.page.set_header`
/ `set_footer`, centred, bold, on both odd and even pages), so it is on every
page. The copy number is the first paragraph, right-aligned (the top of the
first page), and the 예고문 the last paragraph (the end of the document):
where Korean practice writes them. Headings carry the "개요 N" style but a
plain paragraph shape: the outline shape would have Hancom number them, and
a model's headings usually bring their own "1." or "가.". Lists are Hancom
bullet and number lists (one numbering per ordered list, from its own first
number); tables are real `hp:tbl` objects (`doc.add_table`).

python-hwpx gives new paragraphs, tables and headers random ids; they are
renumbered in document order before saving, so the same draft gives the
same bytes. The package metadata is cleared and set from the draft alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from appliance.drafts.model import Block, Heading, ListBlock, Paragraph, Prepared, Runs

if TYPE_CHECKING:
    from hwpx.document import HwpxDocument
    from hwpx.oxml import HwpxOxmlParagraph

MONOSPACE = "굴림체"  # fixed-width, Hangul included, on every Windows with Hancom
HEADING_SIZES = {1: 15, 2: 13, 3: 12}  # points; deeper levels 11; the body is 10
TITLE_SIZE = 18
INDENT = 1500  # HWPUNIT (1/7200 inch) per list level


def render_hwpx(doc: Prepared) -> bytes:
    from hwpx.document import HwpxDocument

    document = HwpxDocument.new()
    writer = _Writer(document)
    mark = [{"align": "CENTER", "runs": [{"text": doc.marking.label, "bold": True}]}]
    document.page.set_header(content=mark)
    document.page.set_footer(content=mark)
    if doc.marking.copy:
        writer.line(doc.marking.copy, "RIGHT")
    if doc.title:
        writer.line(doc.title, "CENTER", size=TITLE_SIZE)
    for block in doc.blocks:
        writer.block(block, 0)
    if doc.marking.notice:
        writer.line(doc.marking.notice, "LEFT")
    stamp = doc.created.strftime("%Y-%m-%dT%H:%M:%SZ")
    document.parts.clear_document_metadata(keep=("title", "language"), timestamp=stamp)
    document.parts.set_document_metadata(title=doc.title, created_date=stamp, modified_date=stamp)
    _renumber(document)
    return document.to_bytes()


class _Writer:
    """Appends paragraphs, with the character and paragraph shapes they need made once."""

    def __init__(self, document: HwpxDocument) -> None:
        self.document = document
        self.header = document.oxml.headers[0]
        self.section = document.sections[0]
        self.unused: HwpxOxmlParagraph | None = document.paragraphs[0]  # holds the settings
        self.chars: dict[tuple[bool, bool, bool, int | None], str] = {}
        self.shapes: dict[tuple[str, int], str] = {}
        self.bullets: dict[int, str] = {}
        self.outlines: dict[int, str] = {}

    def line(self, text: str, align: str, size: int | None = None) -> None:
        key = (align, 0)
        if key not in self.shapes:
            self.shapes[key] = self.header.ensure_paragraph_format(
                base_para_pr_id="0", alignment=align
            )
        paragraph = self.paragraph(self.shapes[key], "0")
        paragraph.add_run(text, char_pr_id_ref=self.char(bold=size is not None, size=size))

    def block(self, block: Block, depth: int) -> None:
        if isinstance(block, Heading):
            size = HEADING_SIZES.get(block.level, 11)
            paragraph = self.paragraph("0", self.outline(block.level))
            self.runs(paragraph, block.runs, bold=True, size=size)
        elif isinstance(block, Paragraph):
            self.runs(self.paragraph(self.indented(depth), "0"), block.runs)
        elif isinstance(block, ListBlock):
            self.list(block, depth + 1)
        else:
            table = self.document.add_table(
                1 + len(block.rows), len(block.header), section=self.section
            )
            rows = (block.header, *block.rows)
            for number, (row, cells) in enumerate(zip(table.rows, rows, strict=True)):
                for cell, runs in zip(row.cells, cells, strict=True):
                    self.runs(cell.paragraphs[0], runs, bold=number == 0)

    def list(self, block: ListBlock, depth: int) -> None:
        if block.ordered:  # a numbering of its own: Hancom counts per numbering
            text = f"^{depth}{block.delimiter}"  # this level's number alone: "1." not "1.1."
            start = str(min(block.start, 0xFFFF))  # Hancom keeps 16 bits of it
            head = {"format": "DIGIT", "start": start, "text": text}
            levels: list[dict[str, str]] = [{} for _ in range(depth - 1)] + [head]
            shape = self.document.oxml.ensure_numbering(kind="number", levels=levels)[-1]
        else:
            if depth not in self.bullets:
                levels = [{} for _ in range(depth)]
                self.bullets[depth] = self.document.oxml.ensure_numbering(
                    kind="bullet", levels=levels
                )[-1]
            shape = self.bullets[depth]
        shape = self.header.ensure_paragraph_format(
            base_para_pr_id=shape, margins={"left": INDENT * depth}
        )
        for item in block.items:
            self.runs(self.paragraph(shape, "0"), item.runs)
            for child in item.children:
                self.block(child, depth)

    def outline(self, level: int) -> str:
        """The id of the "개요 N" style (Outline N), "0" (바탕글) in a skeleton without it."""
        if level not in self.outlines:
            found = self.document.styles.resolve(f"개요 {level}").id
            self.outlines[level] = "0" if found is None else str(found)
        return self.outlines[level]

    def indented(self, depth: int) -> str:
        key = ("LEFT", depth)
        if key not in self.shapes:
            self.shapes[key] = self.header.ensure_paragraph_format(
                base_para_pr_id="0", margins={"left": INDENT * depth}
            )
        return self.shapes[key]

    def paragraph(self, shape: str, style: str) -> HwpxOxmlParagraph:
        if self.unused is not None:
            paragraph, self.unused = self.unused, None
            paragraph.para_pr_id_ref = shape
            paragraph.style_id_ref = style
            return paragraph
        return self.document.add_paragraph(
            section=self.section,
            para_pr_id_ref=shape,
            style_id_ref=style,
            char_pr_id_ref="0",
            include_run=False,
            inherit_style=False,
        )

    def runs(
        self,
        paragraph: HwpxOxmlParagraph,
        runs: Runs,
        *,
        bold: bool = False,
        size: int | None = None,
    ) -> None:
        for run in runs:
            shape = self.char(bold=bold or run.bold, italic=run.italic, code=run.code, size=size)
            paragraph.add_run(run.text, char_pr_id_ref=shape)

    def char(
        self, *, bold: bool = False, italic: bool = False, code: bool = False, size: int | None
    ) -> str:
        key = (bold, italic, code, size)
        if key not in self.chars:
            self.chars[key] = self.document.oxml.ensure_run_style(
                bold=bold, italic=italic, font=MONOSPACE if code else None, size=size
            )
        return self.chars[key]


def _renumber(document: HwpxDocument) -> None:
    """Give every numeric id in the sections the next number in document order.

    The same value is the same object (a header is written both in the section
    settings and as a control), so ids are mapped by value, and the header and
    footer references follow them.
    """
    for section in document.sections:
        numbers: dict[str, str] = {}
        elements = list(section.element.iter())
        for element in elements:
            value = element.get("id")
            if value and value.isdigit():
                element.set("id", numbers.setdefault(value, str(len(numbers))))
        for element in elements:
            if str(element.tag).endswith(("}headerApply", "}footerApply")):
                value = element.get("idRef") or ""
                element.set("idRef", numbers.get(value, value))
        section.mark_dirty()
