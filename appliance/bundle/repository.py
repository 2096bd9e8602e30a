"""The build station's side of The Update Framework: the trust root and signed releases.

A signing directory (made by `appliance bundle init`) holds:

- `root.key`: signs root metadata (keep it offline; it changes only the keys);
- `release.key`: signs targets, snapshot and timestamp of each bundle;
- `roots/N.root.json`: every root version, a chain each signed by the one before;
- `root.json`: the newest root, which IT staff pin on hosts;
- `state.json`: the last metadata version used, so each bundle's is higher.

Roles and thresholds follow TUF 1.0; consistent snapshots are off (a bundle
carries exactly one release).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from appliance.bundle.keys import generate_key, load_signer
from appliance.config import ensure_dir
from appliance.errors import ConfigError, UsageError
from appliance.fsutil import atomic_writer, read_limited

ROOT_KEY = "root.key"
RELEASE_KEY = "release.key"
RELEASE_ROLES = ("targets", "snapshot", "timestamp")
ROOT_DAYS = 365
TARGETS_DAYS = 365
MAX_METADATA = 1 << 20
_SERIALIZER = JSONSerializer(compact=False)


@dataclass(frozen=True)
class SignedRelease:
    """Serialized metadata of one release: the root chain and the three release roles."""

    roots: list[bytes]  # 1.root.json ... N.root.json
    targets: bytes
    snapshot: bytes
    timestamp: bytes
    version: int

    def members(self) -> dict[str, bytes]:
        """The bundle's metadata members, root chain first."""
        chain = {f"{n}.root.json": data for n, data in enumerate(self.roots, start=1)}
        return chain | {
            "timestamp.json": self.timestamp,
            "snapshot.json": self.snapshot,
            "targets.json": self.targets,
        }


def init(directory: Path, passphrase: str, *, now: datetime | None = None) -> bytes:
    """Create the signing keys and root version 1; returns root.json's bytes."""
    ensure_dir(directory)
    if (directory / "root.json").exists():
        raise UsageError(f"{directory} already holds a trust root")
    root_key = generate_key(directory / ROOT_KEY, passphrase)
    release_key = generate_key(directory / RELEASE_KEY, passphrase)
    root = Root(expires=_days(ROOT_DAYS, now), consistent_snapshot=False)
    root.add_key(root_key, "root")
    for role in RELEASE_ROLES:
        root.add_key(release_key, role)
    metadata = Metadata(root)
    metadata.sign(load_signer(directory / ROOT_KEY, passphrase))
    _save_root(directory, metadata)
    _save_state(directory, 0)
    return metadata.to_bytes(_SERIALIZER)


def rotate(directory: Path, passphrase: str, role: str, *, now: datetime | None = None) -> int:
    """Replace the root or release key; returns the new root version.

    The new root is signed by the old root key and, for a root rotation, by
    the new one too, so hosts that trust the old root accept it and the old
    key is revoked from then on.
    """
    if role not in ("root", "release"):
        raise UsageError("rotate the 'root' or the 'release' key")
    current = load_root(directory)
    old_signer = load_signer(directory / ROOT_KEY, passphrase)
    root = current.signed
    root.version += 1
    root.expires = _days(ROOT_DAYS, now)
    key_file = directory / (ROOT_KEY if role == "root" else RELEASE_KEY)
    retired = key_file.with_name(f"{key_file.name}.retired-v{root.version - 1}")
    key_file.rename(retired)
    new_key = generate_key(key_file, passphrase)
    for name in ("root",) if role == "root" else RELEASE_ROLES:
        for keyid in list(root.roles[name].keyids):
            root.revoke_key(keyid, name)
        root.add_key(new_key, name)
    metadata = Metadata(root)
    metadata.sign(old_signer)
    if role == "root":
        metadata.sign(load_signer(key_file, passphrase), append=True)
    _save_root(directory, metadata)
    return root.version


def sign_release(
    directory: Path,
    passphrase: str,
    targets: dict[str, Path],
    *,
    timestamp_days: int,
    now: datetime | None = None,
    key: Path | None = None,
) -> SignedRelease:
    """Sign metadata over `targets` (bundle path -> local file) with the release key
    (`key` names another key file, as a retired key would be)."""
    if timestamp_days < 1:
        raise UsageError("the timestamp must stay valid for at least one day")
    signer = load_signer(key or directory / RELEASE_KEY, passphrase)
    version = _load_state(directory) + 1
    files = {
        path: TargetFile.from_file(path, str(local), ["sha256"])
        for path, local in sorted(targets.items())
    }
    targets_md = Metadata(Targets(version=version, expires=_days(TARGETS_DAYS, now), targets=files))
    snapshot_md = Metadata(
        Snapshot(
            version=version,
            expires=_days(TARGETS_DAYS, now),
            meta={"targets.json": MetaFile(version=version)},
        )
    )
    timestamp_md = Metadata(
        Timestamp(
            version=version,
            expires=_days(timestamp_days, now),
            snapshot_meta=MetaFile(version=version),
        )
    )
    for metadata in (targets_md, snapshot_md, timestamp_md):
        metadata.sign(signer)
    _save_state(directory, version)
    roots = sorted((directory / "roots").glob("*.root.json"), key=_root_version)
    return SignedRelease(
        roots=[read_limited(path, MAX_METADATA, "root metadata") for path in roots],
        targets=targets_md.to_bytes(_SERIALIZER),
        snapshot=snapshot_md.to_bytes(_SERIALIZER),
        timestamp=timestamp_md.to_bytes(_SERIALIZER),
        version=version,
    )


def load_root(directory: Path) -> Metadata[Root]:
    path = directory / "root.json"
    if not path.exists():
        raise ConfigError(f"{directory} holds no trust root; run 'appliance bundle init'")
    return Metadata[Root].from_bytes(read_limited(path, MAX_METADATA, "root metadata"))


def root_fingerprint(root_json: bytes) -> str:
    """What IT staff compare by voice or on paper: the root's key ids, hashed."""
    root = Metadata[Root].from_bytes(root_json).signed
    keyids = sorted(root.roles["root"].keyids)
    digest = hashlib.sha256(json.dumps(keyids).encode()).hexdigest()
    return "SHA256:" + " ".join(digest[i : i + 4] for i in range(0, 32, 4))


def _root_version(path: Path) -> int:
    return int(path.name.split(".", 1)[0])


def _save_root(directory: Path, metadata: Metadata[Root]) -> None:
    data = metadata.to_bytes(_SERIALIZER)
    ensure_dir(directory / "roots")
    with atomic_writer(directory / "roots" / f"{metadata.signed.version}.root.json") as sink:
        sink.write(data)
    with atomic_writer(directory / "root.json", mode=0o644) as sink:
        sink.write(data)


def _load_state(directory: Path) -> int:
    try:
        return int(json.loads((directory / "state.json").read_text())["metadata_version"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"{directory}/state.json is missing or damaged") from None


def _save_state(directory: Path, version: int) -> None:
    with atomic_writer(directory / "state.json") as sink:
        sink.write(json.dumps({"metadata_version": version}).encode())


def _days(days: int, now: datetime | None) -> datetime:
    return ((now or datetime.now(UTC)) + timedelta(days=days)).replace(microsecond=0)
