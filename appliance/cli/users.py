"""`appliance setup` and `appliance users ...`: local accounts, managed by IT admins."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from appliance.accounts import AccountAdmin
from appliance.audit import Actor, AuditLog, Event, audit_dir
from appliance.cli.auth import add_auth_options, local_account, sign_in
from appliance.cli.passphrase import read_secret
from appliance.config import appliance_home
from appliance.errors import UsageError
from appliance.identity import ROLES, Users
from appliance.policy import active_policy


def register(commands: Any) -> None:
    setup = commands.add_parser("setup", help="create the first admin account (once)")
    setup.add_argument("--admin", required=True, metavar="NAME")
    _add_new_password(setup)
    setup.set_defaults(run=run_setup)

    users = commands.add_parser("users", help="manage local accounts (IT admins)")
    sub = users.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="create an account")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--clearance", metavar="LEVEL", help="a policy level id (default: lowest)")
    _add_new_password(add)
    listing = sub.add_parser("list", help="accounts, roles, clearances and lock state")
    passwd = sub.add_parser("passwd", help="set a password (your own, or any as an admin)")
    passwd.add_argument("name", metavar="NAME")
    _add_new_password(passwd)
    lock = sub.add_parser("lock", help="lock an account")
    lock.add_argument("name", metavar="NAME")
    unlock = sub.add_parser("unlock", help="unlock an account and clear its failures")
    unlock.add_argument("name", metavar="NAME")
    for parser, run in (
        (add, run_add),
        (listing, run_list),
        (passwd, run_passwd),
        (lock, run_lock),
        (unlock, run_unlock),
    ):
        add_auth_options(parser)
        parser.set_defaults(run=run)


def _add_new_password(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--new-password-file",
        type=Path,
        metavar="FILE",
        help="the new account's password (first line) instead of typing it twice",
    )


def _new_password(args: argparse.Namespace, name: str) -> str:
    return read_secret(args.new_password_file, f"New password for {name}", confirm=True)


def run_setup(args: argparse.Namespace) -> int:
    home = appliance_home()
    policy = active_policy(home)
    with Users(home) as users, AuditLog(audit_dir(home)) as log:
        if not users.empty():
            raise UsageError("accounts exist already; admins add more with 'appliance users add'")
        password = _new_password(args, args.admin)
        users.add(args.admin, "admin", policy.lowest.id, password, policy.min_password_length)
        actor = Actor(local_account(), "setup")
        details = {"role": "admin", "clearance": policy.lowest.id}
        log.record(Event(actor, "user_add", args.admin, details=details), checkpoint=True)
    print(f"Created the admin account {args.admin}. Development mode is now off for this home.")
    return 0


@contextlib.contextmanager
def _admin(args: argparse.Namespace) -> Iterator[AccountAdmin]:
    home = appliance_home()
    policy = active_policy(home)
    with AuditLog(audit_dir(home)) as log:
        yield AccountAdmin(home, policy, log, sign_in(args, home, policy, log))


def run_add(args: argparse.Namespace) -> int:
    with _admin(args) as admin:
        admin.authorize()
        clearance = admin.add(args.name, args.role, args.clearance, _new_password(args, args.name))
    print(f"Created {args.name} ({args.role}, cleared to {clearance}).")
    return 0


def run_list(args: argparse.Namespace) -> int:
    with _admin(args) as admin:
        for account in admin.accounts():
            state = "locked" if account.locked else "active"
            print(f"{account.name:<20} {account.role:<9} {account.clearance:<12} {state}")
    return 0


def run_passwd(args: argparse.Namespace) -> int:
    with _admin(args) as admin:
        admin.authorize(own_password_of=args.name)
        admin.set_password(args.name, _new_password(args, args.name))
    print(f"Password changed for {args.name}.")
    return 0


def run_lock(args: argparse.Namespace) -> int:
    return _set_locked(args, locked=True)


def run_unlock(args: argparse.Namespace) -> int:
    return _set_locked(args, locked=False)


def _set_locked(args: argparse.Namespace, *, locked: bool) -> int:
    with _admin(args) as admin:
        admin.set_locked(args.name, locked=locked)
    print(f"{'Locked' if locked else 'Unlocked'} {args.name}.")
    return 0
