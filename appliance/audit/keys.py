"""The device's Ed25519 signing key and the checkpoints it signs.

A checkpoint says "this log, up to seq N, has chain hash C", signed by the
device key made at first start. Officers keep the latest one they verified
(the trusted checkpoint) off the host: a later log or export must extend it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from appliance.errors import ConfigError, InputError, IntegrityError
from appliance.fsutil import fsync_directory, read_limited
from appliance.seal import decode_key_text, encode_key_text

PUBLIC_KEY_PREFIX = "aak1"  # appliance audit key, version 1
CHECKPOINT_CONTEXT = b"appliance-audit/v1 checkpoint\n"
CHECKPOINT_FORMAT = "appliance-audit-checkpoint/v1"
MAX_CHECKPOINT_FILE = 4096


@dataclass(frozen=True)
class PublicKey:
    """The device's verification key; its text form is `aak1...`."""

    raw: bytes

    @classmethod
    def parse(cls, text: str) -> PublicKey:
        return cls(decode_key_text(PUBLIC_KEY_PREFIX, text.strip().lower(), "audit public key"))

    def __str__(self) -> str:
        return encode_key_text(PUBLIC_KEY_PREFIX, self.raw).lower()

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.raw).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")

    def verifies(self, signature: bytes, message: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except InvalidSignature:
            return False
        return True


class DeviceKey:
    """The private signing key, in a 0600 PKCS#8 file beside the log."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        raw = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.public = PublicKey(raw)

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    @classmethod
    def load_or_create(cls, path: Path) -> DeviceKey:
        """The key at `path`, made first if absent. Concurrent first starts agree
        on one key: each stages its own and only the first link() wins."""
        if not path.exists():
            _create_exclusive(path, Ed25519PrivateKey.generate())
        return cls.load(path)

    @classmethod
    def load(cls, path: Path) -> DeviceKey:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read the audit device key {path}: {exc.strerror}") from None
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except ValueError:
            raise ConfigError(f"{path} is not an audit device key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{path} is not an Ed25519 key")
        return cls(key)


def _create_exclusive(path: Path, key: Ed25519PrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    staging = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process made it first
            os.link(staging, path)
        fsync_directory(path.parent)
    except OSError as exc:
        raise ConfigError(f"cannot create the audit device key {path}: {exc.strerror}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging)


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement of the log's chain hash at `seq`.

    `body` is the canonical JSON that was signed; it is kept as bytes and
    never re-serialised.
    """

    body: bytes
    signature: bytes
    log: str
    seq: int
    chain: bytes
    time_us: int
    key: str  # fingerprint of the signing key

    @classmethod
    def sign(cls, key: DeviceKey, log: str, seq: int, chain: bytes, time_us: int) -> Checkpoint:
        fields: dict[str, Any] = {
            "v": 1,
            "log": log,
            "seq": seq,
            "chain": chain.hex(),
            "time_us": time_us,
            "key": key.public.fingerprint,
        }
        body = rfc8785.dumps(fields)
        signature = key.sign(CHECKPOINT_CONTEXT + body)
        return cls(body, signature, log, seq, chain, time_us, key.public.fingerprint)

    @classmethod
    def from_parts(cls, body: bytes, signature: bytes, where: str) -> Checkpoint:
        """Parse a stored or exported checkpoint (its signature is checked later)."""
        bad = IntegrityError(f"{where}: malformed checkpoint")
        try:
            fields = json.loads(body)
            chain = bytes.fromhex(fields["chain"])
            checkpoint = cls(
                body,
                signature,
                str(fields["log"]),
                int(fields["seq"]),
                chain,
                int(fields["time_us"]),
                str(fields["key"]),
            )
        except (ValueError, KeyError, TypeError):
            raise bad from None
        if fields.get("v") != 1 or len(chain) != 32 or len(signature) != 64:
            raise bad
        return checkpoint

    def signed_by(self, key: PublicKey) -> bool:
        return self.key == key.fingerprint and key.verifies(
            self.signature, CHECKPOINT_CONTEXT + self.body
        )

    # -- the trusted-checkpoint file an officer keeps ---------------------------

    def to_file_bytes(self) -> bytes:
        record = {
            "format": CHECKPOINT_FORMAT,
            "checkpoint": self.body.decode(),
            "signature": base64.b64encode(self.signature).decode(),
        }
        return json.dumps(record, indent=2).encode() + b"\n"

    @classmethod
    def read_file(cls, path: Path) -> Checkpoint:
        return cls.parse_file(read_limited(path, MAX_CHECKPOINT_FILE, "the checkpoint"), str(path))

    @classmethod
    def parse_file(cls, data: bytes, name: str) -> Checkpoint:
        """A trusted-checkpoint file's bytes (as `to_file_bytes` writes them)."""
        if len(data) > MAX_CHECKPOINT_FILE:
            raise InputError(f"{name} is not an audit checkpoint file")
        try:
            record: Any = json.loads(data)
            if record.get("format") != CHECKPOINT_FORMAT:
                raise ValueError("format")
            body = record["checkpoint"].encode()
            signature = base64.b64decode(record["signature"], validate=True)
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
            raise InputError(f"{name} is not an audit checkpoint file") from None
        return cls.from_parts(body, signature, name)

    def describe(self) -> str:
        return f"seq {self.seq}, chain {self.chain.hex()[:16]}…"
