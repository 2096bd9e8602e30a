"""Opening a backup: unsealed, checked member by member, extracted into a private folder.

The sealed format authenticates every byte, but sealing is not signing: anyone
who knows a recipient string can seal a file to it. So nothing in the archive
is trusted for its origin: the members are read by the strict reader of
`archive.py` (never by tarfile), each must be one the manifest lists with its
sha256, the manifest must be signed by the device key it names, and the audit
log copy must verify under that key and end where the manifest says.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from appliance.audit import PublicKey, Report, TamperError
from appliance.backup.archive import CHUNK, Member, read_members
from appliance.backup.logcopy import verify_log_copy
from appliance.backup.make import BACKUP_CONTENT_ID, BACKUP_FORMAT, SIGNATURE_CONTEXT
from appliance.errors import ApplianceError, ConfigError, InputError, IntegrityError, UsageError
from appliance.policy import HOME_POLICY
from appliance.seal import Opener
from appliance.seal.stream import open_segments, read_header, unlock

MAX_MANIFEST = 4 << 20
SIGNATURE_BYTES = 64
_HEX = re.compile(r"[0-9a-f]{64}")
_LOG = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Backup:
    """An opened backup: its files under `root` (as in a home), and its manifest."""

    path: Path  # the sealed file
    root: Path  # private (0700); removed when the `with` block ends
    manifest: dict[str, Any]
    report: Report  # the log copy's verification under its own keys

    def files(self) -> list[Path]:
        """Every file it holds, under `root` at its place in a home (policy.toml among
        them only where the home's policy was a file, not a link)."""
        return [self.root / name for name in sorted(self.manifest["files"])]

    def restore_policy_link(self, home: Path) -> None:
        """Make `home`'s policy.toml the link it was (a file is among `files()`)."""
        link = self.manifest["policy_link"]
        if link["kind"] != "link":
            return
        target = home / HOME_POLICY
        if target.exists() or target.is_symlink():
            raise ConfigError(f"{target} already exists; refusing to replace it")
        os.symlink(link["target"], target)


@contextlib.contextmanager
def open_backup(
    path: Path, identities: Sequence[Opener], *, workdir: Path | None = None
) -> Iterator[Backup]:
    """Unseal `path`, check it whole, extract it into a private temporary folder (in
    `workdir`, else the system's), yield it, and remove the folder afterwards.

    A file that is not a backup, is sealed to someone else, was altered or
    truncated, or holds anything odd is refused with one sentence naming it.
    """
    name = str(path)
    with tempfile.TemporaryDirectory(prefix="appliance-backup-", dir=workdir) as private:
        root = Path(private)  # mkdtemp: 0700
        with _named(name), _input(path) as handle:
            parsed = read_header(handle, name)
            found = parsed.header.content_id
            if found != BACKUP_CONTENT_ID:
                raise IntegrityError(f"{name} holds '{found}', not an appliance backup")
            key = unlock(parsed, identities, name)
            with tempfile.TemporaryFile(dir=root) as plain:  # unnamed, in the 0700 folder
                for segment in open_segments(handle, parsed, key, name):
                    plain.write(segment)
                plain.flush()  # every byte authenticated from here on
                length = parsed.header.length
                members = read_members(plain, length, name)
                manifest = _manifest(plain, members, name)
                _extract(plain, members[2:], manifest["files"], root, name)
        with _named(name):
            report = _check_log(root / "audit" / "log.db", manifest, name)
        yield Backup(path, root, manifest, report)


def _check_log(path: Path, manifest: dict[str, Any], name: str) -> Report:
    """The log copy verifies whole, is the log the manifest names, ends where it says,
    and its newest checkpoints are signed by the key that signed the manifest."""
    try:
        copy = verify_log_copy(path)
    except TamperError as exc:
        raise IntegrityError(f"{name}: its {exc}") from None
    if copy.log != manifest["log"]:
        raise IntegrityError(f"{name}: its audit log copy is another log than its manifest names")
    if copy.last_seq != manifest["last_seq"] or copy.chain.hex() != manifest["chain"]:
        raise IntegrityError(f"{name}: its audit log copy does not end where its manifest says")
    if str(copy.key) != manifest["device_key"]:
        raise IntegrityError(f"{name}: its audit log copy is signed by another device key")
    return copy.report


def _manifest(handle: BinaryIO, members: list[Member], name: str) -> dict[str, Any]:
    """`backup.json` (the first member) checked field by field, and signed (the second)."""
    if len(members) < 3 or [m.name for m in members[:2]] != ["backup.json", "backup.sig"]:
        raise _odd(name, "it does not begin with its manifest and signature")
    body_member, signature_member = members[0], members[1]
    if body_member.size > MAX_MANIFEST or signature_member.size != SIGNATURE_BYTES:
        raise _odd(name, "its manifest or signature has an impossible size")
    body = _read(handle, body_member)
    try:
        manifest = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _odd(name, "its manifest is not JSON") from None
    _check_fields(manifest, name)
    key = PublicKey.parse(manifest["device_key"])
    if not key.verifies(_read(handle, signature_member), SIGNATURE_CONTEXT + body):
        raise IntegrityError(f"{name}: its manifest is not signed by the device key it names")
    listed = set(manifest["files"])
    present = {member.name for member in members[2:]}
    if listed != present:
        odd = sorted(listed ^ present)[0]
        raise _odd(name, f"{odd} is in its manifest or its archive but not both")
    if "audit/log.db" not in present:
        raise _odd(name, "it holds no audit log")
    return cast(dict[str, Any], manifest)


def _check_fields(manifest: Any, name: str) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != BACKUP_FORMAT:
        raise _odd(name, f"its manifest is not {BACKUP_FORMAT}")

    def kind(key: str, expected: type, pattern: re.Pattern[str] | None = None) -> None:
        value = manifest.get(key)
        if not isinstance(value, expected) or isinstance(value, bool):
            raise _odd(name, f"its manifest's {key} is missing or malformed")
        if pattern is not None and not pattern.fullmatch(str(value)):
            raise _odd(name, f"its manifest's {key} is malformed")

    kind("made_us", int)
    kind("last_seq", int)
    kind("log", str, _LOG)
    kind("chain", str, _HEX)
    kind("device_key", str)
    kind("files", dict)
    kind("policy_link", dict)
    try:
        PublicKey.parse(manifest["device_key"])
    except UsageError:
        raise _odd(name, "its manifest's device_key is not an audit key") from None
    for path, digest in manifest["files"].items():
        if not isinstance(digest, str) or not _HEX.fullmatch(digest):
            raise _odd(name, f"its manifest's sha256 of {path} is malformed")
    link = manifest["policy_link"]
    if link.get("kind") not in ("link", "file", "absent"):
        raise _odd(name, "its manifest's policy_link is malformed")
    if link["kind"] == "link" and not _link_target(link.get("target")):
        raise _odd(name, "its manifest's policy link has no valid target")
    if (link["kind"] == "file") != ("policy.toml" in manifest["files"]):
        raise _odd(name, "its manifest's policy_link and its files disagree")


def _link_target(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 4096 and "\x00" not in value


def _extract(
    handle: BinaryIO, members: list[Member], digests: dict[str, str], root: Path, name: str
) -> None:
    """Each member into `root` (new files, 0600, in new 0700 folders), its sha256 checked."""
    for member in members:
        target = root / member.name
        for folder in reversed(target.relative_to(root).parents[:-1]):
            with contextlib.suppress(FileExistsError):
                os.mkdir(root / folder, 0o700)
        digest = hashlib.sha256()
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as sink:
            handle.seek(member.offset)
            left = member.size
            while left:
                block = handle.read(min(CHUNK, left))
                if not block:
                    raise _odd(name, f"{member.name} is cut short")
                digest.update(block)
                sink.write(block)
                left -= len(block)
        if not hmac.compare_digest(digest.hexdigest(), digests[member.name]):
            raise IntegrityError(f"{name}: {member.name} is not the file its manifest names")


def _read(handle: BinaryIO, member: Member) -> bytes:
    handle.seek(member.offset)
    return handle.read(member.size)


@contextlib.contextmanager
def _input(path: Path) -> Iterator[BinaryIO]:
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise InputError(f"{path} is not a regular file")
        yield handle


@contextlib.contextmanager
def _named(name: str) -> Iterator[None]:
    """Every refusal names the file (the sealed format's MAC check says only 'the header')."""
    try:
        yield
    except OSError as exc:  # where it is unpacked: full, or not writable
        raise ConfigError(f"{name} cannot be unpacked here: {exc.strerror or exc}") from None
    except ApplianceError as exc:
        if name in exc.message:
            raise
        named = ApplianceError.__new__(type(exc))  # some classes take other arguments
        ApplianceError.__init__(named, f"{name}: {exc.message}", code=exc.code, **exc.params)
        raise named from None


def _odd(name: str, why: str) -> IntegrityError:
    return IntegrityError(f"{name} is not a backup this version reads: {why}")
