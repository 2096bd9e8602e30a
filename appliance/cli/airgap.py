"""`appliance airgap status`: interfaces and routes that lead off the host."""

from __future__ import annotations

import argparse
import json
from typing import Any

from appliance.audit import Event
from appliance.cli.audit import signed_in
from appliance.cli.auth import add_auth_options
from appliance.config import appliance_home
from appliance.policy import active_policy
from appliance.policy.airgap import attest
from appliance.policy.override import check_grant, current, grant


def register(commands: Any) -> None:
    airgap = commands.add_parser("airgap", help="attest that the host has no network")
    sub = airgap.add_subparsers(dest="airgap_command", metavar="ACTION", required=True)
    status = sub.add_parser("status", help="interfaces and routes off the host")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(run=run_status)
    override = sub.add_parser(
        "override", help="let the appliance serve off the air gap for a while (officers)"
    )
    override.add_argument("--minutes", type=int, required=True, metavar="N")
    override.add_argument("--reason", required=True, metavar="TEXT")
    add_auth_options(override)
    override.set_defaults(run=run_override)


def run_status(args: argparse.Namespace) -> int:
    result = attest()
    home = appliance_home()
    active = current(home, active_policy(home).airgap_override_max_minutes)
    if args.json:
        override = active.describe() if active else None
        print(json.dumps({**result.as_json(), "override": override}))
        return 0
    print("air-gapped" if result.airgapped else "NOT air-gapped")
    if active:
        print(f"  air-gap requirement {active.describe()}")
    for interface in result.interfaces:
        state = "up" if interface.up else "down"
        kind = " (loopback)" if interface.loopback else ""
        print(f"  interface {interface.name}: {state}{kind}")
    for reason in result.reasons:
        print(f"  - {reason}")
    return 0


def run_override(args: argparse.Namespace) -> int:
    policy = active_policy(appliance_home())
    check_grant(args.minutes, args.reason, policy.airgap_override_max_minutes, policy.describe())
    with signed_in(args, "airgap.override", existing=False) as (log, actor):
        details = {"minutes": args.minutes, "reason": args.reason}
        event = Event(actor, "config_change", "airgap override", details=details)
        log.record(event, checkpoint=True)  # audited before it takes effect
        override = grant(appliance_home(), actor.user, args.minutes, args.reason)
    print(f"Air-gap requirement {override.describe()}.")
    return 0
