"""`appliance setup` and `appliance users ...`: local accounts.

IT admins manage operators and admins and request officers; officers approve
those requests and manage officer accounts. Losing the last officer is
recovered with the officer escrow identity named at setup, never by an admin.
"""

from __future__ import annotations

import argparse
import contextlib
import pwd
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from appliance.accounts import AccountAdmin, first_accounts, recover_officer
from appliance.audit import Actor, AuditLog, audit_dir
from appliance.cli.auth import add_auth_options, local_account, sign_in
from appliance.cli.client import signed_in_client
from appliance.cli.passphrase import add_passphrase_option, passphrase_source, read_secret
from appliance.config import appliance_home
from appliance.errors import UsageError
from appliance.identity import REQUEST_HOURS, ROLES
from appliance.policy import active_policy
from appliance.seal import Recipient, read_identity
from appliance.service import Client, as_home_owner, find_service
from appliance.service.accounts import RemoteAccounts
from appliance.textsafe import printable


def register(commands: Any) -> None:
    setup = commands.add_parser(
        "setup", help="create the first admin and the first security officer (once)"
    )
    setup.add_argument("--admin", required=True, metavar="NAME")
    setup.add_argument("--officer", required=True, metavar="NAME")
    setup.add_argument(
        "--escrow",
        metavar="RECIPIENT",
        help="apr1... of the officer escrow identity kept off the host (for recovery)",
    )
    _add_new_password(setup)
    setup.add_argument(
        "--officer-password-file",
        type=Path,
        metavar="FILE",
        help="the officer's first password (first line) instead of typing it twice",
    )
    setup.set_defaults(run=run_setup)

    users = commands.add_parser("users", help="manage local accounts (IT admins)")
    sub = users.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="create an account (an officer: request one)")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--clearance", metavar="LEVEL", help="a policy level id (default: lowest)")
    _add_new_password(add)
    listing = sub.add_parser("list", help="accounts, roles, clearances and lock state")
    pending = sub.add_parser("pending", help="officer requests waiting for an officer")
    approve = sub.add_parser("approve", help="approve an officer request (officers)")
    approve.add_argument("name", metavar="NAME")
    _add_new_password(approve)
    passwd = sub.add_parser(
        "passwd", help="set a password (your own; others' by role, to be changed at sign-in)"
    )
    passwd.add_argument("name", metavar="NAME")
    _add_new_password(passwd)
    lock = sub.add_parser("lock", help="lock an account")
    lock.add_argument("name", metavar="NAME")
    unlock = sub.add_parser("unlock", help="unlock an account and clear its failures")
    unlock.add_argument("name", metavar="NAME")
    bind = sub.add_parser(
        "bind", help="the OS account an account signs in from (policy: service.bind_os_users)"
    )
    bind.add_argument("name", metavar="NAME")
    bound = bind.add_mutually_exclusive_group(required=True)
    bound.add_argument("--os-user", metavar="LOGIN|UID", help="an OS login name or uid")
    bound.add_argument("--none", action="store_true", help="bind it to no OS account")
    recover = sub.add_parser(
        "recover", help="restore an officer account with the officer escrow identity"
    )
    recover.add_argument("name", metavar="NAME")
    recover.add_argument("--escrow-identity", type=Path, required=True, metavar="FILE")
    add_passphrase_option(recover, "of the escrow identity")
    _add_new_password(recover)
    recover.set_defaults(run=run_recover)
    for parser, run in (
        (add, run_add),
        (listing, run_list),
        (pending, run_pending),
        (approve, run_approve),
        (passwd, run_passwd),
        (lock, run_lock),
        (unlock, run_unlock),
        (bind, run_bind),
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
    """The first admin and the first officer together, so a home always has an officer.

    Both passwords are temporary: each user sets their own at the first sign-in. Where
    a service runs (always, on an installed host) it makes them, for root or its own
    user alone.
    """
    home = appliance_home()
    if args.admin == args.officer:
        raise UsageError("the admin and the officer must be two accounts")
    escrow = Recipient.parse(args.escrow) if args.escrow else None
    admin = (args.admin, _new_password(args, args.admin))
    officer = (
        args.officer,
        read_secret(args.officer_password_file, f"First password for {args.officer}", confirm=True),
    )
    service = find_service(home)
    if service is not None:
        with Client(service) as client:
            fields: dict[str, Any] = {"escrow": str(escrow)} if escrow is not None else {}
            client.call("setup", admin=admin[0], admin_password=admin[1],
                        officer=officer[0], officer_password=officer[1], **fields)  # fmt: skip
    else:
        with AuditLog(audit_dir(home)) as log:
            actor = Actor(local_account(), "setup")
            first_accounts(home, active_policy(home), log, actor, admin, officer, escrow)
    print(
        f"Created the admin {args.admin} and the security officer {args.officer}; each sets "
        "their own password at the first sign-in. Development mode is now off for this home."
    )
    if escrow is None:
        print(
            "No officer escrow: if every officer is lost, the audit content cannot be recovered.",
            file=sys.stderr,
        )
    return 0


@contextlib.contextmanager
def _admin(args: argparse.Namespace) -> Iterator[AccountAdmin | RemoteAccounts]:
    """The account rules as the signed-in user: the service's where one runs."""
    home = appliance_home()
    service = find_service(home)
    if service is not None:
        with signed_in_client(args, service) as client:
            yield RemoteAccounts(client)
        return
    policy = active_policy(home)
    with AuditLog(audit_dir(home)) as log:
        yield AccountAdmin(home, policy, log, sign_in(args, home, policy, log))


def run_add(args: argparse.Namespace) -> int:
    with _admin(args) as admin:
        admin.authorize()
        if args.role == "officer":  # the approving officer sets the first password
            request = admin.request_officer(args.name, args.clearance)
            print(
                f"Requested the officer account {args.name}; an officer approves it within "
                f"{REQUEST_HOURS} hours with 'appliance users approve {args.name}' "
                f"(expires {_clock(request.expires_us)})."
            )
            return 0
        clearance = admin.add(args.name, args.role, args.clearance, _new_password(args, args.name))
    print(f"Created {args.name} ({args.role}, cleared to {clearance}); they set their own "
          "password at the first sign-in.")  # fmt: skip
    return 0


def run_pending(args: argparse.Namespace) -> int:
    with _admin(args) as admin:
        for request in admin.pending():
            print(
                f"{request.name:<20} {request.role:<9} {request.clearance:<12} "
                f"by {request.requested_by}, expires {_clock(request.expires_us)}"
            )
    return 0


def run_approve(args: argparse.Namespace) -> int:
    with _admin(args) as admin:
        admin.authorize("officers.manage")
        request = admin.approve(args.name, _new_password(args, args.name))
    print(
        f"Approved {args.name} ({request.role}, requested by {request.requested_by}); "
        "they set their own password at the first sign-in."
    )
    return 0


def run_list(args: argparse.Namespace) -> int:
    with _admin(args) as admin:
        for account in admin.accounts():
            state = "locked" if account.locked else "active"
            bound = "" if account.os_uid is None else f" os uid {account.os_uid}"
            print(f"{account.name:<20} {account.role:<9} {account.clearance:<12} {state}{bound}")
    return 0


def run_passwd(args: argparse.Namespace) -> int:
    with _admin(args) as admin:
        admin.authorize_password(args.name)
        admin.set_password(args.name, _new_password(args, args.name))
        own = args.name == admin.principal.user
    print(f"Password changed for {args.name}." + ("" if own else " They set their own at the "
          "next sign-in."))  # fmt: skip
    return 0


def run_recover(args: argparse.Namespace) -> int:
    """No sign-in: holding the escrow identity is the authority, and it is audited."""
    home = appliance_home()
    escrow = read_identity(
        args.escrow_identity, passphrase_source(args.passphrase_file, "Escrow passphrase")
    )
    password = _new_password(args, args.name)
    actor = Actor(local_account(), "escrow")
    as_home_owner(home)  # root on an installed host: the service's files stay its own
    policy = active_policy(home)
    with AuditLog(audit_dir(home)) as log:
        recover_officer(home, policy, log, args.name, password, escrow, actor)
    print(f"Recovered the officer account {args.name}; 'appliance audit verify' reports it.")
    return 0


def _clock(time_us: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(time_us / 1e6))


def run_lock(args: argparse.Namespace) -> int:
    return _set_locked(args, locked=True)


def run_unlock(args: argparse.Namespace) -> int:
    return _set_locked(args, locked=False)


def _set_locked(args: argparse.Namespace, *, locked: bool) -> int:
    with _admin(args) as admin:
        admin.set_locked(args.name, locked=locked)
    print(f"{'Locked' if locked else 'Unlocked'} {args.name}.")
    return 0


def run_bind(args: argparse.Namespace) -> int:
    os_uid = None if args.none else _os_uid(args.os_user)
    with _admin(args) as admin:
        admin.bind(args.name, os_uid)
    where = "no OS account" if os_uid is None else f"OS uid {os_uid}"
    print(f"Bound {args.name} to {where}; its open sessions ended.")
    return 0


def _os_uid(text: str) -> int:
    """A uid, or the uid of an OS login name on this host."""
    if text.isdigit():
        return int(text)
    try:
        return pwd.getpwnam(text).pw_uid
    except KeyError:
        raise UsageError(f"there is no OS user {printable(text)!r} on this host") from None
