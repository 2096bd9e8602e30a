"""An officer's time-limited override of the air-gap requirement."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import UsageError
from appliance.fsutil import atomic_writer

OVERRIDE_FILE = "airgap-override.json"
MAX_MINUTES = 24 * 60


@dataclass(frozen=True)
class Override:
    user: str
    reason: str
    until_us: int

    @property
    def active(self) -> bool:
        return self.until_us > time.time_ns() // 1000

    def describe(self) -> str:
        until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.until_us / 1e6))
        return f"overridden by {self.user} until {until} ({self.reason})"


def grant(home: Path, user: str, minutes: int, reason: str) -> Override:
    if not 1 <= minutes <= MAX_MINUTES:
        raise UsageError(f"an override lasts 1 to {MAX_MINUTES} minutes")
    if not reason.strip():
        raise UsageError("give the reason for the override")
    override = Override(user, reason.strip(), time.time_ns() // 1000 + minutes * 60_000_000)
    record = {"user": override.user, "reason": override.reason, "until_us": override.until_us}
    with atomic_writer(home / OVERRIDE_FILE, mode=0o600) as handle:
        handle.write(json.dumps(record).encode())
    return override


def current(home: Path) -> Override | None:
    """The active override, if any (a damaged file counts as none: fail closed)."""
    try:
        record = json.loads((home / OVERRIDE_FILE).read_text(encoding="utf-8"))
        override = Override(str(record["user"]), str(record["reason"]), int(record["until_us"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return override if override.active else None
