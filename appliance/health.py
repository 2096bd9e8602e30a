"""What `appliance doctor` checks in the home: policy, air gap, audit log, the home's
state against its last signed one (appliance/homestate.py), the last backup, the
documents store and the release's llama.cpp tools. The model's checks are the
caller's: the CLI loads the model, the service reports the one it serves."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from appliance.audit import AuditLog, Checkpoint, audit_dir
from appliance.backup import DROPIN, last_backup, render_dropin
from appliance.bundle.binaries import check_binaries
from appliance.config import load_home_config
from appliance.documents.consistency import check_home
from appliance.engine.report import Report, read_report
from appliance.errors import ApplianceError
from appliance.fsutil import read_limited
from appliance.homestate import verify_state
from appliance.policy import Policy, active_policy, active_policy_path
from appliance.policy.override import airgap_verdict, site_passages
from appliance.policy.schema import BackupRules

Check = dict[str, Any]  # {"name", "ok": True | False | None (a warning), "detail"}


def home_checks(
    home: Path,
    trusted: Checkpoint | None,
    model: Callable[[], Check],
    remotes: Callable[[Policy], list[Check]],
    *,
    installed: bool,
    log: AuditLog | None = None,
) -> list[Check]:
    """Every check, in the order `doctor` prints them. `installed`: on a host the
    installer configured (its systemd drop-ins are checked too); `log`: the home's
    audit log where the caller holds it open (the service: SQLite wants one
    connection per file in a process), else each check opens its own."""
    policy: Policy | None
    try:
        policy = active_policy(home)
        checks = [check("policy", True, f"{policy.describe()} from {active_policy_path(home)}")]
    except ApplianceError as exc:
        policy = None  # the other checks assume the strictest policy: fail closed
        checks = [check("policy", False, str(exc))]
    checks += [_airgap(home, policy), model(), _audit(home, policy, trusted, log)]
    if policy is not None and policy.remote.allowed:
        checks += remotes(policy)
    checks.append(_state(home, trusted, log))
    checks.append(backup_check(home, policy, installed=installed, log=log))
    checks.append(_documents(home, log))
    checks.append(check_binaries())  # the installed release's llama.cpp tools and preload
    return checks


def release_report(home: Path) -> Report | None:
    """The lightweighting report of the installed release's model, named by its signed
    manifest (None without a release, or when the report is not that model's)."""
    manifest = load_home_config(home).manifest
    if manifest is None:
        return None
    model = json.loads(read_limited(manifest, 64 << 10, "the release manifest"))["model"]
    name = model.get("report")
    if not isinstance(name, str) or not name.startswith("model/") or ".." in name:
        return None
    report = read_report(manifest.parent / name)
    return report if report.quantized.sha256 == model["sha256"] else None


def model_check(detail: str, report: Callable[[], Report | None]) -> Check:
    """A loaded model's check: `detail` says how it was loaded; with the lightweighting
    report `report` reads (a warning when it cannot be read)."""
    try:
        found = report()
    except ApplianceError as exc:
        return check("model", None, f"{detail}; its report is unreadable: {exc}")
    return check("model", True, detail) | {"report": found.to_dict() if found else None}


def check(name: str, ok: bool | None, detail: str) -> Check:
    return {"name": name, "ok": ok, "detail": detail}


def _airgap(home: Path, policy: Policy | None) -> Check:
    # No valid policy: the strictest, an air gap and no override.
    required = policy is None or policy.require_airgap
    passages = site_passages(home, policy.remote) if policy else []
    maximum = policy.airgap_override_max_minutes if policy else 0
    verdict = airgap_verdict(home, required, maximum, passages)
    if verdict.airgapped:
        return check("airgap", True, verdict.detail)
    if not verdict.allowed:
        return check("airgap", False, f"the policy requires an air gap, but {verdict.detail}")
    return check("airgap", None, f"not air-gapped: {verdict.detail}")


def _audit(
    home: Path, policy: Policy | None, trusted: Checkpoint | None, held: AuditLog | None
) -> Check:
    """The chain verifies, and content can be recorded where the policy demands it."""
    required = policy is None or policy.require_content
    try:
        with _opened(home, held, require_content=required) as log:
            report = log.verify(trusted=trusted)
            officers = len(log.officers)
    except ApplianceError as exc:
        return check("audit", False, str(exc))
    content = f"content sealed to {officers} officer key(s)" if officers else "metadata only"
    detail = f"verified, {report.events} events, {report.checkpoints} checkpoints; {content}"
    for restore in report.restores:  # legitimate, and never complete: say so every time
        lost = restore.lost
        gone = f"events {lost[0]}-{lost[1]} lost" if lost else "nothing lost"
        detail += f"; restored from a backup at seq {restore.seq} ({gone})"
    return check("audit", True, detail)


def backup_check(
    home: Path,
    policy: Policy | None,
    *,
    installed: bool,
    now: float | None = None,
    log: AuditLog | None = None,
) -> Check:
    """The age of the newest backup (from the audit log) at `now` (default: now), a
    warning past the policy's limit or when there is none; and, on an installed host,
    the unit's drop-in that lets the service write the folder."""
    limit = policy.backup.max_age_hours if policy else BackupRules().max_age_hours
    try:
        site = load_home_config(home).backup
        with _opened(home, log) as opened:
            found = last_backup(opened)
    except ApplianceError as exc:
        return check("backup", None, str(exc))
    if found is None:
        todo = "run 'appliance backup'" if site else "configure [backup] in config.toml"
        return check("backup", None, f"the home was never backed up; {todo}")
    seq, time_us = found
    hours = ((time.time() if now is None else now) - time_us / 1e6) / 3600
    detail = f"the last backup is {_age(hours)} old (seq {seq}; the policy allows {limit} h)"
    if site is None:
        return check("backup", None, f"{detail}, but [backup] is no longer in config.toml")
    if installed and _dropin() != render_dropin(site):
        return check(
            "backup",
            None,
            f"{detail}; {DROPIN} is missing or does not match config.toml: write it from "
            "'appliance backup unit', then 'systemctl daemon-reload' and restart the service",
        )
    if hours > limit:
        return check("backup", None, f"{detail}: make one ('appliance backup')")
    return check("backup", True, detail)


def _age(hours: float) -> str:
    if hours < 1:
        return f"{max(0, round(hours * 60))} min"
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


def _dropin() -> str | None:
    try:
        return DROPIN.read_text(encoding="utf-8")
    except OSError:
        return None


def _documents(home: Path, held: AuditLog | None) -> Check:
    """The documents store holds what the audit log says: nothing rolled back, slipped
    in, taken out or swapped behind the appliance's back."""
    try:
        with _opened(home, held) as log:
            ok, detail = check_home(home, log)
    except ApplianceError as exc:
        return check("documents", False, str(exc))
    return check("documents", ok, detail)


def _state(home: Path, trusted: Checkpoint | None, held: AuditLog | None) -> Check:
    """The log reaches its anchor, and the home is as its last signed `state` event says."""
    try:
        with _opened(home, held) as log:
            return check("state", True, verify_state(home, log, trusted))
    except ApplianceError as exc:
        return check("state", False, str(exc))


@contextlib.contextmanager
def _opened(home: Path, held: AuditLog | None, **options: Any) -> Iterator[AuditLog]:
    if held is not None:
        yield held
        return
    with AuditLog(audit_dir(home), **options) as log:
        yield log
