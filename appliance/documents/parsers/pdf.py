"""PDF: text page by page with PDFium (pypdfium2), headers and footers by position.

A PDF has no header or footer as such: the lines in a band at the top and
at the bottom of each page are taken as the page's header and footer, which
is where classification markings are stamped. A PDF that needs a password to
open is refused; one with only an owner password (restrictions on printing
or copying) opens without one and is read. A file that does not end in
`%%EOF` is refused as truncated: PDFium would silently read what is left.
"""

from __future__ import annotations

from collections.abc import Iterator

import pypdfium2 as pdfium  # type: ignore[import-untyped]

from appliance.documents.model import Block, Parsed
from appliance.documents.parsers import finish
from appliance.errors import DocumentError

MARGIN_BAND = 0.08  # of the page height: the header band at the top, the footer band at the bottom
EOF_WINDOW = 4096  # `%%EOF` must be this close to the end of the file
PASSWORD_ERROR = 4  # FPDF_ERR_PASSWORD
SECURITY_ERROR = 6  # FPDF_ERR_SECURITY: an unsupported security handler


def parse(data: bytes) -> Parsed:
    if b"%%EOF" not in data[-EOF_WINDOW:]:
        raise DocumentError(
            "The PDF is truncated (it has no end-of-file marker).", code="malformed"
        )
    try:
        document = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        raise _open_error(exc) from None
    try:
        title = document.get_metadata_value("Title") or ""
        blocks = [block for index in range(len(document)) for block in _page(document, index)]
        return finish("pdf", blocks, title=title, pages=len(document))
    except pdfium.PdfiumError:
        raise DocumentError(
            "The PDF is damaged and its text cannot be read.", code="malformed"
        ) from None
    finally:
        document.close()


def _open_error(exc: Exception) -> DocumentError:
    code = getattr(exc, "err_code", None)
    if code == PASSWORD_ERROR:
        return DocumentError(
            "The PDF is password-protected; remove the password and try again.", code="protected"
        )
    if code == SECURITY_ERROR:
        return DocumentError("The PDF is encrypted with an unsupported scheme.", code="protected")
    return DocumentError("The PDF is damaged or truncated.", code="malformed")


def _page(document: pdfium.PdfDocument, index: int) -> Iterator[Block]:
    """The page's header, body and footer: each line goes by where its first character sits."""
    page = document[index]
    textpage = page.get_textpage()
    try:
        number = index + 1
        text = textpage.get_text_range()
        # Sideways pages, and text whose characters cannot be told apart, are all body.
        if page.get_rotation() % 180 or len(text) != textpage.count_chars():
            yield Block(text, "body", page=number)
            return
        _, bottom, _, top = page.get_bbox()
        band = (top - bottom) * MARGIN_BAND
        lines: dict[str, list[str]] = {"header": [], "body": [], "footer": []}
        start = 0
        for line in text.split("\r\n"):
            if line.strip():
                first = start + len(line) - len(line.lstrip())
                _, low, _, high = textpage.get_charbox(first)
                middle = (low + high) / 2
                if middle > top - band:
                    lines["header"].append(line)
                elif middle < bottom + band:
                    lines["footer"].append(line)
                else:
                    lines["body"].append(line)
            start += len(line) + 2
        for kind, found in lines.items():
            yield Block("\n".join(found), kind, page=number)
    finally:
        textpage.close()
        page.close()
