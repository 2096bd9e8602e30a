"""What a document is, told by its bytes alone, never by its name.

`sniff_family` looks only at the leading bytes, so the service can refuse a
file before it starts a parser child; `sniff` (in the child) opens the
container to tell HWPX from DOCX and HWP 5 from a legacy Office file. Every
refusal is one sentence naming what the file is, when that can be told.

ZIP members are read here too, with every size checked: a member is read in
small chunks against a hard cap, so a central directory that lies about
sizes cannot make zlib inflate gigabytes in one call (what `ZipFile.read`
does: it asks zlib for up to 2 GiB at once and only then truncates).
"""

from __future__ import annotations

import codecs
import io
import re
import zipfile
from dataclasses import dataclass

from appliance.errors import DocumentError

OLE_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP_SIGNATURE = b"PK\x03\x04"
HWP3_SIGNATURE = b"HWP Document File V3"
HWP5_SIGNATURE = b"HWP Document File"
HWPX_MIMETYPE = b"application/hwp+zip"
PDF_SIGNATURE = b"%PDF-"
PDF_SEARCH = 1024  # readers accept a PDF header anywhere in the first KiB
TEXT_PRINTABLE = 0.95  # share of characters that must not be control characters
SMALL_PART = 1 << 16  # bytes read of `mimetype` or `container.xml` while sniffing
READ_CHUNK = 1 << 16
RATIO_FLOOR = 1 << 20  # below this many bytes a member cannot bomb anyone

SUPPORTED = "HWP, HWPX, PDF, DOCX or plain text"
SAVE_AS = "save it as HWPX, DOCX or PDF and try again"

# Files people are likely to try, named in the refusal: (signature, what it is).
_FOREIGN = (
    (b"{\\rtf", "an RTF document"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"\x7fELF", "a program (ELF)"),
    (b"PK\x05\x06", "an empty ZIP archive"),
)
# Streams of legacy Office files, for naming an OLE file that is not HWP.
_OLE_KINDS = (
    ("WordDocument", "a legacy Word (.doc) document"),
    ("Workbook", "a legacy Excel (.xls) workbook"),
    ("Book", "a legacy Excel (.xls) workbook"),
    ("PowerPoint Document", "a legacy PowerPoint (.ppt) presentation"),
)
_CONTROLS = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f]")  # all but tab, CR, LF, VT, FF
# Possessive (`*+`): each comment ends at its first "-->" and is never re-split, else a run
# of comments that does not end in <HWPML backtracks through every split (2^n of them).
_HWPML = re.compile(r"^\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*+<HWPML[\s>/]", re.DOTALL)


@dataclass(frozen=True)
class ZipLimits:
    entries: int = 10_000
    total_bytes: int = 1 << 30  # uncompressed, all members together
    ratio: int = 200  # per member, uncompressed / compressed


def unsupported(what: str) -> DocumentError:
    return DocumentError(
        f"The file is {what}, which is not a supported document format; {SAVE_AS}.",
        code="unsupported_format",
    )


def malformed(message: str) -> DocumentError:
    return DocumentError(message, code="malformed")


def sniff_family(head: bytes) -> str:
    """The family, from the first bytes only (give it 4 KiB): zip, ole, pdf or text."""
    if head.startswith(ZIP_SIGNATURE):
        return "zip"
    if head.startswith(OLE_SIGNATURE):
        return "ole"
    if PDF_SIGNATURE in head[:PDF_SEARCH]:
        return "pdf"
    if head.startswith(HWP3_SIGNATURE):
        raise _hwp3()
    for signature, what in _FOREIGN:
        if head.startswith(signature):
            raise unsupported(what)
    text = _decode_text(head, final=False)
    if text is None:
        raise DocumentError(
            f"The file is not a supported document ({SUPPORTED}).", code="unsupported_format"
        )
    if _HWPML.match(text):
        raise _hwpml()
    return "text"


def sniff(data: bytes) -> str:
    """The format: hwpx, hwp5, pdf, docx or text; DocumentError for anything else."""
    family = sniff_family(data[:4096])
    if family == "zip":
        return _sniff_zip(data)
    if family == "ole":
        return _sniff_ole(data)
    if family == "text" and _decode_text(data, final=True) is None:
        raise DocumentError(
            f"The file is not a supported document ({SUPPORTED}).", code="unsupported_format"
        )
    return family


def decode_text(data: bytes) -> str:
    """The text of a text file (UTF-8, or UTF-16 with a byte-order mark), BOM removed."""
    text = _decode_text(data, final=True)
    if text is None:
        raise DocumentError("The file is not valid UTF-8 or UTF-16 text.", code="malformed")
    return text


