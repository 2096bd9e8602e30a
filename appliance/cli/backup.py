"""`appliance backup`: a sealed backup of the home now; `verify` one; the unit's drop-in.

Where it goes and whom it is sealed to are the site's ([backup] in config.toml,
accepted by an officer): no option chooses either. With a service running,
the service makes it; on a home without one, this process does.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from appliance.audit import Actor, AuditLog, audit_dir
from appliance.backup import (
    backup_site,
    make_backup,
    open_backup,
    render_dropin,
    require_backup,
    site_recipients,
)
from appliance.cli.audit import remote
from appliance.cli.auth import add_auth_options, sign_in
from appliance.cli.passphrase import add_passphrase_option, openers
from appliance.config import appliance_home, load_home_config
from appliance.errors import UsageError
from appliance.homestate import check_state
from appliance.policy import active_policy
from appliance.service import as_home_owner
from appliance.textsafe import printable


def register(commands: Any) -> None:
    backup = commands.add_parser(
        "backup",
        help="seal a backup of the home into the site's backup folder (admins)",
        description="With no action: a consistent, sealed backup of the home, now, into "
        "the folder and to the recipients of [backup] in the home's config.toml.",
    )
    add_auth_options(backup)
    backup.set_defaults(run=run_backup)
    sub = backup.add_subparsers(dest="backup_command", metavar="ACTION")

    verify = sub.add_parser("verify", help="open a backup and check it whole (no restore)")
    verify.add_argument("file", type=Path, metavar="FILE")
    verify.add_argument(
        "--identity", action="append", type=Path, required=True, metavar="KEYFILE",
        help="an identity the backup is sealed to (repeatable)",
    )  # fmt: skip
    add_passphrase_option(verify, "that unlocks the identity")
    verify.add_argument("--json", action="store_true", help="the manifest, machine-readable")
    verify.set_defaults(run=run_verify)

    unit = sub.add_parser(
        "unit", help="the systemd drop-in that lets the service write the backup folder"
    )
    unit.set_defaults(run=run_unit)


def run_backup(args: argparse.Namespace) -> int:
    with remote(args) as client:
        found = client.call("backup") if client is not None else _here(args)
    print(
        f"Wrote {printable(str(found['path']))} ({found['bytes']:,} bytes, sha256 "
        f"{found['sha256']}); its audit log copy reaches seq {found['last_seq']}."
    )
    return 0


def _here(args: argparse.Namespace) -> dict[str, Any]:
    """No service runs for the home: this process makes the backup, as the service would."""
    home = appliance_home()
    as_home_owner(home)
    site = backup_site(home)  # before any sign-in: nothing to do without it
    recipients = site_recipients(home, site)
    policy = active_policy(home)
    with AuditLog(audit_dir(home)) as log:
        check_state(home, log)  # [backup] as an officer accepted it, as the service checks
        principal = sign_in(args, home, policy, log)
        require_backup(log, principal)
        actor = Actor(principal.user, principal.role)
        return make_backup(home, log, actor, site.folder, recipients).to_dict()


def run_verify(args: argparse.Namespace) -> int:
    keys = openers(args.identity, args.passphrase_file)
    with open_backup(args.file, keys) as backup:
        manifest, report = backup.manifest, backup.report
    if args.json:
        print(json.dumps({"ok": True, "manifest": manifest, "log": report.as_json()}))
        return 0
    print(
        printable(
            f"Backup verified: {len(manifest['files'])} files, the audit log {manifest['log']} "
            f"up to seq {manifest['last_seq']} ({report.checkpoints} signed checkpoints), "
            f"signed by the device key {manifest['device_key']}."
        )
    )
    return 0


def run_unit(args: argparse.Namespace) -> int:
    text = render_dropin(load_home_config(appliance_home()).backup)
    if not text:
        raise UsageError("no [backup] in config.toml: the unit needs no drop-in")
    print(text, end="")
    return 0
