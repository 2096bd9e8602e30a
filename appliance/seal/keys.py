"""Key slots: X25519 recipients and identities, and scrypt passphrases.

A sealed file's random file key is wrapped once per slot. Recipients (public)
and passphrases wrap it when sealing; identities (private) and passphrases
unwrap it when opening. Every primitive is pyca `cryptography`'s.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from appliance.errors import IntegrityError, UsageError
from appliance.seal.header import FILE_KEY_SIZE, Stanza, b64decode, b64encode

RECIPIENT_PREFIX = "apr1"
SECRET_PREFIX = "APPLIANCE-SECRET-KEY-1"
X25519_LABEL = b"appliance-sealed/v1 X25519"
SCRYPT_LABEL = b"appliance-sealed/v1 scrypt"
SCRYPT_SALT_SIZE = 16
# log2 of scrypt's N (r=8, p=1): 2^18 costs about a second and 256 MiB. Files
# asking for less than MIN are refused (a downgrade), more than MAX too (a
# denial of service: 2^20 already needs 1 GiB).
DEFAULT_WORK_FACTOR = 18
MIN_WORK_FACTOR = 17
MAX_WORK_FACTOR = 20
# Each wrapping key wraps exactly one file key, so a fixed nonce is safe.
_ZERO_NONCE = bytes(12)
_KEY_BYTES = 32


Random = Callable[[int], bytes]  # os.urandom; fixed only to build published test vectors


class Sealer(Protocol):
    """Something that wraps a file key into a slot: a recipient or a passphrase."""

    def wrap(self, file_key: bytes, random: Random = os.urandom) -> Stanza: ...


class Opener(Protocol):
    """Something that may unwrap a slot: an identity or a passphrase."""

    def unwrap(self, stanza: Stanza) -> bytes | None: ...


@dataclass(frozen=True)
class Recipient:
    """An X25519 public key; its text form is `apr1...`."""

    public_bytes: bytes

    @classmethod
    def parse(cls, text: str) -> Recipient:
        return cls(decode_key_text(RECIPIENT_PREFIX, text.strip().lower(), "recipient"))

    def __str__(self) -> str:
        return encode_key_text(RECIPIENT_PREFIX, self.public_bytes).lower()

    def wrap(self, file_key: bytes, random: Random = os.urandom) -> Stanza:
        ephemeral = X25519PrivateKey.from_private_bytes(random(_KEY_BYTES))
        share = _raw_public(ephemeral.public_key())
        shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(self.public_bytes))
        key = _x25519_wrap_key(shared, share, self.public_bytes)
        body = AESGCM(key).encrypt(_ZERO_NONCE, file_key, None)
        return Stanza("X25519", (b64encode(share),), body)


@dataclass(frozen=True)
class Identity:
    """An X25519 private key; its text form is `APPLIANCE-SECRET-KEY-1...`."""

    private_key: X25519PrivateKey = field(repr=False)

    @classmethod
    def generate(cls) -> Identity:
        return cls(X25519PrivateKey.generate())

    @classmethod
    def parse(cls, text: str) -> Identity:
        raw = decode_key_text(SECRET_PREFIX, text.strip().upper(), "identity", secret=True)
        return cls(X25519PrivateKey.from_private_bytes(raw))

    def secret_text(self) -> str:
        raw = self.private_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return encode_key_text(SECRET_PREFIX, raw).upper()

    @property
    def recipient(self) -> Recipient:
        return Recipient(_raw_public(self.private_key.public_key()))

    def unwrap(self, stanza: Stanza) -> bytes | None:
        if stanza.type != "X25519":
            return None
        if len(stanza.args) != 1 or len(stanza.body) != FILE_KEY_SIZE + 16:
            raise IntegrityError("a sealed file has a malformed X25519 key slot")
        try:
            share = b64decode(stanza.args[0])
            if len(share) != _KEY_BYTES:
                raise ValueError("wrong share size")
            shared = self.private_key.exchange(X25519PublicKey.from_public_bytes(share))
        except ValueError:  # bad base64 or a low-order point (all-zero shared secret)
            raise IntegrityError("a sealed file has a malformed X25519 key slot") from None
        key = _x25519_wrap_key(shared, share, self.recipient.public_bytes)
        return _try_unwrap(key, stanza.body)


@dataclass(frozen=True)
class Passphrase:
    """A passphrase slot: the file key wrapped under scrypt(passphrase)."""

    secret: bytes = field(repr=False)
    work_factor: int = DEFAULT_WORK_FACTOR

    def __post_init__(self) -> None:
        if not self.secret:
            raise UsageError("the passphrase is empty")
        if not MIN_WORK_FACTOR <= self.work_factor <= MAX_WORK_FACTOR:
            raise UsageError(
                f"the scrypt work factor must be {MIN_WORK_FACTOR} to {MAX_WORK_FACTOR}"
            )

    def wrap(self, file_key: bytes, random: Random = os.urandom) -> Stanza:
        salt = random(SCRYPT_SALT_SIZE)
        key = _scrypt(self.secret, salt, self.work_factor)
        body = AESGCM(key).encrypt(_ZERO_NONCE, file_key, None)
        return Stanza("scrypt", (b64encode(salt), str(self.work_factor)), body)

    def unwrap(self, stanza: Stanza) -> bytes | None:
        if stanza.type != "scrypt":
            return None
        malformed = IntegrityError("a sealed file has a malformed passphrase slot")
        if len(stanza.args) != 2 or len(stanza.body) != FILE_KEY_SIZE + 16:
            raise malformed
        try:
            salt = b64decode(stanza.args[0])
        except ValueError:
            raise malformed from None
        factor = stanza.args[1]
        if len(salt) != SCRYPT_SALT_SIZE or not factor.isdigit() or factor != str(int(factor)):
            raise malformed
        if not MIN_WORK_FACTOR <= int(factor) <= MAX_WORK_FACTOR:
            raise IntegrityError(
                f"a sealed file asks for scrypt work factor {factor}, outside the allowed "
                f"{MIN_WORK_FACTOR} to {MAX_WORK_FACTOR}"
            )
        return _try_unwrap(_scrypt(self.secret, salt, int(factor)), stanza.body)


def _try_unwrap(key: bytes, body: bytes) -> bytes | None:
    try:
        return AESGCM(key).decrypt(_ZERO_NONCE, body, None)
    except InvalidTag:
        return None  # not this slot's key


def _x25519_wrap_key(shared: bytes, share: bytes, recipient: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=share + recipient, info=X25519_LABEL)
    return hkdf.derive(shared)


def _scrypt(secret: bytes, salt: bytes, work_factor: int) -> bytes:
    kdf = Scrypt(salt=SCRYPT_LABEL + salt, length=32, n=1 << work_factor, r=8, p=1)
    return kdf.derive(secret)


def _raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# -- text encoding ------------------------------------------------------------
# prefix + base32(key || first 4 bytes of SHA-256(prefix || key)), unpadded:
# copy-and-paste mistakes are caught by the checksum before any key is used.
# The audit log's device key uses the same encoding with its own prefix.


def _checksum(prefix: str, key: bytes) -> bytes:
    return hashlib.sha256(prefix.encode("ascii") + key).digest()[:4]


def encode_key_text(prefix: str, key: bytes) -> str:
    body = base64.b32encode(key + _checksum(prefix, key)).decode("ascii").rstrip("=")
    return prefix + body


def decode_key_text(prefix: str, text: str, what: str, *, secret: bool = False) -> bytes:
    """The 32 key bytes of `text`, or a UsageError that names no secret."""
    shown = "the key" if secret else f"'{text[:12]}...'"
    bad = UsageError(f"{shown} is not a valid {what} (expected {prefix}...)")
    if not text.startswith(prefix):
        raise bad
    body = text[len(prefix) :].upper()
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except ValueError:
        raise bad from None
    key, check = raw[:-4], raw[-4:]
    if len(key) != _KEY_BYTES or not hmac.compare_digest(check, _checksum(prefix, key)):
        raise bad
    return key
