"""What a parser gives back: a document's text as blocks, each with where it came from.

Blocks keep their kind (body, header, footer, table, footnote) because
classification markings live in headers and footers, and their place (page
or section) because citations point at it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FORMATS = ("hwpx", "hwp5", "pdf", "docx", "text")
KINDS = ("body", "header", "footer", "table", "footnote")


@dataclass(frozen=True)
class Block:
    text: str
    kind: str = "body"  # one of KINDS
    page: int | None = None  # 1-based, where the format has pages (PDF)
    section: int | None = None  # 1-based, where it has sections (HWP, HWPX, DOCX)

    def as_json(self) -> dict[str, Any]:
        return {"text": self.text, "kind": self.kind, "page": self.page, "section": self.section}


@dataclass(frozen=True)
class Parsed:
    format: str  # one of FORMATS
    title: str  # from the document's metadata, else its first line; may be ""
    pages: int | None
    blocks: tuple[Block, ...]

    @property
    def text(self) -> str:
        return "\n".join(block.text for block in self.blocks)

    def as_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "title": self.title,
            "pages": self.pages,
            "blocks": [block.as_json() for block in self.blocks],
        }
