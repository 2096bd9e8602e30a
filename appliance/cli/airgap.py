"""`appliance airgap status`: interfaces and routes that lead off the host."""

from __future__ import annotations

import argparse
import json
from typing import Any

from appliance.policy.airgap import attest


def register(commands: Any) -> None:
    airgap = commands.add_parser("airgap", help="attest that the host has no network")
    sub = airgap.add_subparsers(dest="airgap_command", metavar="ACTION", required=True)
    status = sub.add_parser("status", help="interfaces and routes off the host")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(run=run_status)


def run_status(args: argparse.Namespace) -> int:
    result = attest()
    if args.json:
        print(json.dumps(result.as_json()))
        return 0
    print("air-gapped" if result.airgapped else "NOT air-gapped")
    for interface in result.interfaces:
        state = "up" if interface.up else "down"
        kind = " (loopback)" if interface.loopback else ""
        print(f"  interface {interface.name}: {state}{kind}")
    for reason in result.reasons:
        print(f"  - {reason}")
    return 0
