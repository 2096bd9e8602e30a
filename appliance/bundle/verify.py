"""The host's side of The Update Framework: verify a bundle before anything leaves it.

`python-tuf`'s ngclient does the client workflow (root chain, timestamp,
snapshot, targets; signatures, thresholds, versions, expiry, lengths and
hashes) with a fetcher that reads members of the bundle instead of URLs. It
works on a copy of the host's trusted metadata; the copy replaces the trusted
one only when the caller commits, after the release is in place, so a
refused or interrupted install changes no trust state.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tuf.api import exceptions
from tuf.api.metadata import Metadata, TargetFile, Targets
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from appliance.bundle.archive import METADATA, TARGETS, BundleArchive
from appliance.bundle.manifest import (
    ADAPTERS_DIR,
    BINARIES_DIR,
    MANIFEST,
    MAX_MANIFEST,
    Manifest,
    parse_manifest,
)
from appliance.errors import BundleError

_SCHEME = "bundle:///"
# Upper bounds on metadata sizes (bytes): a bundle cannot feed endless data.
LIMITS = UpdaterConfig(
    root_max_length=256 << 10,
    timestamp_max_length=16 << 10,
    snapshot_max_length=64 << 10,
    targets_max_length=4 << 20,
    max_root_rotations=32,
)


class _ArchiveFetcher(FetcherInterface):
    """Serves `bundle:///metadata/...` and `bundle:///targets/...` from the tar."""

    def __init__(self, archive: BundleArchive) -> None:
        self.archive = archive

    def _fetch(self, url: str) -> Iterator[bytes]:
        name = url.removeprefix(_SCHEME)
        if self.archive.size(name) is None:
            raise exceptions.DownloadHTTPError(f"{name} is not in the bundle", 404)
        return self.archive.stream(name)


@dataclass
class VerifiedBundle:
    """A bundle whose metadata and every file were verified against the host's trust."""

    archive: BundleArchive
    updater: Updater
    work: Path  # the updated trusted metadata, committed with commit_trust()
    manifest: Manifest | None = None
    targets: dict[str, TargetFile] = field(default_factory=dict)

    @property
    def release(self) -> str:
        return self._manifest.release

    @property
    def content_id(self) -> str:
        return self._manifest.content_id

    @property
    def model_file(self) -> str:
        return self._manifest.model_file

    @property
    def model_sha256(self) -> str:
        return self._manifest.model_sha256

    @property
    def binaries(self) -> list[str]:
        """The shipped binaries' target paths (libexec/NAME), each signed."""
        return sorted(self._manifest.binaries)

    @property
    def adapters(self) -> list[str]:
        """The shipped adapters' names, each sealed in its signed adapters/NAME.sealed."""
        return [adapter.name for adapter in self._manifest.adapters]

    @property
    def wheel_hashes(self) -> dict[str, str]:
        """The signed sha256 of each wheel, by file name."""
        found = {path.removeprefix("wheels/"): info for path, info in self.targets.items()}
        return {
            name: info.hashes["sha256"]
            for name, info in found.items()
            if name.endswith(".whl") and "/" not in name
        }

    @property
    def _manifest(self) -> Manifest:
        if self.manifest is None:
            raise BundleError(f"{self.archive.path} has not been verified")
        return self.manifest

    @property
    def metadata_version(self) -> int:
        return _verified_targets(self.work).version

    def extract(self, path: str, destination: Path) -> Path:
        """Copy one target out, verified again as it is copied (the tar could change)."""
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.updater.download_target(self.targets[path], str(destination))
        except (exceptions.RepositoryError, exceptions.DownloadError) as exc:
            raise _refusal(self.archive.path, exc) from None
        return destination

    def close(self) -> None:
        self.archive.close()
        shutil.rmtree(self.work, ignore_errors=True)

    def __enter__(self) -> VerifiedBundle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def verify_bundle(path: Path, trust: Path | None, pinned_root: bytes | None) -> VerifiedBundle:
    """Verify `path` against the trusted metadata in `trust`, or a root pinned now.

    Raises BundleError with the reason for any failure. Nothing is written
    outside a private temporary directory.
    """
    if trust is None and pinned_root is None:
        raise BundleError(
            "this host trusts no bundle signer yet; pin the root with --trust root.json"
        )
    archive = BundleArchive(path)
    work = Path(tempfile.mkdtemp(prefix="appliance-trust-"))
    try:
        if trust is not None:
            for item in trust.glob("*.json"):
                shutil.copyfile(item, work / item.name)
        bootstrap = pinned_root if trust is None else None
        updater = Updater(
            str(work),
            _SCHEME + METADATA,
            target_base_url=_SCHEME + TARGETS,
            fetcher=_ArchiveFetcher(archive),
            config=LIMITS,
            bootstrap=bootstrap,
        )
        updater.refresh()
        verified = VerifiedBundle(archive, updater, work)
        verified.targets = _check_targets(archive, _verified_targets(work))
        verified.manifest = _manifest(archive, verified.targets)
    except (exceptions.RepositoryError, exceptions.DownloadError) as exc:
        _discard(archive, work)
        raise _refusal(path, exc) from None
    except (ValueError, TypeError, KeyError) as exc:  # malformed metadata
        _discard(archive, work)
        raise BundleError(f"{path} was refused: its metadata is malformed ({exc})") from None
    except BaseException:
        _discard(archive, work)
        raise
    return verified


