"""`appliance airgap status`: interfaces and routes that lead off the host."""

from __future__ import annotations

import argparse
import json
from typing import Any

from appliance.cli.audit import open_log, remote
from appliance.cli.auth import add_auth_options, sign_in
from appliance.config import appliance_home
from appliance.policy import active_policy
from appliance.policy.airgap import attest
from appliance.policy.override import check_grant, current, site_passages
from appliance.session import grant_airgap_override


def register(commands: Any) -> None:
    airgap = commands.add_parser("airgap", help="attest that the host has no network")
    sub = airgap.add_subparsers(dest="airgap_command", metavar="ACTION", required=True)
    status = sub.add_parser("status", help="interfaces and routes off the host")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    add_auth_options(status)  # on a service host: the service's view, for a signed-in user
    status.set_defaults(run=run_status)
    override = sub.add_parser(
        "override", help="let the appliance serve off the air gap for a while (officers)"
    )
    override.add_argument("--minutes", type=int, required=True, metavar="N")
    override.add_argument("--reason", required=True, metavar="TEXT")
    add_auth_options(override)
    override.set_defaults(run=run_override)


def run_status(args: argparse.Namespace) -> int:
    with remote(args) as client:
        if client is not None:  # the service's view: its namespace and the host's
            found = client.call("airgap", call="status")
            attested, override = found["attestation"], found["override"]
        else:
            home = appliance_home()
            policy = active_policy(home)
            attested = attest(passages=site_passages(home, policy.remote)).as_json()
            active = current(home, policy.airgap_override_max_minutes)
            override = active.describe() if active else None
    if args.json:
        print(json.dumps({**attested, "override": override}))
        return 0
    print("air-gapped" if attested["airgapped"] else "NOT air-gapped")
    if override:
        print(f"  air-gap requirement {override}")
    for interface in attested["interfaces"]:
        state = "up" if interface["up"] else "down"
        kind = " (loopback)" if interface["loopback"] else ""
        print(f"  interface {interface['name']}: {state}{kind}")
    for passage in attested.get("passages", []):  # the listed GPU servers
        print(f"  allowed: {passage['address']} on {passage['interface']} (a listed GPU server)")
    for reason in attested["reasons"]:
        print(f"  - {reason}")
    return 0


def run_override(args: argparse.Namespace) -> int:
    with remote(args) as client:
        if client is not None:
            found = client.call("airgap", call="override", minutes=args.minutes, reason=args.reason)
            print(f"Air-gap requirement {found['override']}.")
            return 0
    home = appliance_home()
    policy = active_policy(home)
    check_grant(args.minutes, args.reason, policy.airgap_override_max_minutes, policy.describe())
    with open_log() as log:
        principal = sign_in(args, home, policy, log)
        override = grant_airgap_override(home, policy, log, principal, args.minutes, args.reason)
    print(f"Air-gap requirement {override.describe()}.")
    return 0
