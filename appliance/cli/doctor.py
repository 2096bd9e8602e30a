"""`appliance doctor`: is this appliance fit to serve? The home's checks
(appliance/health.py) and the model's: here, the model loaded and asked for one
token; through the service (`--user`, and anyone but root on an installed host),
the model it serves."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from appliance.audit import Checkpoint
from appliance.cli.auth import add_auth_options
from appliance.cli.client import refuse_local_options, signed_in_client
from appliance.cli.generate import add_model_options, open_engine, open_model
from appliance.config import GenerationParams, appliance_home, load_home_config
from appliance.engine import Message, sha256_file
from appliance.engine.report import Report, report_for
from appliance.errors import ApplianceError, CheckFailedError, ServiceError
from appliance.health import Check, check, home_checks, model_check, release_report
from appliance.policy import Policy
from appliance.remote_engines import check_remotes
from appliance.service import as_home_owner, find_service, read_marker
from appliance.textsafe import json_line, printable


def register(commands: Any) -> None:
    doctor = commands.add_parser("doctor", help="check air gap, policy, model and audit log")
    add_model_options(doctor)
    add_auth_options(doctor)
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.add_argument(
        "--trusted-checkpoint",
        type=Path,
        metavar="FILE",
        help="an officer's checkpoint kept off the host: the log must extend it (rules out "
        "a rollback of the whole home)",
    )
    doctor.set_defaults(run=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    home = appliance_home()
    installed = read_marker() is not None
    trusted = Checkpoint.read_file(args.trusted_checkpoint) if args.trusted_checkpoint else None
    if args.user or (installed and os.geteuid() != 0):
        checks = _from_service(args, home, trusted)  # the service's view, its model included
    else:  # development homes, and root on an installed host (before the service runs)
        as_home_owner(home)  # root on an installed host: as the service user, from here on
        checks = home_checks(
            home,
            trusted,
            model=lambda: _model(args),
            remotes=lambda policy: _remotes(args, home, policy),
            installed=installed,
        )
    ok = all(check["ok"] is not False for check in checks)
    if args.json:
        print(json_line({"ok": ok, "checks": checks}, indent=2))
    else:
        for check in checks:
            mark = {True: "ok  ", False: "FAIL", None: "warn"}[check["ok"]]
            print(f"{mark}  {check['name']:<8} {printable(check['detail'])}")
            if check.get("report"):
                summary = Report.from_dict(check["report"]).summary()
                print(f"      {'report':<8} {printable(summary)}")
    if not ok:
        failed = ", ".join(c["name"] for c in checks if c["ok"] is False)
        raise CheckFailedError(f"appliance doctor: {failed} failed")
    return 0


def _from_service(args: argparse.Namespace, home: Path, trusted: Checkpoint | None) -> list[Check]:
    """The checks as the service runs them, for a signed-in admin or officer."""
    refuse_local_options(args)
    service = find_service(home)
    if service is None:
        raise ServiceError(
            f"no appliance service answers for {home}; 'appliance doctor' without --user "
            "checks the home in this process",
            code="no_service",
            home=str(home),
        )
    with signed_in_client(args, service) as client:
        fields: dict[str, Any] = {"trusted": trusted.to_file_bytes().decode()} if trusted else {}
        found: list[Check] = client.call("doctor", **fields)["checks"]
    return found


def _model(args: argparse.Namespace) -> Check:
    """Unseal (if sealed), load, and generate one token."""
    try:
        with open_engine(args) as (engine, name):
            generation = engine.chat(
                [Message("user", "ping")], GenerationParams(max_tokens=1, temperature=0)
            )
            pieces = list(generation)
            tokens = generation.stats.completion_tokens
            adapted = ", ".join(engine.adapters)  # each unsealed and checked against the model
    except ApplianceError as exc:
        return check("model", False, str(exc))
    loaded = f"loaded with the adapters {adapted}" if adapted else "loaded"
    detail = f"{name}: {loaded}, generated {tokens} token ({len(pieces)} piece)"
    return model_check(detail, lambda: _model_report(args))


def _remotes(args: argparse.Namespace, home: Path, policy: Policy) -> list[Check]:
    """The listed GPU servers, each asked for one token (the home's model formats it)."""
    settings = load_home_config(home).engine_settings(
        context_length=args.context, threads=args.threads
    )
    try:
        with open_model(args) as model:
            return check_remotes(home, policy, model.path, settings, model.verified)
    except ApplianceError as exc:
        return [check("remote", False, str(exc))]


def _model_report(args: argparse.Namespace) -> Report | None:
    """The lightweighting report of the served model: the installed release's (named
    by its signed manifest), else the one beside a plain model file."""
    if args.model is None:
        return release_report(appliance_home())
    path = Path(args.model)
    if path.suffix == ".gguf" and path.with_name(path.name + ".report.json").is_file():
        return report_for(path, sha256_file(path))
    return None
