"""`appliance restore FILE`: a new home from a sealed backup, approved by two people."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from appliance.audit import Checkpoint
from appliance.cli.passphrase import add_passphrase_option, openers, read_secret
from appliance.config import appliance_home
from appliance.errors import InputError, UsageError
from appliance.restore import Approver, restore_home
from appliance.service import as_home_owner


def register(commands: Any) -> None:
    restore = commands.add_parser(
        "restore",
        help="restore a new home from a sealed backup (an admin and an officer of it approve)",
    )
    restore.add_argument("backup", type=Path, metavar="FILE", help="the sealed backup")
    restore.add_argument(
        "--identity",
        action="append",
        type=Path,
        required=True,
        metavar="KEYFILE",
        help="the escrowed identity the backup is sealed to (repeatable)",
    )
    add_passphrase_option(restore, "that unlocks the identity")
    restore.add_argument(
        "--trusted-checkpoint",
        type=Path,
        required=True,
        metavar="FILE",
        help="the officer's last trusted checkpoint: the log resumes above it",
    )
    restore.add_argument(
        "--save-checkpoint",
        type=Path,
        metavar="FILE",
        help="where to write the officer's next trusted checkpoint, which pins the new "
        "device key (default: replace the --trusted-checkpoint file)",
    )
    restore.add_argument(
        "--escrow-identity",
        action="append",
        type=Path,
        metavar="KEYFILE",
        help="an officer's identity: opens the documents store's key where this host's "
        "site identity does not, and seals it to this host (repeatable)",
    )
    restore.add_argument("--admin", required=True, metavar="NAME", help="an admin of the backup")
    restore.add_argument(
        "--officer", required=True, metavar="NAME", help="an officer of the backup"
    )
    for role in ("admin", "officer"):
        restore.add_argument(
            f"--{role}-password-file",
            type=Path,
            metavar="FILE",
            help=f"read the {role}'s password from FILE (first line) instead of the terminal",
        )
    restore.set_defaults(run=run_restore)


def run_restore(args: argparse.Namespace) -> int:
    if args.admin == args.officer:
        raise UsageError(
            "a restore needs two people: --admin and --officer name different accounts"
        )
    trusted = Checkpoint.read_file(args.trusted_checkpoint)
    keys = openers(args.identity, args.passphrase_file)
    escrow = openers(args.escrow_identity, None) if args.escrow_identity else []
    admin = Approver(
        args.admin, read_secret(args.admin_password_file, f"Password for {args.admin}")
    )
    officer = Approver(
        args.officer, read_secret(args.officer_password_file, f"Password for {args.officer}")
    )
    home = appliance_home()
    save = args.save_checkpoint or args.trusted_checkpoint
    # Opened as the officer who runs this, before acting as the home's owner.
    with _opened_for_writing(save) as keep:
        as_home_owner(home)
        restored = restore_home(home, args.backup, keys, trusted, admin, officer, escrow)
        keep(restored.checkpoint.to_file_bytes())
    if restored.finished:
        print(f"Finished the restore of {home} that was interrupted while moving in.")
    lost = (
        f"the events {restored.backup_seq + 1}-{restored.trusted_seq} after the backup are lost"
        if restored.trusted_seq > restored.backup_seq
        else "the backup reaches the officer's checkpoint"
    )
    print(
        f"Restored {home} from {args.backup.name}: {restored.accounts} accounts; the audit "
        f"log resumes at seq {restored.seq} under a new device key ({lost})."
    )
    print(
        f"The officer's next trusted checkpoint ({restored.checkpoint.describe()}), signed by "
        f"the new device key, is in {save}: keep it off the host. 'audit verify' against it "
        "confirms this restore; no verify ever calls this log complete."
    )
    return 0


@contextlib.contextmanager
def _opened_for_writing(path: Path) -> Iterator[Callable[[bytes], None]]:
    """`path` opened now (it may be the officer's, out of the service user's reach);
    what is given to write replaces its content, durably. Made here, it goes again
    if the block fails."""
    existed = os.path.lexists(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise InputError(f"cannot write the checkpoint {path}: {exc.strerror}") from None

    def keep(data: bytes) -> None:
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            os.fsync(fd)
        except OSError as exc:
            raise InputError(
                f"the home is restored, but its checkpoint could not be written to {path} "
                f"({exc.strerror}); export the log and save its checkpoint instead"
            ) from None

    try:
        yield keep
    except BaseException:
        if not existed:
            with contextlib.suppress(OSError):
                os.unlink(path)
        raise
    finally:
        os.close(fd)
