"""Plain text and Markdown: UTF-8 (a BOM allowed) or UTF-16 with a BOM.

Paragraphs are the runs of lines between blank lines. A Markdown heading's
"#" marks are left in the text but not in the title.
"""

from __future__ import annotations

import re

from appliance.documents.formats import decode_text
from appliance.documents.model import Block, Parsed
from appliance.documents.parsers import clean_text, finish

PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
MARKDOWN_HEADING = re.compile(r"^#{1,6}[ \t]+")


def parse(data: bytes) -> Parsed:
    text = clean_text(decode_text(data))
    blocks = [Block(text=part) for part in PARAGRAPH_BREAK.split(text)]
    first = next((line.strip() for line in text.split("\n") if line.strip()), "")
    return finish("text", blocks, title=MARKDOWN_HEADING.sub("", first), pages=None)
