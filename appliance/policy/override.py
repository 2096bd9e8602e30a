"""An officer's time-limited override of the air-gap requirement."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from appliance.config import load_home_config
from appliance.errors import UsageError
from appliance.fsutil import atomic_writer
from appliance.policy.airgap import Passage, attest
from appliance.policy.remote import RemoteRules

OVERRIDE_FILE = "airgap-override.json"


@dataclass(frozen=True)
class Override:
    user: str
    reason: str
    granted_us: int
    until_us: int

    def within(self, max_minutes: int) -> Override | None:
        """The override as the policy now bounds it; None once it has run out."""
        until = min(self.until_us, self.granted_us + max_minutes * 60_000_000)
        bounded = Override(self.user, self.reason, self.granted_us, until)
        return bounded if until > time.time_ns() // 1000 else None

    def describe(self) -> str:
        until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.until_us / 1e6))
        return f"overridden by {self.user} until {until} ({self.reason})"


def check_grant(minutes: int, reason: str, max_minutes: int, policy: str) -> None:
    """Refuse an override the policy does not allow, before anything is recorded."""
    if max_minutes == 0:
        raise UsageError(f"policy {policy} allows no override of the air-gap requirement")
    if not 1 <= minutes <= max_minutes:
        raise UsageError(
            f"an override lasts 1 to at most {max_minutes} minutes under policy {policy}"
        )
    if not reason.strip():
        raise UsageError("give the reason for the override")


def grant(home: Path, user: str, minutes: int, reason: str) -> Override:
    now = time.time_ns() // 1000
    override = Override(user, reason.strip(), now, now + minutes * 60_000_000)
    record = {
        "user": override.user,
        "reason": override.reason,
        "granted_us": override.granted_us,
        "until_us": override.until_us,
    }
    with atomic_writer(home / OVERRIDE_FILE, mode=0o600) as handle:
        handle.write(json.dumps(record).encode())
    return override


def current(home: Path, max_minutes: int) -> Override | None:
    """The active override within the policy's bound (a damaged file counts as none)."""
    try:
        record = json.loads((home / OVERRIDE_FILE).read_text(encoding="utf-8"))
        override = Override(
            str(record["user"]),
            str(record["reason"]),
            int(record["granted_us"]),
            int(record["until_us"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return override.within(max_minutes)


@dataclass(frozen=True)
class AirgapVerdict:
    """The host's network against the policy: serve (`allowed`) or not, and why."""

    allowed: bool
    airgapped: bool
    detail: str  # "air-gapped", or the first reason and what permits it


def site_passages(home: Path, rules: RemoteRules) -> list[Passage]:
    """The listed GPU servers the air gap leaves a way to, where the policy allows any:
    each on its interface (a server listed without one opens no way)."""
    if not rules.allowed:
        return []
    remotes = load_home_config(home).remotes
    return [Passage(r["interface"], r["host"]) for r in remotes if r["interface"] is not None]


def airgap_verdict(
    home: Path,
    require_airgap: bool,
    override_max_minutes: int,
    passages: Sequence[Passage] = (),
) -> AirgapVerdict:
    """Attest the host's network now; weigh it against the requirement and any override.
    `passages`: the listed GPU servers (site_passages)."""
    attestation = attest(passages=passages)
    if attestation.airgapped:
        return AirgapVerdict(True, True, "air-gapped")
    reason = attestation.reasons[0]
    if not require_airgap:
        return AirgapVerdict(True, False, f"not required ({reason})")
    override = current(home, override_max_minutes)
    if override is not None:
        return AirgapVerdict(True, False, f"{reason}; requirement {override.describe()}")
    return AirgapVerdict(False, False, reason)
