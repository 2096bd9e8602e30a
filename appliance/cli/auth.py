"""Signing in on the command line: --user and a password from the terminal or a file."""

from __future__ import annotations

import argparse
import os
import pwd
import sys
from pathlib import Path

from appliance.audit import AuditLog
from appliance.errors import AuthenticationError, UsageError
from appliance.identity import Principal
from appliance.policy import Policy
from appliance.session import authenticate, development_mode
from appliance.textsafe import printable


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
    """The signed-in user, or the development-mode principal where the policy allows it."""
    from appliance.cli.passphrase import read_secret

    if not args.user:
        principal = development_mode(home, policy, local_account())
        if principal is None:
            raise UsageError("sign in with --user NAME (the password is asked, or --password-file)")
        if sys.stderr.isatty():  # in pipes the one-line error contract holds; the log says "dev"
            print(
                f"DEVELOPMENT MODE: no users exist; running as {printable(principal.user)} with "
                "every role "
                f"(policy {policy.describe()} allows this)",
                file=sys.stderr,
            )
        return principal
    password = read_secret(args.password_file, f"Password for {args.user}")
    principal = authenticate(home, policy, log, args.user, password)
    if principal.must_change and not changing_own_password(args):
        principal = _replace_password(args, home, policy, log, principal)
    return principal


def changing_own_password(args: argparse.Namespace) -> bool:
    """`users passwd NAME --user NAME`: what a must-change sign-in may go on to do."""
    return getattr(args, "users_command", None) == "passwd" and args.name == args.user


def _replace_password(
    args: argparse.Namespace, home: Path, policy: Policy, log: AuditLog, principal: Principal
) -> Principal:
    """Someone else set this password: the user sets their own before anything else."""
    from appliance.accounts import AccountAdmin
    from appliance.cli.passphrase import read_secret

    if not sys.stdin.isatty():
        raise AuthenticationError(
            f"the password of {principal.user} was set by someone else; set your own first "
            f"with 'appliance users passwd {principal.user} --user {principal.user}'"
        )
    print(f"The password of {principal.user} was set by someone else: choose your own.",
          file=sys.stderr)  # fmt: skip
    new = read_secret(None, f"New password for {principal.user}", confirm=True)
    AccountAdmin(home, policy, log, principal).set_password(principal.user, new)
    return authenticate(home, policy, log, principal.user, new)
