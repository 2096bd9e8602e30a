"""HWP 5 (.hwp): refused when protected, else converted to HWPX parts in memory.

The protection flags of the FileHeader are checked before any record is
read: a password, distribution (배포용) or DRM document keeps its real text
encrypted (a distribution document in ViewText/) and shows only a notice in
BodyText and the preview text, which must never be taken for its content.
python-hwpx converts the rest into OWPML parts, headers, footers, tables and
notes included, which the HWPX walker reads.
"""

from __future__ import annotations

from hwpx.hwp5.cfb import CompoundFile
from hwpx.hwp5.errors import Hwp5Error
from hwpx.hwp5.fileheader import FileHeader, parse_file_header
from hwpx.hwp5.package import convert

from appliance.documents.model import Parsed
from appliance.documents.parsers import finish
from appliance.documents.parsers.hwpx import extract
from appliance.errors import DocumentError

# FileHeader property bits (python-hwpx fileheader.FLAG_BITS), and what each protects with.
PASSWORD_BIT = 1
DISTRIBUTION_BIT = 2
DRM_BIT = 4
CERTIFICATE_ENCRYPTED_BIT = 8
CERTIFICATE_DRM_BIT = 10
TRACK_CHANGES_BIT = 14
_PROTECTIONS = (
    (PASSWORD_BIT, "The HWP document is password-protected; remove the password and try again."),
    (
        DISTRIBUTION_BIT,
        "The HWP document is a distribution (배포용) document whose text is encrypted; "
        "ask for the original document.",
    ),
    (DRM_BIT, "The HWP document is DRM-protected; ask for an unprotected copy."),
    (CERTIFICATE_ENCRYPTED_BIT, "The HWP document is encrypted with a certificate."),
    (CERTIFICATE_DRM_BIT, "The HWP document is DRM-protected with a certificate."),
)


def parse(data: bytes) -> Parsed:
    header, streams = _header(data)
    refuse_protected(header, streams)
    try:
        converted = convert(data)
    except Hwp5Error as exc:
        raise _error(exc) from None
    title, blocks = extract(converted.files)
    return finish("hwp5", blocks, title=title, pages=None)


def refuse_protected(header: FileHeader, streams: list[str]) -> None:
    for bit, message in _PROTECTIONS:
        if header.flags & (1 << bit):
            raise DocumentError(message, code="protected")
    # Only a document that tracks changes keeps its body in ViewText with the flag unset.
    tracks_changes = header.flags & (1 << TRACK_CHANGES_BIT)
    if not tracks_changes and any(stream.startswith("ViewText/") for stream in streams):
        raise DocumentError(_PROTECTIONS[1][1], code="protected")


def _header(data: bytes) -> tuple[FileHeader, list[str]]:
    try:
        compound = CompoundFile(data)
        header = parse_file_header(compound.read("FileHeader"))
        streams = compound.stream_paths()
    except Hwp5Error as exc:
        raise _error(exc) from None
    if header.version[0] != 5:
        raise DocumentError(
            f"HWP file format version {header.version_text} is not supported.",
            code="unsupported_format",
        )
    return header, streams


def _error(exc: Hwp5Error) -> DocumentError:
    code = exc.code
    if code in ("hwp5-password", "hwp5-distribution", "hwp5-drm"):
        return DocumentError("The HWP document is protected and cannot be read.", code="protected")
    if code == "hwp5-limit-exceeded":
        return DocumentError(
            "The document could not be parsed: a part of it is larger than the HWP limits.",
            code="parser_failed",
        )
    if code in ("hwp5-not-hwp5", "hwp5-version-unsupported"):
        return DocumentError("The file is not an HWP 5 document.", code="unsupported_format")
    return DocumentError("The HWP document is damaged or truncated.", code="malformed")
