"""Signing keys of the bundle's trust roles: Ed25519, kept as passphrase-encrypted PKCS#8."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.signer import CryptoSigner, SSlibKey

from appliance.errors import CredentialError, UsageError
from appliance.fsutil import atomic_writer, read_limited

MAX_KEY_FILE = 16 << 10


def generate_key(path: Path, passphrase: str) -> SSlibKey:
    """Write a new Ed25519 key to `path` (mode 0600); returns its public key."""
    if path.exists():
        raise UsageError(f"{path} already exists; refusing to overwrite a signing key")
    if not passphrase:
        raise UsageError("a signing key needs a passphrase")
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase.encode()),
    )
    with atomic_writer(path, mode=0o600) as sink:
        sink.write(pem)
    return SSlibKey.from_crypto(private.public_key())


def load_signer(path: Path, passphrase: str) -> CryptoSigner:
    """The signer of a key file; a wrong passphrase is one clear sentence."""
    pem = read_limited(path, MAX_KEY_FILE, "the signing key")
    try:
        private = serialization.load_pem_private_key(pem, passphrase.encode())
    except (ValueError, TypeError):
        raise CredentialError(
            f"{path} cannot be opened: wrong passphrase, or not a signing key"
        ) from None
    if not isinstance(private, Ed25519PrivateKey):
        raise CredentialError(f"{path} is not an Ed25519 signing key")
    return CryptoSigner(private)
