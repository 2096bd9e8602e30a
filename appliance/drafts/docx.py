"""DOCX output with python-docx, from its default template.

The marking is the page header and the page footer of the (only) section,
centred and bold, so it is on every page. The copy number is the first
paragraph of the body, right-aligned (the top of the first page), and the
예고문 the last (the end of the document): where Korean practice writes them.
Headings use the Title and Heading N styles, lists the List Bullet / List
Number N styles (each ordered list restarts at its own first number), and
tables the Table Grid style. The core properties are set explicitly: nothing
of the host or of python-docx (its author, its comment) is left in the file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from appliance.drafts.model import Block, Heading, ListBlock, Paragraph, Prepared, Runs

if TYPE_CHECKING:
    from docx.document import Document
    from docx.text.paragraph import Paragraph as DocxParagraph

MONOSPACE = "Courier New"
MONOSPACE_HANGUL = "굴림체"  # fixed-width, on every Korean Windows
MAX_STYLE_LEVEL = 3  # the template's list styles go to "List Bullet 3"


def render_docx(doc: Prepared) -> bytes:
    import io

    import docx
    from docx.enum.text import WD_ALIGN_PARAGRAPH

    document = docx.Document()
    _properties(document, doc)
    section = document.sections[0]
    for part in (section.header, section.footer):
        paragraph = part.paragraphs[0]
        paragraph.alignment = WD_ALIGN_PARAGRAPH.CENTER
        paragraph.add_run(doc.marking.label).bold = True
    writer = _Writer(document)
    if doc.marking.copy:
        writer.paragraph(doc.marking.copy).alignment = WD_ALIGN_PARAGRAPH.RIGHT
    if doc.title:
        writer.paragraph(doc.title, "Title")
    for block in doc.blocks:
        writer.block(block, 0)
    if doc.marking.notice:
        writer.paragraph(doc.marking.notice)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def _properties(document: Document, doc: Prepared) -> None:
    created = doc.created.replace(tzinfo=None)  # python-docx writes it as UTC ("Z") as given
    properties = document.core_properties
    properties.title = doc.title[:255]  # the most a core property holds
    properties.author = properties.last_modified_by = ""
    properties.comments = properties.subject = properties.keywords = ""
    properties.category = properties.content_status = properties.identifier = ""
    properties.created = properties.modified = created
    properties.revision = 1


class _Writer:
    """Appends to the body in linear time.

    `Document.add_paragraph` searches the whole body for its section settings
    on every call, which makes a long draft quadratic; this keeps them at hand,
    and the style ids by name.
    """

    def __init__(self, document: Document) -> None:
        self.document = document
        self.end = document.element.body.sectPr
        self.styles: dict[str, str | None] = {}  # python-docx looks a name up in ms

    def paragraph(self, text: str = "", style: str | None = None) -> DocxParagraph:
        from docx.oxml import OxmlElement
        from docx.text.paragraph import Paragraph as DocxParagraph

        if self.end is None:
            return self.document.add_paragraph(text, style)
        element = OxmlElement("w:p")
        self.end.addprevious(element)
        paragraph = DocxParagraph(element, self.document)
        if style is not None:
            if style not in self.styles:
                self.styles[style] = self.document.styles[style].style_id
            element.style = self.styles[style]
        if text:
            paragraph.add_run(text)
        return paragraph

    def block(self, block: Block, depth: int) -> None:
        if isinstance(block, Heading):
            _runs(self.paragraph(style=f"Heading {block.level}"), block.runs)
        elif isinstance(block, Paragraph):
            style = None if depth == 0 else _level("List Continue", depth)
            _runs(self.paragraph(style=style), block.runs)
        elif isinstance(block, ListBlock):
            self.list(block, depth + 1)
        else:
            table = self.document.add_table(rows=1 + len(block.rows), cols=len(block.header))
            table.style = "Table Grid"
            rows = (block.header, *block.rows)
            for number, (row, cells) in enumerate(zip(table.rows, rows, strict=True)):
                for cell, runs in zip(row.cells, cells, strict=True):
                    _runs(cell.paragraphs[0], runs, bold=number == 0)

    def list(self, block: ListBlock, depth: int) -> None:
        style = _level("List Number" if block.ordered else "List Bullet", depth)
        numbering = _restart(self.document, style, block.start) if block.ordered else None
        for item in block.items:
            paragraph = self.paragraph(style=style)
            if numbering is not None:
                num_pr = paragraph._p.get_or_add_pPr().get_or_add_numPr()
                num_pr.get_or_add_ilvl().val = 0
                num_pr.get_or_add_numId().val = numbering
            _runs(paragraph, item.runs)
            for child in item.children:
                self.block(child, depth)


def _restart(document: Document, style: str, start: int) -> int | None:
    """A numbering instance of `style`'s list that starts at `start`.

    All paragraphs of a List Number style share one numbering, so a second
    list would go on counting from the first; a new instance restarts it.
    """
    style_pr = document.styles[style].element.pPr
    if style_pr is None or style_pr.numPr is None or style_pr.numPr.numId is None:
        return None
    numbering: Any = document.part.numbering_part.numbering_definitions._numbering
    abstract = numbering.num_having_numId(style_pr.numPr.numId.val).abstractNumId.val
    instance = numbering.add_num(abstract)
    instance.add_lvlOverride(ilvl=0).add_startOverride(start)
    return int(instance.numId)


def _level(base: str, depth: int) -> str:
    level = min(depth, MAX_STYLE_LEVEL)
    return base if level <= 1 else f"{base} {level}"


def _runs(paragraph: DocxParagraph, runs: Runs, *, bold: bool = False) -> None:
    from docx.oxml.ns import qn

    for part in runs:
        run = paragraph.add_run(part.text)
        if bold or part.bold:
            run.bold = True
        if part.italic:
            run.italic = True
        if part.code:
            run.font.name = MONOSPACE
            fonts = run._element.get_or_add_rPr().get_or_add_rFonts()
            fonts.set(qn("w:eastAsia"), MONOSPACE_HANGUL)
