"""Account management: each change is checked, made and audited together.

The CLI (`appliance users ...`) and the TUI's users screen both go through
`AccountAdmin`, so the rules and the audit trail are the same everywhere:

- admins manage operator and admin accounts; officers manage officer
  accounts (another officer's password, lock, unlock); anyone sets their own
  password. An admin alone can never create, reset or lock an officer.
- an admin's request for a new officer stays pending until an officer
  approves it from their own session, within `REQUEST_HOURS`; the approving
  officer sets the first password, so no admin ever knows an officer's.
- a password set by anyone but its user must be changed at the next sign-in.
- every action first checks that the acting account is unchanged since it
  signed in (not locked, password not reset).
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from pathlib import Path

from appliance.audit import Actor, AuditLog, Event
from appliance.errors import PermissionDeniedError, UsageError
from appliance.fsutil import atomic_writer
from appliance.homestate import record_state
from appliance.identity import (
    Account,
    Principal,
    Request,
    Users,
    check_account,
    check_name,
    check_password,
)
from appliance.policy import HOME_POLICY, Policy, active_policy_path
from appliance.seal import Identity, Recipient


def first_accounts(
    home: Path,
    policy: Policy,
    log: AuditLog,
    actor: Actor,
    admin: tuple[str, str],
    officer: tuple[str, str],
    escrow: Recipient | None,
) -> None:
    """The home's first admin and first officer (each a name and a temporary password),
    together, so a home always has an officer; refused where any account exists.
    The policy in force is pinned as the home's own, and all of it is audited and
    signed into the home's state."""
    if admin[0] == officer[0]:
        raise UsageError("the admin and the officer must be two accounts")
    for name, password in (admin, officer):  # both, before anything is made
        check_name(name)
        check_password(password, policy.min_password_length)
    with Users(home) as users:
        if not users.empty():
            raise UsageError(
                "accounts exist already; admins add more with 'appliance users add'",
                code="accounts_exist",
            )
        _pin_policy(home)
        for (name, password), role in ((admin, "admin"), (officer, "officer")):
            users.add(name, role, policy.lowest.id, password, policy.min_password_length)
            details = {"role": role, "clearance": policy.lowest.id}
            log.record(Event(actor, "user_add", name, details=details))
        if escrow is not None:
            log.record(Event(actor, "officer_escrow", "officers", details={"escrow": str(escrow)}))
        record_state(home, log, actor, "setup")


def _pin_policy(home: Path) -> None:
    """A home with accounts never falls back to a default: keep the policy in force
    (the shipped default, in a home that has none) as the home's own policy.toml."""
    path = home / HOME_POLICY
    if path.exists() or path.is_symlink():
        return
    text = active_policy_path(home).read_bytes()
    with atomic_writer(path, mode=0o644) as sink:
        sink.write(text)


