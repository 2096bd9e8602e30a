"""Signing in on the command line: --user and a password from the terminal or a file."""

from __future__ import annotations

import argparse
import os
import pwd
import sys
from pathlib import Path

from appliance.audit import Actor, AuditLog, Event
from appliance.errors import AuthenticationError, UsageError
from appliance.identity import DEV_ROLE, Principal, Users, has_users
from appliance.policy import Policy

SETUP_HINT = "an admin creates the first account with 'appliance setup --admin NAME'"


def add_auth_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", metavar="NAME", help="sign in as NAME")
    parser.add_argument(
        "--password-file",
        type=Path,
        metavar="FILE",
        help="read the password from FILE (first line) instead of the terminal",
    )


def local_account() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid{os.getuid()}"


def sign_in(args: argparse.Namespace, home: Path, policy: Policy, log: AuditLog) -> Principal:
    """The signed-in user, or the development-mode principal where the policy allows it.

    Every sign-in and every failure is audited; failures count towards lockout.
    """
    from appliance.cli.passphrase import read_secret

    if not has_users(home):
        return _development_mode(args, policy)
    with Users(home) as users:
        if not args.user:
            raise UsageError("sign in with --user NAME (the password is asked, or --password-file)")
        password = read_secret(args.password_file, f"Password for {args.user}")
        failure = Actor(args.user, "unknown")
        try:
            result = users.sign_in(
                args.user,
                password,
                max_failures=policy.lockout_failures,
                lockout_minutes=policy.lockout_minutes,
            )
        except AuthenticationError as exc:  # a locked account
            log.record(
                Event(failure, "login_failed", "appliance", "denied", details={"locked": True})
            )
            raise exc from None
    if result.principal is None:
        details = {"locked_now": result.locked_now}
        log.record(Event(failure, "login_failed", "appliance", "denied", details=details))
        message = "wrong user name or password"
        if result.locked_now:
            message += f"; the account is now locked for {policy.lockout_minutes} minutes"
        raise AuthenticationError(message)
    principal = result.principal
    log.record(Event(Actor(principal.user, principal.role), "login", "appliance"))
    return principal


def _development_mode(args: argparse.Namespace, policy: Policy) -> Principal:
    if args.user:
        raise AuthenticationError(f"there are no users yet; {SETUP_HINT}")
    if not policy.allow_dev_mode:
        raise AuthenticationError(
            f"no users exist and policy {policy.describe()} forbids development mode; {SETUP_HINT}"
        )
    user = local_account()
    if sys.stderr.isatty():  # in pipes the one-line error contract holds; the log says "dev"
        print(
            f"DEVELOPMENT MODE: no users exist; running as {user} with every role "
            f"(policy {policy.describe()} allows this)",
            file=sys.stderr,
        )
    return Principal(user, DEV_ROLE, policy.levels[-1].id, dev=True)
