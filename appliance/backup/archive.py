"""The archive inside a backup: a plain POSIX ustar stream, written and read here.

Writing: `TarStream` serves the archive to the sealer as a file it reads once,
built on the fly from the members (bytes in memory, or the encrypted copy of
the documents store), so the plaintext archive never exists anywhere whole.

Reading never hands untrusted bytes to `tarfile`: `read_members` parses each
512-byte header itself and accepts only what the writer makes: regular files
(type `0`), names from a fixed list (no absolute paths, no `..`, no links,
devices or folders), a valid checksum, sizes inside the archive, and nothing
after the end-of-archive marker. Sizes of 8 GiB and more use the base-256
form GNU tar reads too.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from appliance.errors import IntegrityError

BLOCK = 512
END = bytes(2 * BLOCK)
MAX_MEMBERS = 4096
CHUNK = 1 << 20
# Every name a backup may hold; anything else is refused before it is read.
NAMES = re.compile(
    r"backup\.json|backup\.sig|config\.toml|policy\.toml|drafts/copies"
    r"|audit/log\.db|audit/officers|identity/users\.db"
    r"|conversations/[a-z][a-z0-9._-]{1,31}\.db"
    r"|documents/store\.db|documents/store\.key|documents/store\.recipients"
)
_OCTAL = re.compile(rb"[0-7]{1,12}")


@dataclass(frozen=True)
class Part:
    """One member to write: its bytes, or a file of ours (read as it is sent)."""

    name: str
    data: bytes | None = None
    path: Path | None = None
    size: int = 0

    @classmethod
    def of_bytes(cls, name: str, data: bytes) -> Part:
        return cls(name, data=data, size=len(data))

    @classmethod
    def of_file(cls, name: str, path: Path) -> Part:
        return cls(name, path=path, size=path.stat().st_size)

    def sha256(self) -> str:
        if self.data is not None:
            return hashlib.sha256(self.data).hexdigest()
        assert self.path is not None
        digest = hashlib.sha256()
        with self.path.open("rb") as source:
            while block := source.read(CHUNK):
                digest.update(block)
        return digest.hexdigest()


def header(name: str, size: int) -> bytes:
    """A ustar header for a regular file `name` (ASCII, at most 100 bytes), mode 0600."""
    raw = name.encode("ascii")
    if not NAMES.fullmatch(name) or len(raw) > 100:
        raise ValueError(f"no backup member may be called {name!r}")
    block = bytearray(BLOCK)
    block[0 : len(raw)] = raw
    block[100:108] = b"0000600\0"
    block[108:116] = b"0000000\0"
    block[116:124] = b"0000000\0"
    block[124:136] = _size_field(size)
    block[136:148] = b"00000000000\0"  # mtime: the manifest carries the time that matters
    block[148:156] = b" " * 8
    block[156:157] = b"0"
    block[257:265] = b"ustar\x0000"
    block[265:274] = block[297:306] = b"appliance"
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def _size_field(size: int) -> bytes:
    if size < 8**11:
        return b"%011o\0" % size
    return b"\x80" + size.to_bytes(11, "big")


def _padding(size: int) -> int:
    return -size % BLOCK


class TarStream:
    """The archive of `parts`, read once from start to end (what seal_stream needs)."""

    def __init__(self, parts: Sequence[Part]) -> None:
        self._pieces: list[bytes | Part] = []
        for part in parts:
            self._pieces += [header(part.name, part.size), part, bytes(_padding(part.size))]
        self._pieces.append(END)
        self.length = sum(len(p) if isinstance(p, bytes) else p.size for p in self._pieces)
        self._index = 0
        self._offset = 0  # within the current piece
        self._file: BinaryIO | None = None

    def readinto(self, view: memoryview) -> int:
        filled = 0
        while filled < len(view) and self._index < len(self._pieces):
            piece = self._pieces[self._index]
            data = piece if isinstance(piece, bytes) else piece.data
            if data is not None:
                got = min(len(view) - filled, len(data) - self._offset)
                view[filled : filled + got] = data[self._offset : self._offset + got]
            else:
                assert isinstance(piece, Part)
                assert piece.path is not None
                if self._file is None:
                    self._file = piece.path.open("rb")
                want = min(len(view) - filled, piece.size - self._offset)
                got = self._file.readinto(view[filled : filled + want])  # type: ignore[attr-defined]
                if not got and want:
                    raise IntegrityError(f"{piece.path} shrank while it was being backed up")
            filled += got
            self._offset += got
            size = len(piece) if isinstance(piece, bytes) else piece.size
            if self._offset == size:
                self._next()
        return filled

    def read(self, size: int = -1) -> bytes:
        view = memoryview(bytearray(max(size, 0) if size >= 0 else self.length))
        return bytes(view[: self.readinto(view)])

    def _next(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._index += 1
        self._offset = 0

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@dataclass(frozen=True)
class Member:
    name: str
    offset: int  # of its first data byte in the archive
    size: int


def read_members(handle: BinaryIO, length: int, where: str) -> list[Member]:
    """Every member's name, place and size, each header checked before the next is read."""
    members: list[Member] = []
    names: set[str] = set()
    position = 0
    while True:
        handle.seek(position)
        block = handle.read(BLOCK)
        if len(block) < BLOCK:
            raise _damaged(where, "it ends without the end-of-archive marker")
        if block == bytes(BLOCK):
            _check_end(handle, position, length, where)
            return members
        member = _member(block, position, where)
        if len(members) >= MAX_MEMBERS:
            raise _damaged(where, f"it has more than {MAX_MEMBERS} members")
        if member.name in names:
            raise _damaged(where, f"the member {member.name} appears twice")
        position = member.offset + member.size + _padding(member.size)
        if position > length:
            raise _damaged(where, f"the member {member.name} runs past the end")
        names.add(member.name)
        members.append(member)


def _member(block: bytes, position: int, where: str) -> Member:
    stored = block[148:156]
    expected = sum(block[:148]) + 8 * 32 + sum(block[156:])
    if stored.rstrip(b"\0 ") != b"%06o" % expected:
        raise _damaged(where, f"a member header at byte {position} is damaged")
    if block[257:265] != b"ustar\x0000":
        raise _damaged(where, f"a member header at byte {position} is not ustar")
    raw = block[0:100].split(b"\0", 1)[0]
    try:
        name = raw.decode("ascii")
    except UnicodeDecodeError:
        name = ""
    if block[345:500].strip(b"\0") or not NAMES.fullmatch(name):
        raise _damaged(where, f"a member at byte {position} has a name no backup holds")
    if block[156:157] != b"0":
        raise _damaged(where, f"the member {name} is not a plain file (a link, device or folder)")
    field = block[124:136]
    if field[0] == 0x80:
        size = int.from_bytes(field[1:], "big")
    else:
        digits = field.rstrip(b"\0 ")
        if not _OCTAL.fullmatch(digits):
            raise _damaged(where, f"the member {name} has no valid size")
        size = int(digits, 8)
    return Member(name, position + BLOCK, size)


def _check_end(handle: BinaryIO, position: int, length: int, where: str) -> None:
    """Exactly the end-of-archive marker (two zero blocks) and nothing after it."""
    handle.seek(position)
    if length - position != len(END) or handle.read(len(END) + 1) != END:
        raise _damaged(where, "it holds something after the end-of-archive marker")


def _damaged(where: str, why: str) -> IntegrityError:
    return IntegrityError(f"{where} is not a backup this version reads: {why}")
