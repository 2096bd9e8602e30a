"""Seal: header and STREAM payload."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from appliance.errors import CredentialError, InputError, IntegrityError
from appliance.seal import Identity, open_bytes
from appliance.seal.header import parse_header
from tests.fuzz.harness.common import derived_key, refusals

SEALED_IDENTITY = Identity(X25519PrivateKey.from_private_bytes(derived_key("sealed identity")))


def fuzz_sealed(data: bytes) -> None:
    with refusals(InputError, IntegrityError):
        parsed = parse_header(data, "fuzz.sealed")
        assert 0 < parsed.size <= len(data)
        assert parsed.header.stanzas
    with refusals(InputError, IntegrityError, CredentialError):
        plain = open_bytes(data, [SEALED_IDENTITY], "fuzz.sealed")
        assert len(plain) == parse_header(data, "fuzz.sealed").header.length
