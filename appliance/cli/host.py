"""`appliance install|upgrade|rollback|uninstall|status`: releases on a host (IT staff)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from appliance.audit import Actor
from appliance.bundle.host import SERVICE_MARKER, Host, ServiceUser
from appliance.cli.auth import local_account
from appliance.cli.progress import byte_progress

DEFAULT_PREFIX = Path("/opt/appliance")


def register(commands: Any) -> None:
    install = commands.add_parser("install", help="install a signed bundle on this host")
    upgrade = commands.add_parser("upgrade", help="install a newer signed bundle")
    for parser in (install, upgrade):
        parser.add_argument("bundle", type=Path, metavar="NAME.bundle")
        _prefix(parser)
        parser.add_argument(
            "--trust", type=Path, metavar="root.json", help="pin this root of trust (first install)"
        )
        parser.add_argument(
            "--identity",
            type=Path,
            metavar="FILE",
            help="the site identity that unseals the model (first install)",
        )
        parser.add_argument(
            "--service-user",
            metavar="NAME|UID:GID",
            help="(root) give the home to this system user, write PREFIX/appliance.service "
            "and the service marker",
        )
        parser.add_argument(
            "--service-marker",
            type=Path,
            default=SERVICE_MARKER,
            metavar="FILE",
            help=f"where clients find the service (default {SERVICE_MARKER})",
        )
    install.set_defaults(run=run_install, upgrade=False)
    upgrade.set_defaults(run=run_install, upgrade=True)

    rollback = commands.add_parser("rollback", help="return to the previous release")
    _prefix(rollback)
    rollback.set_defaults(run=run_rollback)

    uninstall = commands.add_parser("uninstall", help="remove a release that is not current")
    uninstall.add_argument("release", metavar="VERSION")
    _prefix(uninstall)
    uninstall.set_defaults(run=run_uninstall)

    status = commands.add_parser("status", help="releases and trusted metadata on this host")
    _prefix(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(run=run_status)


def _prefix(parser: argparse.ArgumentParser) -> None:
    default = Path(os.environ.get("APPLIANCE_PREFIX", DEFAULT_PREFIX))
    parser.add_argument(
        "--prefix",
        type=Path,
        default=default,
        metavar="DIR",
        help=f"where releases live (default $APPLIANCE_PREFIX or {DEFAULT_PREFIX})",
    )


def _host(args: argparse.Namespace) -> Host:
    marker = getattr(args, "service_marker", SERVICE_MARKER)
    return Host(args.prefix, Actor(local_account(), "installer"), service_marker=marker)


def run_install(args: argparse.Namespace) -> int:
    service_user = ServiceUser.parse(args.service_user) if args.service_user else None
    outcome = _host(args).install(
        args.bundle,
        upgrade=args.upgrade,
        trust_root=args.trust,
        identity=args.identity,
        stage=byte_progress,
        service_user=service_user,
    )
    was = f" (was {outcome.previous})" if outcome.previous else ""
    print(f"{outcome.action}: release {outcome.release} is current{was}; doctor passed.")
    if service_user is not None:
        host = _host(args)
        print(
            f"service: {host.home} belongs to {service_user.user}:{service_user.group}; "
            f"unit {host.unit}, marker {host.service_marker}."
        )
    return 0


def run_rollback(args: argparse.Namespace) -> int:
    outcome = _host(args).rollback()
    print(f"rollback: release {outcome.release} is current (was {outcome.previous}).")
    return 0


def run_uninstall(args: argparse.Namespace) -> int:
    _host(args).uninstall(args.release)
    print(f"uninstall: release {args.release} removed.")
    return 0


def run_status(args: argparse.Namespace) -> int:
    status = _host(args).status()
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(f"prefix     {status['prefix']}")
    print(f"current    {status['current'] or '(none)'}")
    print(f"installed  {', '.join(status['installed']) or '(none)'}")
    for role, info in status["trusted_metadata"].items():
        print(f"trusted    {role:<9} v{info['version']}, expires {info['expires']}")
    return 0
