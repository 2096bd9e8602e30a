"""Sealed files: model weights encrypted at rest, opened only into sealed memory.

Format: docs/formats/sealed.md. Public API; other modules import only what is
listed here.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from appliance.errors import InputError, IntegrityError, UsageError
from appliance.fsutil import atomic_writer
from appliance.seal.header import (
    DEFAULT_SEGMENT_SIZE,
    MAGIC,
    Header,
    ParsedHeader,
    Stanza,
    is_content_id,
)
from appliance.seal.identity import IDENTITY_CONTENT_ID, read_identity, write_identity
from appliance.seal.keys import (
    DEFAULT_WORK_FACTOR,
    MIN_WORK_FACTOR,
    Identity,
    Opener,
    Passphrase,
    Recipient,
    Sealer,
    decode_key_text,
    encode_key_text,
)
from appliance.seal.memory import MemoryReport, SealedMemory, harden_process, is_hardened
from appliance.seal.stream import Progress, open_segments, read_header, seal_stream, unlock

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "DEFAULT_WORK_FACTOR",
    "IDENTITY_CONTENT_ID",
    "MIN_WORK_FACTOR",
    "Header",
    "Identity",
    "MemoryReport",
    "Opener",
    "ParsedHeader",
    "Passphrase",
    "Progress",
    "Recipient",
    "SealedMemory",
    "SealedModel",
    "Sealer",
    "Stanza",
    "decode_key_text",
    "encode_key_text",
    "harden_process",
    "inspect_file",
    "is_content_id",
    "is_hardened",
    "is_sealed",
    "load_sealed",
    "open_bytes",
    "read_identity",
    "seal_bytes",
    "seal_file",
    "unseal_file",
    "write_identity",
]


def is_sealed(path: str | os.PathLike[str]) -> bool:
    """Whether `path` starts like a sealed file (says nothing of its validity)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(len(MAGIC) + 1) == MAGIC.encode() + b"\n"
    except OSError:
        return False


def inspect_file(path: Path) -> ParsedHeader:
    """The header, parsed but not authenticated (that needs a key)."""
    with _open_input(path) as handle:
        return read_header(handle, str(path))


def seal_file(
    source: Path,
    target: Path,
    sealers: Sequence[Sealer],
    content_id: str,
    *,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    progress: Progress | None = None,
) -> Header:
    """Encrypt `source` to a new file `target` (staged, fsynced, renamed)."""
    _refuse_existing(target)
    with _open_input(source) as handle, atomic_writer(target, mode=0o644) as sink:
        length = os.fstat(handle.fileno()).st_size
        return seal_stream(
            handle,
            length,
            sink,
            sealers,
            content_id,
            segment_size=segment_size,
            progress=progress,
        )


def unseal_file(
    source: Path,
    target: Path,
    openers: Sequence[Opener],
    *,
    expect_content_id: str | None = None,
    progress: Progress | None = None,
) -> Header:
    """Decrypt to a plaintext file; it appears only once the whole file authenticated."""
    _refuse_existing(target)
    name = str(source)
    with _open_input(source) as handle:
        parsed = read_header(handle, name)
        _check_content_id(parsed, expect_content_id, name)
        file_key = unlock(parsed, openers, name)
        with atomic_writer(target, mode=0o600) as sink:
            for segment in open_segments(handle, parsed, file_key, name, progress=progress):
                sink.write(segment)
    return parsed.header


def seal_bytes(data: bytes, sealers: Sequence[Sealer], content_id: str) -> bytes:
    """A small message as one sealed file, in memory (audit content, for instance)."""
    sink = io.BytesIO()
    seal_stream(io.BytesIO(data), len(data), sink, sealers, content_id)
    return sink.getvalue()


def open_bytes(
    blob: bytes, openers: Sequence[Opener], name: str, *, expect_content_id: str | None = None
) -> bytes:
    """The plaintext of a sealed file held in memory; `name` is used in errors."""
    handle = io.BytesIO(blob)
    parsed = read_header(handle, name)
    _check_content_id(parsed, expect_content_id, name)
    file_key = unlock(parsed, openers, name)
    return b"".join(bytes(segment) for segment in open_segments(handle, parsed, file_key, name))


@dataclass
class SealedModel:
    """A decrypted model in sealed memory; `path` is what the engine opens."""

    header: Header
    memory: SealedMemory
    report: MemoryReport
    sha256: str  # of the plaintext, to match a catalog pin
    pinned: bool = False  # it matched the sha256 the caller expected

    @property
    def path(self) -> str:
        return self.memory.path

    def close(self) -> None:
        self.memory.close()


def load_sealed(
    source: Path,
    openers: Sequence[Opener],
    *,
    expect_content_id: str | None = None,
    expect_sha256: str | None = None,
    progress: Progress | None = None,
) -> SealedModel:
    """Decrypt `source` straight into sealed memory; no plaintext byte reaches a disk.

    With `expect_sha256` (a pin from a signed bundle manifest), plaintext of
    any other digest is refused with IntegrityError and `pinned` says it held.
    """
    name = str(source)
    harden_process()  # before any plaintext exists in this process
    with _open_input(source) as handle:
        parsed = read_header(handle, name)
        _check_content_id(parsed, expect_content_id, name)
        file_key = unlock(parsed, openers, name)
        memory = SealedMemory(parsed.header.length)
        try:
            digest = hashlib.sha256()
            for segment in open_segments(handle, parsed, file_key, name, progress=progress):
                memory.append(segment)
                digest.update(segment)
            report = memory.seal()
            found = digest.hexdigest()
            if expect_sha256 is not None and not hmac.compare_digest(found, expect_sha256):
                raise IntegrityError(
                    f"{name} does not decrypt to the sha256 it is pinned to; "
                    "it was replaced or corrupted"
                )
        except BaseException:
            memory.close()  # a failed load leaves no plaintext behind
            raise
    return SealedModel(parsed.header, memory, report, found, expect_sha256 is not None)


def _check_content_id(parsed: ParsedHeader, expected: str | None, name: str) -> None:
    found = parsed.header.content_id
    if expected is not None and found != expected:
        raise IntegrityError(f"{name} holds '{found}', not the expected '{expected}'")


def _refuse_existing(target: Path) -> None:
    if target.exists() or target.is_symlink():
        raise UsageError(f"{target} already exists; refusing to overwrite it")


def _open_input(path: Path) -> BinaryIO:
    try:
        handle = open(path, "rb")  # noqa: SIM115 - returned to a with-statement
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
        handle.close()
        raise InputError(f"{path} is not a regular file")
    return handle