@dataclass(frozen=True)
class AccountAdmin:
    home: Path
    policy: Policy
    log: AuditLog
    principal: Principal

    @property
    def actor(self) -> Actor:
        return Actor(self.principal.user, self.principal.role)

    def authorize(
        self, permission: str = "users.manage", *, own_password_of: str | None = None
    ) -> None:
        """The acting account is current and holds `permission` (own password: always).

        A refusal is audited before it is raised.
        """
        check_account(self.home, self.principal)
        if self.principal.may(permission) or own_password_of == self.principal.user:
            return
        details = {"permission": permission}
        self.log.record(Event(self.actor, "policy_block", "users", "denied", details=details))
        self.principal.require(permission)

    def accounts(self) -> list[Account]:
        self.authorize(self._listing_permission())
        with Users(self.home) as users:
            return users.accounts()

    def add(self, name: str, role: str, clearance: str | None, password: str) -> str:
        """Create an operator or admin account; returns the clearance given."""
        self.authorize()
        if role == "officer":
            raise ValueError("officers are requested with request_officer")  # a caller's bug
        level = self._level(clearance)
        with Users(self.home) as users:
            users.add(name, role, level, password, self.policy.min_password_length)
        details = {"role": role, "clearance": level}
        self.log.record(Event(self.actor, "user_add", name, details=details))
        record_state(self.home, self.log, self.actor, "user_add")
        return level

    def request_officer(self, name: str, clearance: str | None) -> Request:
        """An admin asks for an officer account; an officer must approve it."""
        self.authorize()
        with Users(self.home) as users:
            request = users.request(name, "officer", self._level(clearance), self.principal.user)
        details = {"role": "officer", "clearance": request.clearance}
        self.log.record(Event(self.actor, "user_request", name, details=details), checkpoint=True)
        return request

    def pending(self) -> list[Request]:
        self.authorize(self._listing_permission())
        with Users(self.home) as users:
            return users.requests()

    def approve(self, name: str, password: str) -> Request:
        """An officer approves a pending request and sets the first password."""
        self.authorize("officers.manage")
        with Users(self.home) as users:
            request = users.take_request(name)
            users.add(
                name, request.role, request.clearance, password, self.policy.min_password_length
            )
        details = {
            "role": request.role,
            "clearance": request.clearance,
            "requested_by": request.requested_by,
        }
        self.log.record(Event(self.actor, "user_approve", name, details=details))
        record_state(self.home, self.log, self.actor, "user_approve")
        return request

    def authorize_password(self, name: str) -> None:
        """May set the password of `name`: their own, or by the account's role."""
        own = name == self.principal.user
        self.authorize(self._permission_over(name), own_password_of=name if own else None)

    def set_password(self, name: str, password: str) -> None:
        """Your own password, or (by role) someone else's, which they must then change."""
        own = name == self.principal.user
        self.authorize_password(name)
        with Users(self.home) as users:
            users.set_password(name, password, self.policy.min_password_length, must_change=not own)
        details = {"reset": not own}
        self.log.record(Event(self.actor, "password_change", name, details=details))
        record_state(self.home, self.log, self.actor, "password_change")

    def set_locked(self, name: str, *, locked: bool) -> None:
        self.authorize(self._permission_over(name))
        with Users(self.home) as users:
            (users.lock if locked else users.unlock)(name)
        action = "user_lock" if locked else "user_unlock"
        self.log.record(Event(self.actor, action, name))
        record_state(self.home, self.log, self.actor, action)

    def bind(self, name: str, os_uid: int | None) -> None:
        """Bind an account to the OS account it may sign in from (None: unbind); it
        matters where the policy says `service.bind_os_users`."""
        self.authorize(self._permission_over(name))
        with Users(self.home) as users:
            users.bind(name, os_uid)
        self.log.record(Event(self.actor, "user_bind", name, details={"os_uid": os_uid}))
        record_state(self.home, self.log, self.actor, "user_bind")

    def _permission_over(self, name: str) -> str:
        """Officer accounts belong to officers; every other account to admins."""
        with Users(self.home) as users:
            account = users.account(name)
        return (
            "officers.manage"
            if account is not None and account.role == "officer"
            else "users.manage"
        )

    def _listing_permission(self) -> str:
        """Admins and officers both see the accounts and the pending requests."""
        return "officers.manage" if self.principal.may("officers.manage") else "users.manage"

    def _level(self, clearance: str | None) -> str:
        return self.policy.level(clearance or self.policy.lowest.id).id


def escrow_recipient(log: AuditLog) -> str | None:
    """The officer escrow recipient named at setup, as the audit chain records it."""
    latest = None
    for row in log.events(action="officer_escrow"):
        latest = json.loads(row["leaf"])["details"]["escrow"]
    return latest


def recover_officer(
    home: Path,
    policy: Policy,
    log: AuditLog,
    name: str,
    password: str,
    escrow: Identity,
    actor: Actor,
) -> None:
    """Losing every officer: whoever holds the escrow identity restores officer `name`.

    Possession is the proof: the identity must be the escrow recorded at setup.
    The account is created, or unlocked with a new password; `audit verify`
    reports every recovery.
    """
    recorded = escrow_recipient(log)
    if recorded is None:
        raise PermissionDeniedError(
            "this home has no officer escrow; an officer cannot be recovered"
        )
    if not hmac.compare_digest(str(escrow.recipient).encode(), recorded.encode()):
        log.record(Event(actor, "policy_block", "officers", "denied", details={"recovery": name}))
        raise PermissionDeniedError("that identity is not the officer escrow of this home")
    with Users(home) as users:
        account = users.account(name)
        if account is None:
            users.add(
                name,
                "officer",
                policy.lowest.id,
                password,
                policy.min_password_length,
                must_change=False,
            )
        elif account.role != "officer":
            raise UsageError(f"{name} is not an officer account")
        else:
            users.set_password(name, password, policy.min_password_length, must_change=False)
            users.unlock(name)
    details = {"created": account is None}
    log.record(Event(actor, "officer_recovery", name, details=details))
    record_state(home, log, actor, "officer_recovery")
