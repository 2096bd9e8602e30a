"""The sealed-file header: parse, render and authenticate (docs/formats/sealed.md).

The header is short ASCII text, one field per line, so an officer can read it
with `head`; it ends with an HMAC-SHA-256 over everything before it. Parsing is
strict (fixed field order, canonical numbers and base64, bounded sizes): one
file has exactly one encoding, and nothing unbounded is read before the MAC
has been checked.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from appliance.errors import InputError, IntegrityError

MAGIC = "appliance-sealed/v1"
SUITE_AES_256_GCM = "AES-256-GCM"
SUITES = (SUITE_AES_256_GCM,)

FILE_KEY_SIZE = 32
SALT_SIZE = 32
MAC_SIZE = 32
TAG_SIZE = 16
DEFAULT_SEGMENT_SIZE = 1 << 20
MIN_SEGMENT_SIZE = 64
MAX_SEGMENT_SIZE = 64 << 20
MAX_LENGTH = 1 << 50
MAX_HEADER_SIZE = 16 << 10
MAX_STANZAS = 32
MAX_STANZA_BODY = 512

_CONTENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}")
_NUMBER = re.compile(r"0|[1-9][0-9]{0,17}")
_WORD = re.compile(r"[\x21-\x7e]{1,64}")


def is_content_id(text: str) -> bool:
    return _CONTENT_ID.fullmatch(text) is not None


@dataclass(frozen=True)
class Stanza:
    """One key slot: the file key wrapped for one recipient or passphrase."""

    type: str
    args: tuple[str, ...]
    body: bytes

    def render(self) -> str:
        return f"-> {' '.join((self.type, *self.args))}\n{b64encode(self.body)}\n"


@dataclass(frozen=True)
class Header:
    suite: str
    segment_size: int
    length: int
    content_id: str
    salt: bytes
    stanzas: tuple[Stanza, ...] = field(default=())

    @property
    def segment_count(self) -> int:
        """Segments in the payload; an empty plaintext is one empty final segment."""
        return max(1, -(-self.length // self.segment_size))

    @property
    def payload_size(self) -> int:
        return self.length + TAG_SIZE * self.segment_count

    def unauthenticated_bytes(self) -> bytes:
        """Everything the MAC covers: the header up to and including `---`."""
        lines = [
            f"{MAGIC}\n",
            f"suite: {self.suite}\n",
            f"segment-size: {self.segment_size}\n",
            f"length: {self.length}\n",
            f"content-id: {self.content_id}\n",
            f"salt: {b64encode(self.salt)}\n",
            *(stanza.render() for stanza in self.stanzas),
            "---",
        ]
        return "".join(lines).encode("ascii")

    def render(self, mac: bytes) -> bytes:
        return self.unauthenticated_bytes() + f" {b64encode(mac)}\n".encode("ascii")


@dataclass(frozen=True)
class ParsedHeader:
    header: Header
    mac: bytes
    size: int  # bytes from the start of the file to the first payload byte


def header_mac(header: Header, file_key: bytes) -> bytes:
    return _mac(header, file_key).finalize()


def verify_mac(parsed: ParsedHeader, file_key: bytes) -> None:
    """Constant-time check of the header MAC; raises if any header byte changed."""
    try:
        _mac(parsed.header, file_key).verify(parsed.mac)
    except InvalidSignature:
        raise IntegrityError("the sealed file's header was modified (MAC mismatch)") from None


def _mac(header: Header, file_key: bytes) -> hmac.HMAC:
    mac = hmac.HMAC(header_key(header, file_key), hashes.SHA256())
    mac.update(header.unauthenticated_bytes())
    return mac


def header_key(header: Header, file_key: bytes) -> bytes:
    return _hkdf(file_key, header.salt, b"appliance-sealed/v1 header")


def payload_key(header: Header, file_key: bytes) -> bytes:
    """The STREAM key; the suite and content id are bound into it."""
    info = b"\x00".join(
        (b"appliance-sealed/v1 payload", header.suite.encode(), header.content_id.encode())
    )
    return _hkdf(file_key, header.salt, info)


def _hkdf(key: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(key)


def parse_header(data: bytes, name: str) -> ParsedHeader:
    """Parse the header at the start of `data` (at least its first MAX_HEADER_SIZE bytes)."""
    if not data.startswith(MAGIC.encode() + b"\n"):
        raise InputError(f"{name} is not a sealed file (no {MAGIC} header)")
    reader = _Lines(data[:MAX_HEADER_SIZE], name)
    reader.next()  # the magic line
    suite = reader.field("suite")
    if suite not in SUITES:
        raise InputError(f"{name} uses the cipher suite {suite!r}, which this version lacks")
    segment_size = reader.number("segment-size")
    if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
        raise reader.bad(f"segment size {segment_size} is out of range")
    length = reader.number("length")
    if length > MAX_LENGTH:
        raise reader.bad(f"length {length} is out of range")
    content_id = reader.field("content-id")
    if not is_content_id(content_id):
        raise reader.bad("the content id is malformed")
    salt = reader.base64(reader.field("salt"), SALT_SIZE)
    stanzas: list[Stanza] = []
    while True:
        line = reader.next()
        if line.startswith("--- "):
            mac = reader.base64(line[4:], MAC_SIZE)
            break
        if not line.startswith("-> "):
            raise reader.bad("expected a key slot or the MAC line")
        words = line[3:].split(" ")
        if not all(_WORD.fullmatch(word) for word in words):
            raise reader.bad("a key slot line is malformed")
        body = reader.base64(reader.next(), None)
        if len(body) > MAX_STANZA_BODY:
            raise reader.bad("a key slot is too long")
        stanzas.append(Stanza(words[0], tuple(words[1:]), body))
        if len(stanzas) > MAX_STANZAS:
            raise reader.bad("it has too many key slots")
    if not stanzas:
        raise reader.bad("it has no key slot")
    header = Header(suite, segment_size, length, content_id, salt, tuple(stanzas))
    return ParsedHeader(header, mac, reader.offset)


class _Lines:
    """Line-at-a-time reader over the header bytes, with one error style."""

    def __init__(self, data: bytes, name: str) -> None:
        self.data = data
        self.name = name
        self.offset = 0

    def bad(self, reason: str) -> IntegrityError:
        return IntegrityError(f"{self.name} has a damaged sealed header: {reason}")

    def next(self) -> str:
        end = self.data.find(b"\n", self.offset)
        if end < 0:
            raise self.bad("it is truncated or longer than allowed")
        raw = self.data[self.offset : end]
        self.offset = end + 1
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise self.bad("it contains non-ASCII bytes") from None

    def field(self, key: str) -> str:
        line = self.next()
        prefix = f"{key}: "
        if not line.startswith(prefix):
            raise self.bad(f"expected the '{key}' field")
        return line[len(prefix) :]

    def number(self, key: str) -> int:
        text = self.field(key)
        if not _NUMBER.fullmatch(text):
            raise self.bad(f"'{key}' is not a canonical decimal number")
        return int(text)

    def base64(self, text: str, size: int | None) -> bytes:
        try:
            value = b64decode(text)
        except ValueError:
            raise self.bad("a base64 value is not canonical") from None
        if size is not None and len(value) != size:
            raise self.bad(f"a value has {len(value)} bytes instead of {size}")
        return value


def b64encode(data: bytes) -> str:
    """Standard base64 without padding, as in the age format."""
    return base64.b64encode(data).decode("ascii").rstrip("=")


def b64decode(text: str) -> bytes:
    """Strict inverse of b64encode: rejects padding, whitespace and non-canonical tails."""
    if "=" in text or not text.isascii():
        raise ValueError("not canonical base64")
    try:
        value = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError("not base64") from exc
    if b64encode(value) != text:
        raise ValueError("not canonical base64")
    return value
