"""Identity files: an X25519 private key, wrapped by a passphrase by default.

Plain form (for unattended services; refused unless mode 0600 or stricter):

    # appliance identity
    # created: 2026-11-28T06:40:00Z
    # recipient: apr1...
    APPLIANCE-SECRET-KEY-1...

Wrapped form: that text sealed to a single passphrase slot, content id
`appliance-identity` (the same container format as a sealed model).
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from appliance.errors import CredentialError, InputError, UsageError
from appliance.fsutil import atomic_writer
from appliance.seal.header import MAGIC
from appliance.seal.keys import SECRET_PREFIX, Identity, Passphrase
from appliance.seal.stream import open_segments, read_header, seal_stream, unlock

IDENTITY_CONTENT_ID = "appliance-identity"
MAX_IDENTITY_FILE = 64 << 10

PassphraseSource = Callable[[], Passphrase]


def write_identity(path: Path, identity: Identity, passphrase: Passphrase | None) -> None:
    """Write a new identity file, mode 0600; never replaces an existing file."""
    if path.exists() or path.is_symlink():
        raise UsageError(f"{path} already exists; refusing to overwrite an identity")
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = (
        "# appliance identity\n"
        f"# created: {created}\n"
        f"# recipient: {identity.recipient}\n"
        f"{identity.secret_text()}\n"
    ).encode("ascii")
    with atomic_writer(path, mode=0o600) as sink:
        if passphrase is None:
            sink.write(text)
        else:
            seal_stream(io.BytesIO(text), len(text), sink, [passphrase], IDENTITY_CONTENT_ID)


def read_identity(path: Path, passphrase: PassphraseSource) -> Identity:
    """Load an identity; `passphrase` is asked only if the file is wrapped."""
    name = str(path)
    try:
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise InputError(f"{name} is not a regular file")
            data = handle.read(MAX_IDENTITY_FILE + 1)
    except OSError as exc:
        raise InputError(f"cannot read the identity {name}: {exc.strerror}") from None
    if len(data) > MAX_IDENTITY_FILE:
        raise InputError(f"{name} is too large to be an identity file")
    if data.startswith(MAGIC.encode()):
        data = _unwrap(data, name, passphrase)
    elif info.st_mode & 0o077:
        raise InputError(
            f"the identity {name} is readable by other users; run 'chmod 600 {name}' first"
        )
    keys = [
        line
        for line in data.decode("ascii", errors="replace").splitlines()
        if line.startswith(SECRET_PREFIX)
    ]
    if len(keys) != 1:
        raise InputError(f"{name} is not an identity file (expected one {SECRET_PREFIX} line)")
    return Identity.parse(keys[0])


def _unwrap(data: bytes, name: str, passphrase: PassphraseSource) -> bytes:
    handle = io.BytesIO(data)
    parsed = read_header(handle, name)
    if parsed.header.content_id != IDENTITY_CONTENT_ID:
        raise InputError(f"{name} is a sealed file, not an identity")
    try:
        file_key = unlock(parsed, [passphrase()], name)
    except CredentialError:
        raise CredentialError(f"wrong passphrase for the identity {name}") from None
    return b"".join(bytes(segment) for segment in open_segments(handle, parsed, file_key, name))
