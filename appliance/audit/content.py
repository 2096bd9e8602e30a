"""Prompt and answer text, sealed to the security officer.

Envelope encryption: each log handle makes a random content key and seals it
once to the officers' X25519 recipients (docs/formats/sealed.md); each
event's content is then AES-256-GCM under that key. Operators and IT staff
who can read the database still cannot read what was asked, and one X25519
operation per process, not per event, keeps durable appends cheap.

Content blob: 0x01 || key id (16 bytes) || nonce (12 bytes) || ciphertext+tag
key id = first 16 bytes of SHA-256(sealed content key); AAD = label || 0x01 || key id.
The event's leaf records SHA-256(blob); metadata stays in clear and queryable.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.audit.canonical import canonical_json
from appliance.errors import ConfigError, CredentialError, IntegrityError, UsageError
from appliance.fsutil import atomic_writer
from appliance.seal import Opener, Recipient, open_bytes, seal_bytes

KEY_CONTENT_ID = "audit-content-key@v1"
BLOB_VERSION = b"\x01"
KEY_ID_SIZE = 16
NONCE_SIZE = 12
HEADER_SIZE = 1 + KEY_ID_SIZE + NONCE_SIZE
AAD_LABEL = b"appliance-audit/v1 content"
MAX_RECIPIENTS = 8


def key_id(sealed_key: bytes) -> bytes:
    return hashlib.sha256(sealed_key).digest()[:KEY_ID_SIZE]


def blob_key_id(blob: bytes) -> bytes | None:
    """The content key a blob names, or None if it is not a content blob."""
    if len(blob) < HEADER_SIZE + 16 or blob[:1] != BLOB_VERSION:
        return None
    return blob[1 : 1 + KEY_ID_SIZE]


@dataclass
class ContentSealer:
    """A fresh content key, sealed to the officers; encrypts each event's content."""

    officers: Sequence[Recipient]
    stored: bool = False  # whether the sealed key is in the database yet
    sealed_key: bytes = field(init=False)
    id: bytes = field(init=False)
    _aead: AESGCM = field(init=False, repr=False)

    def __post_init__(self) -> None:
        key = AESGCM.generate_key(bit_length=256)
        self.sealed_key = seal_bytes(key, self.officers, KEY_CONTENT_ID)
        self.id = key_id(self.sealed_key)
        self._aead = AESGCM(key)

    def seal(self, content: Mapping[str, str]) -> bytes:
        nonce = os.urandom(NONCE_SIZE)  # random 96-bit nonces: one key per process
        plain = canonical_json(dict(content))
        head = BLOB_VERSION + self.id
        return head + nonce + self._aead.encrypt(nonce, plain, AAD_LABEL + head)


class ContentOpener:
    """Decrypts content blobs with an officer identity, unwrapping each key once."""

    def __init__(self, sealed_keys: Mapping[bytes, bytes], openers: Sequence[Opener]) -> None:
        self._sealed_keys = sealed_keys
        self._openers = openers
        self._keys: dict[bytes, AESGCM] = {}

    def open(self, blob: bytes, seq: int) -> dict[str, str]:
        ident = blob_key_id(blob)
        if ident is None or ident not in self._sealed_keys:
            raise IntegrityError(f"the content of seq {seq} names no content key of this log")
        aead = self._keys.get(ident) or self._unwrap(ident, seq)
        head, nonce = blob[: 1 + KEY_ID_SIZE], blob[1 + KEY_ID_SIZE : HEADER_SIZE]
        try:
            plain = aead.decrypt(nonce, blob[HEADER_SIZE:], AAD_LABEL + head)
            value = json.loads(plain)
        except (InvalidTag, ValueError):
            raise IntegrityError(f"the content of seq {seq} is damaged") from None
        if not isinstance(value, dict):
            raise IntegrityError(f"the content of seq {seq} is not an object")
        return {str(key): str(item) for key, item in value.items()}

    def _unwrap(self, ident: bytes, seq: int) -> AESGCM:
        name = f"the content key of seq {seq}"
        try:
            key = open_bytes(
                self._sealed_keys[ident], self._openers, name, expect_content_id=KEY_CONTENT_ID
            )
        except CredentialError:
            raise CredentialError(
                f"the given identity cannot open the content of seq {seq}: it is sealed to the "
                "security officer"
            ) from None
        self._keys[ident] = AESGCM(key)
        return self._keys[ident]


def read_officers(path: Path) -> list[Recipient]:
    """The officer recipients configured in `path` (one per line), or none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the officer keys {path}: {exc}") from None
    lines = [line.strip() for line in text.splitlines()]
    try:
        return [Recipient.parse(line) for line in lines if line and not line.startswith("#")]
    except UsageError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def write_officers(path: Path, recipients: Sequence[Recipient]) -> None:
    if not 1 <= len(recipients) <= MAX_RECIPIENTS:
        raise UsageError(f"give 1 to {MAX_RECIPIENTS} officer recipients")
    text = "# Security officer recipients: audit content is sealed to these keys.\n"
    text += "".join(f"{recipient}\n" for recipient in recipients)
    with atomic_writer(path, mode=0o644) as handle:
        handle.write(text.encode())