def _decode_text(data: bytes, *, final: bool) -> str | None:
    """`data` as text, or None when it is not text; `final` False allows a cut-off end."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        codec, body = "utf-16", data
    else:
        codec, body = "utf-8", data.removeprefix(codecs.BOM_UTF8)
        if b"\x00" in body:
            return None
    try:
        text = codecs.getincrementaldecoder(codec)().decode(body, final=final)
    except UnicodeDecodeError:
        return None
    if "\x00" in text:
        return None
    if not text:
        return text
    controls = len(_CONTROLS.findall(text))
    return text if controls <= (1 - TEXT_PRINTABLE) * len(text) else None


def _hwp3() -> DocumentError:
    return DocumentError(
        "HWP 3.x documents are not supported; save the document as HWPX or HWP 5 in Hancom "
        "Office and try again.",
        code="unsupported_format",
    )


def _hwpml() -> DocumentError:
    return DocumentError(
        "HWPML (XML) documents are not supported; save the document as HWPX or HWP in Hancom "
        "Office and try again.",
        code="unsupported_format",
    )


# ZIP --------------------------------------------------------------------------------------


def open_zip(data: bytes) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except MemoryError:
        raise
    except Exception:  # BadZipFile, EOFError, struct.error...: not a readable archive
        raise malformed("The file is a damaged or truncated ZIP archive.") from None


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int) -> bytes:
    """The member's bytes, read in chunks: never more than `cap` (or its declared size)."""
    if info.flag_bits & 0x1:
        raise DocumentError(
            "The document is encrypted; remove the password and try again.", code="protected"
        )
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        # zipfile inflates bzip2 and LZMA members with no bound on what one call yields.
        raise malformed("A part of the document's archive uses an unexpected compression.")
    limit = min(cap, info.file_size)
    chunks: list[bytes] = []
    total = 0
    try:
        with archive.open(info) as member:
            while chunk := member.read(READ_CHUNK):
                total += len(chunk)
                if total > limit:
                    break
                chunks.append(chunk)
    except MemoryError:
        raise
    except Exception:  # BadZipFile (CRC), zlib.error, EOFError: a damaged member
        raise malformed("The file is a damaged or truncated ZIP archive.") from None
    if total > limit and limit < info.file_size:
        raise malformed("A part of the document's archive is larger than such a part can be.")
    if total != info.file_size:
        raise malformed("A part of the document's archive is not the size it declares.")
    return b"".join(chunks)


def read_zip_parts(data: bytes, limits: ZipLimits) -> dict[str, bytes]:
    """Every member of the archive, in archive order, after checking the limits.

    Declared sizes are checked before anything is inflated (count, total,
    ratio); then each member is read against its declared size, so a member
    that lies is refused as malformed rather than inflated.
    """
    with open_zip(data) as archive:
        if len(archive.infolist()) > limits.entries:
            raise _over(f"it holds more than {limits.entries:,} parts")
        # Folders are never read, not even one that holds data: no parser sees it.
        infos = [info for info in archive.infolist() if not info.filename.endswith("/")]
        check_zip_limits(infos, limits)
        parts: dict[str, bytes] = {}
        for info in infos:
            if info.filename in parts:
                raise malformed("The document's archive holds the same part twice.")
            parts[info.filename] = read_member(archive, info, info.file_size)
        return parts


def check_zip_limits(infos: list[zipfile.ZipInfo], limits: ZipLimits) -> None:
    if len(infos) > limits.entries:
        raise _over(f"it holds more than {limits.entries:,} parts")
    total = 0
    for info in infos:
        total += info.file_size
        if total > limits.total_bytes:
            raise _over(f"it inflates beyond {limits.total_bytes >> 20:,} MiB")
        if info.file_size > RATIO_FLOOR and info.file_size > limits.ratio * max(
            info.compress_size, 1
        ):
            raise _over(f"a part inflates more than {limits.ratio} times (a ZIP bomb)")


def _over(why: str) -> DocumentError:
    return DocumentError(f"The document could not be parsed: {why}.", code="parser_failed")


def _sniff_zip(data: bytes) -> str:
    with open_zip(data) as archive:
        infos = archive.infolist()
        names = {info.filename for info in infos}
        if infos and infos[0].filename == "mimetype":
            mimetype = read_member(archive, infos[0], SMALL_PART).strip()
            if mimetype == HWPX_MIMETYPE:
                return "hwpx"
        if "Contents/content.hpf" in names or _hwpx_container(archive, names):
            return "hwpx"
        if "[Content_Types].xml" in names:
            if "word/document.xml" in names:
                return "docx"
            if any(name.startswith("xl/") for name in names):
                raise unsupported("an Excel workbook (XLSX)")
            if any(name.startswith("ppt/") for name in names):
                raise unsupported("a PowerPoint presentation (PPTX)")
        if "mimetype" in names:
            mimetype = read_member(archive, archive.getinfo("mimetype"), SMALL_PART)
            if mimetype.startswith(b"application/vnd.oasis.opendocument"):
                raise unsupported("an OpenDocument file")
            if mimetype.startswith(b"application/epub"):
                raise unsupported("an EPUB book")
    raise DocumentError(
        "The file is a ZIP archive but neither an HWPX nor a DOCX document.",
        code="unsupported_format",
    )


def _hwpx_container(archive: zipfile.ZipFile, names: set[str]) -> bool:
    """Whether META-INF/container.xml points at an HWPX package description."""
    if "META-INF/container.xml" not in names:
        return False
    info = archive.getinfo("META-INF/container.xml")
    if info.file_size > SMALL_PART:
        return False
    return b"content.hpf" in read_member(archive, info, SMALL_PART)


# OLE --------------------------------------------------------------------------------------


def _sniff_ole(data: bytes) -> str:
    from hwpx.hwp5.cfb import CompoundFile
    from hwpx.hwp5.errors import Hwp5Error

    try:
        compound = CompoundFile(data)
        streams = set(compound.stream_paths())
        header = compound.read("FileHeader") if "FileHeader" in streams else b""
    except Hwp5Error:
        raise malformed("The file is a damaged or truncated compound (OLE) file.") from None
    if "EncryptedPackage" in streams:
        raise DocumentError(
            "The document is a password-protected Office file; remove the password and try again.",
            code="protected",
        )
    if header.startswith(HWP5_SIGNATURE):
        if header.startswith(HWP3_SIGNATURE):
            raise _hwp3()
        return "hwp5"
    for stream, what in _OLE_KINDS:
        if stream in streams:
            raise unsupported(what)
    raise unsupported("a compound (OLE) file that is not an HWP document")
