"""`appliance setup` and `appliance users ...`: local accounts, managed by IT admins."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from appliance.audit import Actor, AuditLog, Event, audit_dir
from appliance.cli.auth import add_auth_options, local_account, sign_in
from appliance.cli.passphrase import read_secret
from appliance.config import appliance_home
from appliance.errors import UsageError
from appliance.identity import ROLES, Users
from appliance.policy import Policy, active_policy


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


def _admin_session(args: argparse.Namespace) -> tuple[Policy, AuditLog, Actor]:
    home = appliance_home()
    policy = active_policy(home)
    log = AuditLog(audit_dir(home))
    try:
        principal = sign_in(args, home, policy, log)
        actor = Actor(principal.user, principal.role)
        if not principal.may("users.manage") and not (
            args.users_command == "passwd" and args.name == principal.user
        ):
            details = {"permission": "users.manage"}
            log.record(Event(actor, "policy_block", "users", "denied", details=details))
            principal.require("users.manage")
    except BaseException:
        log.close()
        raise
    return policy, log, actor


def run_add(args: argparse.Namespace) -> int:
    policy, log, actor = _admin_session(args)
    with log, Users(appliance_home()) as users:
        clearance = policy.level(args.clearance or policy.lowest.id).id
        password = _new_password(args, args.name)
        users.add(args.name, args.role, clearance, password, policy.min_password_length)
        details = {"role": args.role, "clearance": clearance}
        log.record(Event(actor, "user_add", args.name, details=details), checkpoint=True)
    print(f"Created {args.name} ({args.role}, cleared to {clearance}).")
    return 0


def run_list(args: argparse.Namespace) -> int:
    _, log, _ = _admin_session(args)
    with log, Users(appliance_home()) as users:
        for account in users.accounts():
            state = "locked" if account.locked else "active"
            print(f"{account.name:<20} {account.role:<9} {account.clearance:<12} {state}")
    return 0


def run_passwd(args: argparse.Namespace) -> int:
    policy, log, actor = _admin_session(args)
    with log, Users(appliance_home()) as users:
        users.set_password(args.name, _new_password(args, args.name), policy.min_password_length)
        log.record(Event(actor, "password_change", args.name), checkpoint=True)
    print(f"Password changed for {args.name}.")
    return 0


def run_lock(args: argparse.Namespace) -> int:
    return _set_locked(args, locked=True)


def run_unlock(args: argparse.Namespace) -> int:
    return _set_locked(args, locked=False)


def _set_locked(args: argparse.Namespace, *, locked: bool) -> int:
    _, log, actor = _admin_session(args)
    with log, Users(appliance_home()) as users:
        (users.lock if locked else users.unlock)(args.name)
        action = "user_lock" if locked else "user_unlock"
        log.record(Event(actor, action, args.name), checkpoint=True)
    print(f"{'Locked' if locked else 'Unlocked'} {args.name}.")
    return 0
