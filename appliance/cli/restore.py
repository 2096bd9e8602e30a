"""`appliance restore FILE`: a new home from a sealed backup, approved by two people."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from appliance.audit import Checkpoint
from appliance.cli.passphrase import add_passphrase_option, openers, read_secret
from appliance.config import appliance_home
from appliance.errors import UsageError
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
    as_home_owner(home)
    restored = restore_home(home, args.backup, keys, trusted, admin, officer, escrow)
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
        "Give officers the new key ('appliance audit key'); 'audit verify' reports the restore "
        "and never calls this log complete."
    )
    return 0
