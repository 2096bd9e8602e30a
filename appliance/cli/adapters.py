"""`appliance adapters add|list|remove`: LoRA adapters for the model the home serves."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from appliance import adapters, seal
from appliance.audit import Actor, AuditLog, Event, audit_dir
from appliance.cli.auth import add_auth_options, sign_in
from appliance.cli.generate import add_model_options, open_model
from appliance.cli.progress import byte_progress
from appliance.config import appliance_home
from appliance.engine import read_gguf
from appliance.errors import UsageError
from appliance.identity import Principal
from appliance.policy import active_policy
from appliance.service import as_home_owner, find_service
from appliance.textsafe import json_line, printable


def register(commands: Any) -> None:
    group = commands.add_parser("adapters", help="add, list and remove LoRA domain adapters")
    sub = group.add_subparsers(dest="adapters_command", metavar="ACTION", required=True)

    add = sub.add_parser(
        "add", help="validate an adapter against its base model, seal it into the home"
    )
    add.add_argument("file", type=Path, help="a LoRA adapter in GGUF (convert_lora_to_gguf.py)")
    add.add_argument("--name", help="the name policies give it (default: the file's stem)")
    add.add_argument(
        "--recipient",
        action="append",
        default=[],
        metavar="apr1...",
        help="also seal it to this recipient (repeatable; the identities given always are)",
    )
    add_model_options(add)
    add_auth_options(add)
    add.set_defaults(run=run_add)

    listing = sub.add_parser("list", help="the home's adapters and the models they adapt")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(run=run_list)

    remove = sub.add_parser("remove", help="stop serving an adapter and delete its sealed file")
    remove.add_argument("name")
    add_auth_options(remove)
    remove.set_defaults(run=run_remove)


def run_add(args: argparse.Namespace) -> int:
    home = appliance_home()
    as_home_owner(home)
    name = adapters.check_name(args.name or _stem(args.file))
    recipients = [seal.Recipient.parse(text) for text in args.recipient]
    with AuditLog(audit_dir(home)) as log:
        admin = _admin(args, home, log)
        with open_model(args, adapting=True) as model:
            keys = model.keys()
            recipients += [key.recipient for key in keys if isinstance(key, seal.Identity)]
            base = read_gguf(model.path)
            with byte_progress(f"Sealing {name}") as progress:
                record = adapters.add(
                    home, args.file, base, model.name, name, recipients, progress=progress
                )
        _record(log, admin, "add", record.to_dict())
    print(f"added {name} for {printable(record.base)} (rank {record.rank}, sha256 {record.sha256})")
    _restart_hint(home)
    return 0


def run_list(args: argparse.Namespace) -> int:
    records = adapters.listed(appliance_home())
    if args.json:
        print(json_line([record.to_dict() for record in records], indent=2))
        return 0
    if not records:
        print("no adapters (appliance adapters add FILE)")
    for record in records:
        print(
            f"{record.name:<20} rank {record.rank:<4} {record.targets:>4} tensors  "
            f"for {printable(record.base)}  ({record.source}, {record.added})"
        )
    return 0


def run_remove(args: argparse.Namespace) -> int:
    home = appliance_home()
    as_home_owner(home)
    with AuditLog(audit_dir(home)) as log:
        admin = _admin(args, home, log)
        record = adapters.remove(home, args.name)
        _record(log, admin, "remove", record.to_dict())
    print(f"removed {record.name}")
    _restart_hint(home)
    return 0


def _stem(path: Path) -> str:
    stem = path.name.removesuffix(".gguf").lower().replace("_", "-").replace(".", "-")
    if not adapters.NAME.fullmatch(stem):
        raise UsageError(f"give the adapter a name with --name ({path.name} is not one)")
    return stem


def _admin(args: argparse.Namespace, home: Path, log: AuditLog) -> Principal:
    """Which adapters exist changes what answers are: only an admin changes it."""
    principal = sign_in(args, home, active_policy(home), log)
    principal.require("adapters.manage")
    return principal


def _record(log: AuditLog, admin: Principal, action: str, details: dict[str, Any]) -> None:
    actor = Actor(admin.user, admin.role)
    log.record(
        Event(actor, "adapter", details["name"], "ok", details={"action": action, **details})
    )


def _restart_hint(home: Path) -> None:
    if find_service(home) is not None:
        print("the running service loads adapters when it starts: restart it to apply this")
