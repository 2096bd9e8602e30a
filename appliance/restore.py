"""A home restored from a backup on a new host: a two-person act the audit log records.

`restore_home` runs only on a home with no accounts, no audit log and no
service. An admin and an officer of the backup approve it by signing in with
their accounts from it. The backup's files are laid out in a staging folder
inside the home; the log copy gets the host's new device key and the
`restore` event (audit.resume_log: it links to the backup's last seq and
chain, carries the officer's trusted checkpoint, which is required, and the
old key; numbering resumes above the checkpoint; it is anchored), the whole
log is verified, the home's state is signed, and only then is each piece
moved into the home. A failure before that leaves the home as it was; an
interruption while moving (a crash, power lost) is finished by running the
restore again (the staging folder's `moving` marker says what it was). The
home's service lock is held throughout, so no service starts meanwhile.

What a backup does not hold comes from escrow: the site identity that
unseals the model and the documents store's key, installed on the new host
by IT staff, or, for the store key alone, an officer's identity, which opens
the key and seals it again to this host (docs/formats/backup.md, "Escrow").
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from appliance.audit import Actor, AuditLog, Checkpoint, audit_dir, resume_log
from appliance.backup import Backup, open_backup
from appliance.config import ensure_dir
from appliance.documents.keys import recover_store_key
from appliance.errors import AuthenticationError, ConfigError, PermissionDeniedError
from appliance.fsutil import atomic_writer
from appliance.homestate import record_state
from appliance.identity import Users, has_users
from appliance.policy import HOME_POLICY
from appliance.seal import Opener
from appliance.service.endpoint import claim

STAGING = ".restoring"
MOVING = "moving"  # in staging: approved, verified and signed; its pieces are moving in
# The backup's own sign-in throttle, for form: staging is made anew at every attempt, and
# whoever holds the backup identity can read users.db anyway. The two sign-ins prove
# that two people who hold accounts of the backup took part.
MAX_FAILURES = 5
LOCKOUT_MINUTES = 15


@dataclass(frozen=True)
class Approver:
    """One of the two people who approve the restore: an account in the backup."""

    name: str
    password: str


@dataclass(frozen=True)
class Restored:
    seq: int  # the restore event's
    backup_seq: int
    trusted_seq: int
    accounts: int
    checkpoint: Checkpoint  # the officer's next trusted checkpoint: it pins the new key
    finished: bool = False  # this run finished a restore interrupted while moving in

    def to_json(self) -> bytes:
        fields = {k: v for k, v in vars(self).items() if k not in ("checkpoint", "finished")}
        fields["checkpoint"] = self.checkpoint.to_file_bytes().decode()
        return json.dumps(fields).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Restored:
        fields = json.loads(data)
        checkpoint = Checkpoint.parse_file(fields.pop("checkpoint").encode(), "the restore marker")
        return cls(**fields, checkpoint=checkpoint, finished=True)


def restore_home(
    home: Path,
    backup_path: Path,
    openers: list[Opener],
    trusted: Checkpoint,
    admin: Approver,
    officer: Approver,
    escrow: Sequence[Opener] = (),
) -> Restored:
    """Restore `home` from the sealed backup at `backup_path`, approved by `admin` and
    `officer` (accounts in it), resuming the log above the officer's `trusted`
    checkpoint; `escrow` (an officer's identity) opens the documents store's key
    where this host's site identity does not. Refused with one sentence, the home
    untouched, if anything fails."""
    staging = home / STAGING
    with _service_lock(home):
        if (staging / MOVING).exists():  # approved and verified; interrupted while moving
            restored = Restored.from_json((staging / MOVING).read_bytes())
            _move_into(staging, home)
            return restored
        _require_new_home(home)
        shutil.rmtree(staging, ignore_errors=True)  # what a failed restore left
        try:
            # The backup is opened inside staging too: nothing of it outside the home.
            with open_backup(backup_path, openers, workdir=ensure_dir(staging)) as backup:
                restored = _restore_into(staging, home, backup, trusted, admin, officer, escrow)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        with atomic_writer(staging / MOVING) as sink:  # from here on, a rerun finishes
            sink.write(restored.to_json())
        _move_into(staging, home)
    return restored


def _restore_into(
    staging: Path,
    home: Path,
    backup: Backup,
    trusted: Checkpoint,
    admin: Approver,
    officer: Approver,
    escrow: Sequence[Opener],
) -> Restored:
    """The restored home, whole, in `staging`: approved, resumed, verified, signed."""
    _lay_out(backup, staging, home)
    approved = {
        "admin": _approve(staging, admin, "admin"),
        "officer": _approve(staging, officer, "officer"),
    }
    actor = Actor(admin.name, "admin")
    made = resume_log(audit_dir(staging), trusted, actor, approved)
    with AuditLog(audit_dir(staging)) as log:
        log.verify(trusted=trusted)  # the copy and the restore, end to end
        recover_store_key(staging, log.officers, escrow)
        record_state(staging, log, actor, "restore")
        checkpoint = log.store.latest_checkpoint()
    with Users(staging) as users:
        accounts = len(users.accounts())
    backup_seq = int(backup.manifest["last_seq"])
    return Restored(made.seq, backup_seq, trusted.seq, accounts, checkpoint or made)


@contextlib.contextmanager
def _service_lock(home: Path) -> Iterator[None]:
    """The home's service lock, held for the whole restore: no service starts meanwhile."""
    try:
        fd = claim(ensure_dir(home))
    except ConfigError:
        raise ConfigError(f"an appliance service serves {home}; stop it before a restore") from None
    try:
        yield
    finally:
        os.close(fd)


def _require_new_home(home: Path) -> None:
    if has_users(home):
        raise ConfigError(f"{home} has accounts; a backup is restored only into a new home")
    if any((audit_dir(home) / name).exists() for name in ("log.db", "device.key", "anchor")):
        raise ConfigError(f"{home} has an audit log; a backup is restored only into a new home")


def _lay_out(backup: Backup, staging: Path, home: Path) -> None:
    """The backup's files as the home holds them (private), its policy link, and this
    host's identities (copies; the home keeps its own) for the store key's check."""
    for source in sorted(backup.files()):
        target = staging / source.relative_to(backup.root)
        ensure_dir(target.parent)
        shutil.copyfile(source, target, follow_symlinks=False)
        os.chmod(target, 0o600)
    backup.restore_policy_link(staging)
    link = staging / HOME_POLICY
    if link.is_symlink() and not os.path.isabs(os.readlink(link)):
        # Made absolute as the home would resolve it, so the state signed in staging is
        # the state of the home the link is moved into.
        absolute = os.path.normpath(home / os.readlink(link))
        link.unlink()
        link.symlink_to(absolute)
    keys = home / "keys"
    if keys.is_dir():
        shutil.copytree(keys, staging / "keys", symlinks=True)


def _approve(staging: Path, approver: Approver, role: str) -> str:
    """The approver signs in with their account in the backup, which must hold `role`."""
    with Users(staging) as users:
        result = users.sign_in(
            approver.name,
            approver.password,
            max_failures=MAX_FAILURES,
            lockout_minutes=LOCKOUT_MINUTES,
        )
    principal = result.principal
    if principal is None:
        raise AuthenticationError(
            f"the backup has no {role} {approver.name} with that password", code="wrong_password"
        )
    if principal.role != role:
        raise PermissionDeniedError(
            f"{approver.name} is not an {role} in the backup; a restore needs one admin and "
            "one officer of it"
        )
    return principal.user


def _move_into(staging: Path, home: Path) -> None:
    """Each top-level piece into the home; the audit folder last, so a home that has
    an audit log is a whole restored one."""
    pieces = sorted(staging.iterdir(), key=lambda path: path.name == "audit")
    for piece in pieces:
        if piece.name == MOVING:
            continue
        target = home / piece.name
        if target.is_dir() and not target.is_symlink() and piece.is_dir():
            for inner in piece.iterdir():
                os.replace(inner, target / inner.name)
        else:
            os.replace(piece, target)
    shutil.rmtree(staging)  # the marker last: until it goes, a rerun finishes the move
