"""`appliance doctor`: is this appliance fit to serve? Air gap, policy, model, audit log,
the home's state against the last signed one (appliance/homestate.py), and how old
its last backup is."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from appliance.audit import AuditLog, Checkpoint, audit_dir
from appliance.backup import DROPIN, last_backup, render_dropin
from appliance.bundle.binaries import check_binaries
from appliance.cli.generate import add_model_options, open_engine, open_model
from appliance.config import GenerationParams, appliance_home, load_home_config
from appliance.documents.consistency import check_home
from appliance.engine import Message, sha256_file
from appliance.engine.report import Report, read_report, report_for
from appliance.errors import ApplianceError, CheckFailedError
from appliance.fsutil import read_limited
from appliance.homestate import verify_state
from appliance.policy import Policy, active_policy, active_policy_path
from appliance.policy.override import airgap_verdict, site_passages
from appliance.policy.schema import BackupRules
from appliance.remote_engines import check_remotes
from appliance.service import as_home_owner, read_marker
from appliance.textsafe import json_line, printable


def register(commands: Any) -> None:
    doctor = commands.add_parser("doctor", help="check air gap, policy, model and audit log")
    add_model_options(doctor)
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
    trusted = Checkpoint.read_file(args.trusted_checkpoint) if args.trusted_checkpoint else None
    as_home_owner(home)  # root on an installed host: as the service user, from here on
    policy: Policy | None
    try:
        policy = active_policy(home)
        checks = [_check("policy", True, f"{policy.describe()} from {active_policy_path(home)}")]
    except ApplianceError as exc:
        policy = None  # the other checks assume the strictest policy: fail closed
        checks = [_check("policy", False, str(exc))]
    checks += [_airgap(home, policy), _model(args), _audit(home, policy, trusted)]
    if policy is not None and policy.remote.allowed:
        checks += _remotes(args, home, policy)
    checks.append(_state(home, trusted))
    checks.append(_backup(home, policy))
    checks.append(_documents(home))
    checks.append(check_binaries())  # the installed release's llama.cpp tools and preload
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


def _check(name: str, ok: bool | None, detail: str) -> dict[str, Any]:
    return {"name": name, "ok": ok, "detail": detail}


def _airgap(home: Path, policy: Policy | None) -> dict[str, Any]:
    # No valid policy: the strictest, an air gap and no override.
    required = policy is None or policy.require_airgap
    passages = site_passages(home, policy.remote) if policy else []
    maximum = policy.airgap_override_max_minutes if policy else 0
    verdict = airgap_verdict(home, required, maximum, passages)
    if verdict.airgapped:
        return _check("airgap", True, verdict.detail)
    if not verdict.allowed:
        return _check("airgap", False, f"the policy requires an air gap, but {verdict.detail}")
    return _check("airgap", None, f"not air-gapped: {verdict.detail}")


def _model(args: argparse.Namespace) -> dict[str, Any]:
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
        return _check("model", False, str(exc))
    loaded = f"loaded with the adapters {adapted}" if adapted else "loaded"
    check = _check(
        "model", True, f"{name}: {loaded}, generated {tokens} token ({len(pieces)} piece)"
    )
    try:
        report = _model_report(args)
    except ApplianceError as exc:
        return _check("model", None, f"{check['detail']}; its report is unreadable: {exc}")
    check["report"] = report.to_dict() if report else None
    return check


def _remotes(args: argparse.Namespace, home: Path, policy: Policy) -> list[dict[str, Any]]:
    """The listed GPU servers, each asked for one token (the home's model formats it)."""
    settings = load_home_config(home).engine_settings(
        context_length=args.context, threads=args.threads
    )
    try:
        with open_model(args) as model:
            return check_remotes(home, policy, model.path, settings, model.verified)
    except ApplianceError as exc:
        return [_check("remote", False, str(exc))]


def _model_report(args: argparse.Namespace) -> Report | None:
    """The lightweighting report of the served model: the installed release's (named
    by its signed manifest), else the one beside a plain model file."""
    if args.model is None:
        manifest = load_home_config(appliance_home()).manifest
        if manifest is None:
            return None
        model = json.loads(read_limited(manifest, 64 << 10, "the release manifest"))["model"]
        name = model.get("report")
        if not isinstance(name, str) or not name.startswith("model/") or ".." in name:
            return None
        report = read_report(manifest.parent / name)
        return report if report.quantized.sha256 == model["sha256"] else None
    path = Path(args.model)
    if path.suffix == ".gguf" and path.with_name(path.name + ".report.json").is_file():
        return report_for(path, sha256_file(path))
    return None


def _audit(home: Path, policy: Policy | None, trusted: Checkpoint | None) -> dict[str, Any]:
    """The chain verifies, and content can be recorded where the policy demands it."""
    required = policy is None or policy.require_content
    try:
        with AuditLog(audit_dir(home), require_content=required) as log:
            report = log.verify(trusted=trusted)
            officers = len(log.officers)
    except ApplianceError as exc:
        return _check("audit", False, str(exc))
    content = f"content sealed to {officers} officer key(s)" if officers else "metadata only"
    detail = f"verified, {report.events} events, {report.checkpoints} checkpoints; {content}"
    for restore in report.restores:  # legitimate, and never complete: say so every time
        lost = restore.lost
        gone = f"events {lost[0]}-{lost[1]} lost" if lost else "nothing lost"
        detail += f"; restored from a backup at seq {restore.seq} ({gone})"
    return _check("audit", True, detail)


def _backup(home: Path, policy: Policy | None, now: float | None = None) -> dict[str, Any]:
    """The age of the newest backup (from the audit log) at `now` (default: now), a
    warning past the policy's limit or when there is none; and, on an installed host,
    the unit's drop-in that lets the service write the folder."""
    limit = policy.backup.max_age_hours if policy else BackupRules().max_age_hours
    try:
        site = load_home_config(home).backup
        with AuditLog(audit_dir(home)) as log:
            found = last_backup(log)
    except ApplianceError as exc:
        return _check("backup", None, str(exc))
    if found is None:
        todo = "run 'appliance backup'" if site else "configure [backup] in config.toml"
        return _check("backup", None, f"the home was never backed up; {todo}")
    seq, time_us = found
    hours = ((time.time() if now is None else now) - time_us / 1e6) / 3600
    detail = f"the last backup is {_age(hours)} old (seq {seq}; the policy allows {limit} h)"
    if site is None:
        return _check("backup", None, f"{detail}, but [backup] is no longer in config.toml")
    if read_marker() is not None and _dropin() != render_dropin(site):
        return _check(
            "backup",
            None,
            f"{detail}; {DROPIN} is missing or does not match config.toml: write it from "
            "'appliance backup unit', then 'systemctl daemon-reload' and restart the service",
        )
    if hours > limit:
        return _check("backup", None, f"{detail}: make one ('appliance backup')")
    return _check("backup", True, detail)


def _age(hours: float) -> str:
    if hours < 1:
        return f"{max(0, round(hours * 60))} min"
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


def _dropin() -> str | None:
    try:
        return DROPIN.read_text(encoding="utf-8")
    except OSError:
        return None


def _documents(home: Path) -> dict[str, Any]:
    """The documents store holds what the audit log says: nothing rolled back, slipped
    in, taken out or swapped behind the appliance's back."""
    try:
        with AuditLog(audit_dir(home)) as log:
            ok, detail = check_home(home, log)
    except ApplianceError as exc:
        return _check("documents", False, str(exc))
    return _check("documents", ok, detail)


def _state(home: Path, trusted: Checkpoint | None) -> dict[str, Any]:
    """The log reaches its anchor, and the home is as its last signed `state` event says."""
    try:
        with AuditLog(audit_dir(home)) as log:
            return _check("state", True, verify_state(home, log, trusted))
    except ApplianceError as exc:
        return _check("state", False, str(exc))
