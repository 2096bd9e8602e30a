"""`appliance policy check|scan`: validate a policy file, try DLP on a text."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from appliance.config import appliance_home
from appliance.errors import UsageError
from appliance.policy import Policy, active_policy, check_input, load_policy, mask


def register(commands: Any) -> None:
    policy = commands.add_parser("policy", help="check a policy file, or scan a text with DLP")
    sub = policy.add_subparsers(dest="policy_command", metavar="ACTION", required=True)

    check = sub.add_parser("check", help="validate a policy file (strict schema)")
    check.add_argument("file", type=Path, metavar="FILE")
    check.set_defaults(run=run_check)

    scan = sub.add_parser("scan", help="show what DLP finds in a text and what the policy does")
    scan.add_argument("text", metavar="TEXT", help="the text, or - to read standard input")
    scan.add_argument("--policy", type=Path, metavar="FILE", help="default: the active policy")
    scan.add_argument("--json", action="store_true", help="machine-readable output")
    scan.set_defaults(run=run_scan)


def load(path: Path | None) -> Policy:
    return load_policy(path) if path is not None else active_policy(appliance_home())


def run_check(args: argparse.Namespace) -> int:
    policy = load_policy(args.file)
    levels = " < ".join(level.name(policy.language) for level in policy.levels)
    print(f"{args.file}: valid policy {policy.describe()} (sha256 {policy.sha256[:16]}...)")
    print(f"levels: {levels}")
    return 0


def run_scan(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.text == "-" else args.text
    if not text:
        raise UsageError("the text is empty")
    policy = load(args.policy)
    checked = check_input(policy, text, policy.lowest)
    rows = [
        {
            **entry,
            "evidence": finding.evidence,
            "shown": finding.marking or mask(text[finding.start : finding.end]),
        }
        for entry, finding in zip(checked.summary(), checked.findings, strict=True)
    ]
    if args.json:
        result = {
            "policy": policy.describe(),
            "findings": rows,
            "label": checked.label.id,
            "blocked": checked.blocked is not None,
            "text": None if checked.blocked else checked.text,  # what the model would see
        }
        print(json.dumps(result, ensure_ascii=False))
        return 0
    for row in rows:
        print(
            f"{row['type']:<16} {row['start']:>5}-{row['end']:<5} {row['action']:<7} "
            f"{row['evidence']:<20} {row['shown']}"
        )
    verdict = "blocked" if checked.blocked else "allowed"
    print(f"{len(rows)} finding(s); input {verdict}; label {checked.label.name(policy.language)}")
    return 0
