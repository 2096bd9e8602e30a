"""The home's security state, signed into the audit log, and the check against it.

Whoever can write the home could otherwise change what the appliance trusts
and nothing would notice: send audit content to another officer key, give an
account a role or a clearance, plant an air-gap override, swap config.toml or
the policy. So every change the appliance itself makes to those pieces ends
with a `state` event whose details carry a digest of each (`record_state`),
and before serving, `check_state` compares the home with the last one:

- `officers`: the officer recipients content is sealed to (`audit/officers`);
- `accounts`: each account's name, role, clearance, lock state and generation
  (not password hashes or sign-in throttling, which change by themselves);
- `config`: the bytes of `config.toml`;
- `policy_link`: what `policy.toml` is (a link and its target, a file, absent);
- `policy`: the bytes of the policy file `policy.toml` resolves to;
- `airgap_override`: the air-gap override file (absent, or its bytes).

It also checks the audit anchor (`audit/anchor`, the highest signed seq kept
outside the database): a log below it was truncated, lost its WAL, or is an
older copy. What an on-host check cannot see is a rollback of the whole home,
anchor included: only an officer's trusted checkpoint, kept off the host, can.
Format: docs/formats/audit.md ("Home state").
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from appliance.audit import ANCHOR_FILE, Actor, AuditLog, Checkpoint, Event, read_officers
from appliance.config import CONFIG_FILE
from appliance.errors import ApplianceError, IntegrityError
from appliance.identity import Users, has_users, users_path
from appliance.policy import HOME_POLICY
from appliance.policy.override import OVERRIDE_FILE

ABSENT = "absent"
STATE_OBJECT = "home"

# What each digest covers, as a refusal names it.
PIECES = {
    "officers": "the officer keys (audit/officers)",
    "accounts": "the accounts' roles, clearances or lock state (identity/users.db)",
    "config": f"the home's {CONFIG_FILE}",
    "policy_link": f"the policy link ({HOME_POLICY})",
    "policy": f"the policy file that {HOME_POLICY} names",
    "airgap_override": "the air-gap override",
}


def home_state(home: Path) -> dict[str, str]:
    """A digest (lower-case hex SHA-256, or "absent") of each piece of PIECES."""
    return {
        "officers": _officers(home),
        "accounts": _accounts(home),
        "config": _file(home / CONFIG_FILE),
        "policy_link": _policy_link(home / HOME_POLICY),
        "policy": _file(home / HOME_POLICY),
        "airgap_override": _file(home / OVERRIDE_FILE),
    }


def record_state(home: Path, log: AuditLog, actor: Actor, reason: str) -> int:
    """Sign the home's state into `log` (a `state` event, checkpointed); return its seq.

    Call it after every change the appliance makes to a piece of PIECES.
    """
    details = {"reason": reason, "digests": home_state(home)}
    return log.record(Event(actor, "state", STATE_OBJECT, details=details), checkpoint=True)


def last_state(log: AuditLog) -> tuple[int, dict[str, str]] | None:
    """The seq and digests of the newest `state` event, or None if there is none."""
    for row in log.events(action="state", newest_first=True, limit=1):
        details = json.loads(row["leaf"]).get("details", {})
        digests = details.get("digests")
        if not isinstance(digests, dict):
            raise IntegrityError(f"the state event at seq {row['seq']} is malformed")
        return int(row["seq"]), {str(k): str(v) for k, v in digests.items()}
    return None


def differences(recorded: dict[str, str], now: dict[str, str]) -> list[str]:
    """The pieces that differ, in PIECES order.

    Removing an override is no difference: without one the requirement holds.
    """
    changed = []
    for piece in PIECES:
        if recorded.get(piece) == now.get(piece):
            continue
        if piece == "airgap_override" and now.get(piece) == ABSENT:
            continue
        changed.append(piece)
    return changed


def verify_state(home: Path, log: AuditLog, trusted: Checkpoint | None = None) -> str:
    """Check the anchor, and the home against the last signed state; a one-line summary.

    IntegrityError, in one sentence, names the first thing that differs.
    With `trusted` (an officer's checkpoint from off the host), the log must
    also reach it and agree with it there, which rules out a rollback of the
    whole home to before it. The stored chain is taken as it is: `AuditLog.verify`
    proves it (the doctor runs both).
    """
    accounts = has_users(home)
    anchor = log.check_anchor()
    if anchor is None and accounts:
        raise IntegrityError(
            f"the home has accounts but no audit anchor (audit/{ANCHOR_FILE}): the audit log "
            "was replaced or the anchor deleted"
        )
    if trusted is not None:
        log.check_extends(trusted, "the trusted checkpoint")
    found = last_state(log)
    if found is None:
        if accounts:
            raise IntegrityError(
                "the home has accounts but its audit log holds no signed state: the log was "
                "replaced, or the home predates signed state (an officer signs it with "
                "'appliance audit state --accept')"
            )
        return "development home (no accounts), no signed state to compare"
    seq, recorded = found
    changed = differences(recorded, home_state(home))
    if changed:
        first = PIECES[changed[0]]
        more = f" (and {', '.join(changed[1:])})" if len(changed) > 1 else ""
        raise IntegrityError(f"{first} changed outside the appliance since seq {seq}{more}")
    summary = f"the home matches the state signed at seq {seq}"
    if anchor is not None:
        summary += f"; the log extends its anchor at seq {anchor.seq}"
    if trusted is not None:
        return summary + f" and the trusted checkpoint at seq {trusted.seq}"
    return (
        summary + "; without an officer's trusted checkpoint a rollback of the whole home, "
        "anchor included, cannot be ruled out (--trusted-checkpoint FILE)"
    )


def check_state(home: Path, log: AuditLog) -> None:
    """Raise IntegrityError (one sentence) unless the home is as last signed.

    What `appliance serve` runs before serving, and `appliance doctor` too.
    """
    verify_state(home, log)


# -- digests ----------------------------------------------------------------------


def accept_state(home: Path, log: AuditLog, actor: Actor, reason: str) -> tuple[int, list[str]]:
    """An officer signs a reviewed hand edit of the config or policy; returns (seq, changed).

    Accounts and officer keys change only through the appliance's own
    commands, so a difference there is never accepted: the database is
    restored. A truncated or replaced log is restored too, never accepted.
    """
    log.check_anchor()
    found = last_state(log)
    changed = differences(found[1], home_state(home)) if found else []
    fixed = [piece for piece in changed if piece in ("accounts", "officers")]
    if found and fixed:
        raise IntegrityError(
            f"the {' and '.join(fixed)} changed outside the appliance since seq {found[0]} "
            "and are never accepted: restore them (they change only through appliance commands)"
        )
    return record_state(home, log, actor, f"accepted: {reason}"), changed


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file(path: Path) -> str:
    """The bytes of `path` (through links), "absent", or a digest that matches nothing."""
    try:
        return _sha256(path.read_bytes())
    except FileNotFoundError:
        return ABSENT
    except OSError as exc:
        return f"unreadable:{exc.errno}"


def _policy_link(path: Path) -> str:
    """What `policy.toml` is: a link (its target), a file in the home, or absent."""
    if path.is_symlink():
        return _sha256(b"link\0" + os.fsencode(os.readlink(path)))
    if path.exists():
        return _sha256(b"file")
    return ABSENT


def _officers(home: Path) -> str:
    try:
        recipients = read_officers(home / "audit" / "officers")
    except ApplianceError:
        return "unreadable"
    if not recipients:
        return ABSENT
    return _sha256("".join(f"{recipient}\n" for recipient in recipients).encode())


def _accounts(home: Path) -> str:
    rows: list[tuple[object, ...]] = []
    if users_path(home).exists():
        with Users(home) as users:
            rows = users.security_state()
    return _sha256(json.dumps(rows, ensure_ascii=True, separators=(",", ":")).encode())