def commit_trust(verified: VerifiedBundle, trust: Path) -> None:
    """Make the verified bundle's metadata the host's trusted metadata (atomic swap)."""
    staged = trust.with_name(f".{trust.name}.new")
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(verified.work, staged, symlinks=True)
    old = trust.with_name(f".{trust.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if trust.exists():
        trust.rename(old)
    staged.rename(trust)
    shutil.rmtree(old, ignore_errors=True)


def trusted_versions(trust: Path) -> dict[str, object]:
    """What the host trusts now: role versions and expiry, for `status`."""
    found: dict[str, object] = {}
    for role in ("root", "timestamp", "snapshot", "targets"):
        try:
            signed = json.loads((trust / f"{role}.json").read_text())["signed"]
        except (OSError, ValueError, KeyError):
            continue
        found[role] = {"version": signed["version"], "expires": signed["expires"]}
    return found


def _check_targets(archive: BundleArchive, signed: Targets) -> dict[str, TargetFile]:
    """Every member listed and intact; every listed file present."""
    listed = dict(signed.targets)
    present = set(archive.target_names())
    for name in sorted(present - set(listed)):
        raise BundleError(
            f"{archive.path} was refused: '{TARGETS}{name}' is not listed in the signed "
            "targets metadata (an unsigned or added file)"
        )
    for name in sorted(set(listed) - present):
        raise BundleError(f"{archive.path} was refused: the signed file '{name}' is missing")
    for name, info in listed.items():
        size = archive.size(TARGETS + name)
        if size != info.length:
            raise BundleError(
                f"{archive.path} was refused: '{name}' is {size:,} bytes, the signed "
                f"metadata says {info.length:,} (altered, or from another release)"
            )
        if not _hash_matches(archive.stream(TARGETS + name), info):
            raise BundleError(
                f"{archive.path} was refused: '{name}' does not match its signed hash "
                "(altered, or from another release)"
            )
    return listed


def _hash_matches(chunks: Iterator[bytes], info: TargetFile) -> bool:
    expected = info.hashes.get("sha256")
    if expected is None:
        return False  # the appliance signs sha256; anything else is not ours
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return hmac.compare_digest(digest.hexdigest(), expected)


def _verified_targets(work: Path) -> Targets:
    """The targets role ngclient verified and stored in the working trust directory."""
    return Metadata[Targets].from_file(str(work / "targets.json")).signed


def _manifest(archive: BundleArchive, targets: dict[str, TargetFile]) -> Manifest:
    """The signed manifest, checked before its release or model file becomes a path."""
    if MANIFEST not in targets:
        raise BundleError(f"{archive.path} was refused: it has no {MANIFEST}")
    if targets[MANIFEST].length > MAX_MANIFEST:
        raise BundleError(f"{archive.path} was refused: its {MANIFEST} is too large")
    data = b"".join(archive.stream(TARGETS + MANIFEST))  # verified above
    try:
        manifest = parse_manifest(data)
    except ValueError as exc:
        raise BundleError(
            f"{archive.path} was refused: its {MANIFEST} is unusable: {exc}"
        ) from None
    if manifest.model_file not in targets:
        raise BundleError(
            f"{archive.path} was refused: its {MANIFEST} names a model file it does not sign"
        )
    # The binaries it names are exactly the signed libexec/ files, with the same hashes:
    # the installed copies are later checked against the manifest (doctor).
    shipped = {name for name in targets if name.startswith(BINARIES_DIR)}
    for name in sorted(shipped | set(manifest.binaries)):
        signed = targets[name].hashes.get("sha256") if name in targets else None
        if signed is None or manifest.binaries.get(name) != signed:
            raise BundleError(
                f"{archive.path} was refused: its {MANIFEST} and its signed targets "
                f"disagree on the binary '{name}'"
            )
    # The adapters it lists are exactly the signed adapters/ files: none unlisted, none
    # missing. (Each one's plaintext sha256 is checked when the home opens it.)
    sealed = {name for name in targets if name.startswith(ADAPTERS_DIR)}
    listed = {adapter.file for adapter in manifest.adapters}
    for name in sorted(sealed ^ listed):
        raise BundleError(
            f"{archive.path} was refused: its {MANIFEST} and its signed targets "
            f"disagree on the adapter '{name}'"
        )
    return manifest


def _refusal(path: Path, exc: Exception) -> BundleError:
    """One sentence naming the attack class a TUF failure stands for."""
    if isinstance(exc, exceptions.ExpiredMetadataError):
        why = f"its metadata has expired, a frozen or stale bundle ({exc})"
    elif isinstance(exc, exceptions.BadVersionNumberError):
        why = (
            "its metadata versions go back from what this host trusts, a rollback "
            f"(or metadata mixed from another release): {exc}"
        )
    elif isinstance(exc, exceptions.UnsignedMetadataError):
        why = f"it is not signed by keys this host trusts, a wrong or revoked key ({exc})"
    elif isinstance(exc, exceptions.DownloadLengthMismatchError):
        why = f"a metadata file is larger than allowed, endless data ({exc})"
    elif isinstance(exc, exceptions.LengthOrHashMismatchError):
        why = f"a file does not match its signed length and hash ({exc})"
    elif isinstance(exc, exceptions.DownloadHTTPError):
        why = f"required metadata is missing ({exc})"
    else:
        why = f"{type(exc).__name__}: {exc}"
    return BundleError(f"{path} was refused: {why}")


def _discard(archive: BundleArchive, work: Path) -> None:
    archive.close()
    shutil.rmtree(work, ignore_errors=True)
