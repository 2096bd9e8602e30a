"""Roles, permissions and the signed-in principal."""

from __future__ import annotations

from dataclasses import dataclass

from appliance.errors import PermissionDeniedError

ROLES = ("operator", "officer", "admin")
DEV_ROLE = "dev"  # a home without users, where the policy allows it
PERMISSIONS: dict[str, frozenset[str]] = {
    "ask": frozenset({"operator"}),
    "audit.read": frozenset({"officer", "admin"}),  # verify, export, show metadata
    "audit.content": frozenset({"officer"}),  # show --decrypt
    "audit.prune": frozenset({"officer"}),
    "audit.officer-keys": frozenset({"officer"}),
    "airgap.override": frozenset({"officer"}),
    "users.manage": frozenset({"admin"}),  # operator and admin accounts
    "officers.manage": frozenset({"officer"}),  # officer accounts, approving new officers
    "service.status": frozenset({"officer", "admin"}),  # sessions and queue of the service
    # Documents: operators add to and read their own and their shared collections, up to
    # their clearance; officers create shared collections, manage their members and may
    # remove a document from one, never reading it; admins have no access to documents.
    "documents.use": frozenset({"operator"}),
    "documents.collections": frozenset({"officer"}),
    "drafts.save": frozenset({"operator"}),  # a conversation saved as HWPX/DOCX/Markdown
    "adapters.manage": frozenset({"admin"}),  # LoRA adapters added to or removed from the home
    "backup.run": frozenset({"admin"}),  # a sealed backup of the home, to the site's recipients
}


@dataclass(frozen=True)
class Principal:
    """Who is signed in: the name, role and clearance (a policy level id).

    `generation` is the account's version at sign-in: a lock, a password
    change or a role change bumps it, which ends sessions opened before.
    `must_change` says someone else set the password: the user sets a new one
    before doing anything else.
    """

    user: str
    role: str
    clearance: str
    dev: bool = False  # development mode: the local account, every role
    generation: int = 0
    must_change: bool = False
    os_uid: int | None = None  # the OS account the account is bound to, if any

    def may(self, permission: str) -> bool:
        return self.dev or self.role in PERMISSIONS[permission]

    def require(self, permission: str) -> None:
        if not self.may(permission):
            allowed = " or ".join(sorted(PERMISSIONS[permission]))
            raise PermissionDeniedError(
                f"{self.user} ({self.role}) may not do this; it needs the {allowed} role",
                code="role_denied",
                user=self.user,
                role=self.role,
                roles=sorted(PERMISSIONS[permission]),
            )
