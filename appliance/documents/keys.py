"""The documents store's key: random, sealed to the site identity and escrowed to officers.

`HOME/documents/store.key` is a sealed file (docs/formats/sealed.md, content
id `appliance-documents-key`) holding 32 random bytes, the key of the
encrypted store. It is sealed to every site identity the home's config names
(the service opens it with the same identity that unseals the model; a home
with none gets its own `HOME/keys/documents.key`) and, as escrow, to every
security officer's recipient: an officer can open it on another host to
restore a backup (docs/formats/documents.md). `store.recipients` lists what
it is sealed to; when the officers change, the key is sealed again to the
new set, and nothing else about the store changes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from appliance.config import ensure_dir, load_home_config
from appliance.errors import ConfigError, CredentialError, IntegrityError
from appliance.fsutil import atomic_writer, read_limited
from appliance.seal import (
    Identity,
    Opener,
    Passphrase,
    Recipient,
    open_bytes,
    read_identity,
    seal_bytes,
    write_identity,
)

KEY_CONTENT_ID = "appliance-documents-key"
KEY_FILE = "store.key"
RECIPIENTS_FILE = "store.recipients"
OWN_IDENTITY = "keys/documents.key"  # a home whose config names no site identity
KEY_BYTES = 32
_MAX_SEALED = 64 << 10


def documents_dir(home: Path) -> Path:
    return home / "documents"


def site_identities(home: Path) -> list[Identity]:
    """The identities the service opens the store key with (never wrapped: it runs unattended)."""
    paths = list(load_home_config(home).identities)
    if not paths:
        own = home / OWN_IDENTITY
        if not own.exists():
            ensure_dir(own.parent)
            write_identity(own, Identity.generate(), None)
        paths = [own]
    return [read_identity(path, partial(_no_passphrase, path)) for path in paths]


def _no_passphrase(path: Path) -> Passphrase:
    raise ConfigError(
        f"the site identity {path} is wrapped by a passphrase; the service opens the "
        "documents store unattended and needs it plain (mode 0600)"
    )


def store_key(home: Path, officers: Sequence[Recipient]) -> tuple[bytes, bool]:
    """The store's key, made on first use; and whether it was (re)sealed just now.

    Sealed again whenever the recipients it should have (site identities and
    officers) differ from those it was sealed to: escrow follows the officers.
    """
    directory = ensure_dir(documents_dir(home))
    identities = site_identities(home)
    wanted = _wanted(identities, officers)
    path = directory / KEY_FILE
    if path.exists():
        sealed = read_limited(path, _MAX_SEALED, "the documents store key")
        key = open_bytes(sealed, identities, str(path), expect_content_id=KEY_CONTENT_ID)
        if len(key) != KEY_BYTES:
            raise IntegrityError(f"{path} does not hold a store key")
        if _sealed_to(directory) == wanted:
            return key, False
    else:
        key = os.urandom(KEY_BYTES)
    _seal(directory, key, wanted)
    return key, True


def read_store_key(home: Path) -> bytes:
    """The store's key, opened with the site identities; nothing is made or sealed."""
    path = documents_dir(home) / KEY_FILE
    sealed = read_limited(path, _MAX_SEALED, "the documents store key")
    key = open_bytes(sealed, site_identities(home), str(path), expect_content_id=KEY_CONTENT_ID)
    if len(key) != KEY_BYTES:
        raise IntegrityError(f"{path} does not hold a store key")
    return key


def recover_store_key(home: Path, officers: Sequence[Recipient], escrow: Sequence[Opener]) -> bool:
    """On a home restored from a backup: the store key must open with this host's site
    identities; where it does not, an officer's `escrow` identity opens it and it is
    sealed again to this host's identities and the officers. Whether escrow was used."""
    path = documents_dir(home) / KEY_FILE
    if not path.exists():
        return False
    sealed = read_limited(path, _MAX_SEALED, "the documents store key")
    identities = site_identities(home)
    try:
        open_bytes(sealed, identities, str(path), expect_content_id=KEY_CONTENT_ID)
        return False
    except CredentialError:
        if not escrow:
            raise ConfigError(
                "the backup's documents store key opens with no site identity of this host; "
                "install the escrowed site identity, or give an officer's identity "
                "(--escrow-identity) to seal the key to this host"
            ) from None
    key = open_bytes(sealed, escrow, str(path), expect_content_id=KEY_CONTENT_ID)
    if len(key) != KEY_BYTES:
        raise IntegrityError(f"{path} does not hold a store key")
    _seal(documents_dir(home), key, _wanted(identities, officers))
    return True


def escrow_current(home: Path, officers: Sequence[Recipient]) -> bool:
    """Whether the key is sealed to exactly the site identities and these officers."""
    return _sealed_to(documents_dir(home)) == _wanted(site_identities(home), officers)


def _wanted(identities: Sequence[Identity], officers: Sequence[Recipient]) -> list[str]:
    return sorted({str(identity.recipient) for identity in identities} | set(map(str, officers)))


def _sealed_to(directory: Path) -> list[str]:
    try:
        text = (directory / RECIPIENTS_FILE).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    return sorted(line.strip() for line in text.splitlines() if line.strip())


def _seal(directory: Path, key: bytes, recipients: list[str]) -> None:
    sealed = seal_bytes(key, [Recipient.parse(text) for text in recipients], KEY_CONTENT_ID)
    with atomic_writer(directory / KEY_FILE, mode=0o600) as sink:
        sink.write(sealed)
    with atomic_writer(directory / RECIPIENTS_FILE, mode=0o644) as sink:
        sink.write("".join(f"{text}\n" for text in recipients).encode())
