"""Drafts: an answer (Markdown) rendered as a classified HWPX, DOCX or Markdown file.

`render(draft, fmt)` is the whole interface: it checks and cleans the draft,
parses each section's Markdown once (`parse_markdown`) and hands the blocks
to one renderer. Every format carries the marking at the top and the bottom
of every page. python-hwpx and python-docx are imported only when a draft of
their format is rendered, so importing this package stays cheap.
"""

from appliance.drafts.markdown import parse_markdown
from appliance.drafts.model import (
    Block,
    Draft,
    Heading,
    ListBlock,
    ListItem,
    Marking,
    Paragraph,
    Run,
    Section,
    Table,
)
from appliance.drafts.render import FORMATS, render

__all__ = [
    "FORMATS",
    "Block",
    "Draft",
    "Heading",
    "ListBlock",
    "ListItem",
    "Marking",
    "Paragraph",
    "Run",
    "Section",
    "Table",
    "parse_markdown",
    "render",
]
