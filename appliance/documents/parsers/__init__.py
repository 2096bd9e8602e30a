"""One parser per format, each `parse(data) -> Parsed`, and what they share.

Parsers work in memory on bytes that may be hostile: they write no file,
open no connection, and raise DocumentError for what they refuse. They run
inside the parser child (documents/child.py), never in the service itself.

Every parser hands its blocks to `finish`, which cleans the text the same
way for all formats (`clean_text`) and picks the title.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from dataclasses import replace
from xml.etree import ElementTree

from appliance.documents.formats import ZipLimits, sniff
from appliance.documents.model import Block, Parsed
from appliance.errors import DocumentError

TITLE_CHARS = 120
XML_DEPTH = 256

# Private-use characters (U+E000-U+F8FF, planes 15 and 16) have no meaning
# outside the font that drew them. Symbol-font bullets that Hancom and Word
# write there are mapped (Hancom's own text export maps these); every other
# private-use character, such as HNC's archaic-Hangul code points, is dropped.
PRIVATE_USE_SYMBOLS = {
    "\uf046": "\u261e",  # ☞
    "\uf06c": "\u25cf",  # ●
    "\uf06e": "\u25a0",  # ■
    "\uf06f": "\u25a1",  # □
    "\uf075": "\u25c6",  # ◆
    "\uf076": "\u2605",  # ★
    "\uf077": "\u25c6",  # ◆
    "\uf09f": "\u25cf",  # ●
    "\uf0a1": "\u25cb",  # ○
    "\uf0a4": "\u25cb",  # ○
    "\uf0a7": "\u25a0",  # ■
    "\uf0ab": "\u2605",  # ★
    "\uf0b7": "\u2022",  # • (Symbol font: Word's default bullet)
    "\uf0d8": "\u27a2",  # ➢ (Wingdings)
    "\uf0fc": "\u25cf",  # ●
    "\uf0fe": "\u25a1",  # □
}
# Private use, C0/C1 controls but tab and newline, BOM, noncharacters, lone surrogates.
_UNWANTED = re.compile(
    "[\ue000-\uf8ff\U000f0000-\U0010ffff\x00-\x08\x0e-\x1f\x7f-\x9f\ufeff\ufffe\uffff\ud800-\udfff]"
)
_LINE_BREAKS = re.compile("\r\n|[\r\x0b\x0c\u2028\u2029]")
_BLANK_RUN = re.compile(r"\n{3,}")


def clean_text(text: str) -> str:
    """Text as every parser emits it: "\\n" line ends, no private-use or control characters."""
    text = _LINE_BREAKS.sub("\n", text)
    return _UNWANTED.sub(lambda match: PRIVATE_USE_SYMBOLS.get(match.group(), ""), text)


def tidy(text: str) -> str:
    """`clean_text`, trailing spaces cut, at most one blank line in a row, no outer blanks."""
    lines = [line.rstrip() for line in clean_text(text).split("\n")]
    return _BLANK_RUN.sub("\n\n", "\n".join(lines)).strip("\n")


def finish(fmt: str, blocks: Iterable[Block], *, title: str | None, pages: int | None) -> Parsed:
    """The parse result: blocks tidied (empty ones dropped) and a title.

    The title is the document's own (metadata) when it has one, else the
    first non-empty line of the body.
    """
    kept = [replace(block, text=text) for block in blocks if (text := tidy(block.text).strip())]
    heading = " ".join(tidy(title or "").split())
    if not heading:
        body = (block.text for block in kept if block.kind == "body")
        heading = next((line.strip() for text in body for line in text.split("\n") if line), "")
    if len(heading) > TITLE_CHARS:
        heading = heading[:TITLE_CHARS].rstrip() + "…"
    return Parsed(format=fmt, title=heading, pages=pages, blocks=tuple(kept))


def parse(data: bytes, zip_limits: ZipLimits | None = None) -> Parsed:
    """Sniff the format and parse with its parser (imported only when needed)."""
    fmt = sniff(data)
    module = importlib.import_module(f"appliance.documents.parsers.{fmt}")
    if fmt in ("hwpx", "docx"):
        parsed: Parsed = module.parse(data, zip_limits=zip_limits or ZipLimits())
    else:
        parsed = module.parse(data)
    return parsed


def parse_xml(data: bytes, what: str) -> ElementTree.Element:
    """An XML part, refused when it declares a DTD or entities or nests absurdly deep."""
    if b"<!DOCTYPE" in data.replace(b"\x00", b"") or b"<!ENTITY" in data.replace(b"\x00", b""):
        raise DocumentError(f"The document's {what} declares a DTD.", code="malformed")
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError:
        raise DocumentError(
            f"The document's {what} is not well-formed XML.", code="malformed"
        ) from None
    stack = [(root, 1)]
    while stack:
        element, depth = stack.pop()
        if depth > XML_DEPTH:
            raise DocumentError(f"The document's {what} nests too deep.", code="malformed")
        stack.extend((child, depth + 1) for child in element)
    return root


def local_name(tag: object) -> str:
    """An element's tag without its namespace ("" for comments and the like)."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""
