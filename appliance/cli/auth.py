"""Signing in on the command line: --user and a password from the terminal or a file."""

from __future__ import annotations

import argparse
import os
import pwd
import sys
from pathlib import Path

from appliance.audit import AuditLog
from appliance.errors import UsageError
from appliance.identity import Principal
from appliance.policy import Policy
from appliance.session import authenticate, development_mode


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
                f"DEVELOPMENT MODE: no users exist; running as {principal.user} with every role "
                f"(policy {policy.describe()} allows this)",
                file=sys.stderr,
            )
        return principal
    password = read_secret(args.password_file, f"Password for {args.user}")
    return authenticate(home, policy, log, args.user, password)
