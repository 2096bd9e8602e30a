"""Account management by IT admins: each change is checked, made and audited together.

The CLI (`appliance users ...`) and the TUI's users screen both go through
`AccountAdmin`, so the rules and the audit trail are the same everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from appliance.audit import Actor, AuditLog, Event
from appliance.identity import Account, Principal, Users
from appliance.policy import Policy


@dataclass(frozen=True)
class AccountAdmin:
    home: Path
    policy: Policy
    log: AuditLog
    principal: Principal

    @property
    def actor(self) -> Actor:
        return Actor(self.principal.user, self.principal.role)

    def authorize(self, *, own_password_of: str | None = None) -> None:
        """Admins manage every account; anyone may change their own password.

        A refusal is audited before it is raised.
        """
        if self.principal.may("users.manage") or own_password_of == self.principal.user:
            return
        details = {"permission": "users.manage"}
        self.log.record(Event(self.actor, "policy_block", "users", "denied", details=details))
        self.principal.require("users.manage")

    def accounts(self) -> list[Account]:
        self.authorize()
        with Users(self.home) as users:
            return users.accounts()

    def add(self, name: str, role: str, clearance: str | None, password: str) -> str:
        """Create an account; returns the clearance given (default: the lowest level)."""
        self.authorize()
        level = self.policy.level(clearance or self.policy.lowest.id).id
        with Users(self.home) as users:
            users.add(name, role, level, password, self.policy.min_password_length)
        details = {"role": role, "clearance": level}
        self.log.record(Event(self.actor, "user_add", name, details=details), checkpoint=True)
        return level

    def set_password(self, name: str, password: str) -> None:
        self.authorize(own_password_of=name)
        with Users(self.home) as users:
            users.set_password(name, password, self.policy.min_password_length)
        self.log.record(Event(self.actor, "password_change", name), checkpoint=True)

    def set_locked(self, name: str, *, locked: bool) -> None:
        self.authorize()
        with Users(self.home) as users:
            (users.lock if locked else users.unlock)(name)
        action = "user_lock" if locked else "user_unlock"
        self.log.record(Event(self.actor, action, name), checkpoint=True)
