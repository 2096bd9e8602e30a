"""Sealing and opening a stream: header, key slots, then the STREAM payload.

Payload segment i is AES-256-GCM(payload key, nonce = i as 11 bytes big-endian
|| 1 if last else 0) over at most `segment_size` plaintext bytes. Memory stays
O(segment) whatever the file size. Truncation, dropped, reordered or appended
segments and flipped bits all fail authentication or the length bookkeeping.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.errors import CredentialError, InputError, IntegrityError, UsageError
from appliance.seal.header import (
    DEFAULT_SEGMENT_SIZE,
    FILE_KEY_SIZE,
    MAX_HEADER_SIZE,
    MAX_SEGMENT_SIZE,
    MIN_SEGMENT_SIZE,
    SALT_SIZE,
    SUITE_AES_256_GCM,
    TAG_SIZE,
    Header,
    ParsedHeader,
    header_mac,
    is_content_id,
    parse_header,
    payload_key,
    verify_mac,
)
from appliance.seal.keys import Opener, Random, Sealer

Progress = Callable[[int, int], None]  # (plaintext bytes done, total)


def segment_nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def seal_stream(
    source: BinaryIO,
    length: int,
    sink: BinaryIO,
    sealers: Sequence[Sealer],
    content_id: str,
    *,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    progress: Progress | None = None,
    random: Random = os.urandom,
) -> Header:
    """Encrypt exactly `length` bytes of `source` to `sink`, one slot per sealer."""
    if not sealers:
        raise UsageError("give at least one recipient or a passphrase")
    if not is_content_id(content_id):
        raise UsageError(f"'{content_id}' is not a valid content id (letters, digits, ._:@+-)")
    if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
        raise UsageError(f"segment size must be {MIN_SEGMENT_SIZE} to {MAX_SEGMENT_SIZE} bytes")
    file_key = random(FILE_KEY_SIZE)
    stanzas = tuple(sealer.wrap(file_key, random) for sealer in sealers)
    header = Header(SUITE_AES_256_GCM, segment_size, length, content_id, random(SALT_SIZE), stanzas)
    sink.write(header.render(header_mac(header, file_key)))
    aead = AESGCM(payload_key(header, file_key))
    buffer = _buffer_size(header)
    plain = memoryview(bytearray(buffer))
    sealed = memoryview(bytearray(buffer + TAG_SIZE))
    done = 0
    count = header.segment_count
    for index in range(count):
        size = min(segment_size, length - done)
        if _read_into(source, plain[:size]) < size:
            raise InputError("the input file shrank while it was being sealed")
        out = sealed[: size + TAG_SIZE]
        aead.encrypt_into(segment_nonce(index, index == count - 1), plain[:size], None, out)
        sink.write(out)
        done += size
        if progress:
            progress(done, length)
    if source.read(1):
        raise InputError("the input file grew while it was being sealed")
    return header


def read_header(handle: BinaryIO, name: str) -> ParsedHeader:
    """Parse the header and leave `handle` at the first payload byte."""
    parsed = parse_header(handle.read(MAX_HEADER_SIZE), name)
    handle.seek(parsed.size)
    return parsed


def unlock(parsed: ParsedHeader, openers: Sequence[Opener], name: str) -> bytes:
    """The file key from the first slot an opener unwraps, with the header MAC checked."""
    if sum(stanza.type == "scrypt" for stanza in parsed.header.stanzas) > 1:
        raise IntegrityError(f"{name} has more than one passphrase slot")
    for opener in openers:
        for stanza in parsed.header.stanzas:
            file_key = opener.unwrap(stanza)
            if file_key is not None:
                verify_mac(parsed, file_key)
                return file_key
    raise CredentialError(f"none of the given identities or passphrases opens {name}")


def open_segments(
    handle: BinaryIO,
    parsed: ParsedHeader,
    file_key: bytes,
    name: str,
    *,
    progress: Progress | None = None,
) -> Iterator[memoryview]:
    """Yield each authenticated plaintext segment, in order, in one reused buffer.

    Only a generator run to its end has proved the file whole: the last check
    (no bytes after the final segment) runs after the last segment is yielded.
    """
    header = parsed.header
    aead = AESGCM(payload_key(header, file_key))
    buffer = _buffer_size(header)
    sealed = memoryview(bytearray(buffer + TAG_SIZE))
    plain = memoryview(bytearray(buffer))
    count = header.segment_count
    done = 0
    for index in range(count):
        size = min(header.segment_size, header.length - done)
        chunk = sealed[: size + TAG_SIZE]
        got = _read_into(handle, chunk)
        if got < len(chunk):
            where = "at a segment boundary" if got == 0 else "inside a segment"
            raise IntegrityError(
                f"{name} is truncated {where} (segment {index + 1} of {count} is incomplete)"
            )
        target = plain[:size]
        try:
            aead.decrypt_into(segment_nonce(index, index == count - 1), chunk, None, target)
        except InvalidTag:
            raise IntegrityError(
                f"{name} was modified or damaged: segment {index + 1} of {count} "
                "fails authentication"
            ) from None
        done += size
        if progress:
            progress(done, header.length)
        yield target
    if handle.read(1):
        raise IntegrityError(f"{name} has bytes after its final segment")


def _buffer_size(header: Header) -> int:
    """One segment, or less for a short file: small messages stay cheap to seal."""
    return max(1, min(header.segment_size, header.length))


def _read_into(handle: BinaryIO, view: memoryview) -> int:
    """Fill `view` from `handle`; fewer bytes only at end of file."""
    filled = 0
    while filled < len(view):
        got = handle.readinto(view[filled:])  # type: ignore[attr-defined]
        if not got:
            break
        filled += got
    return filled
