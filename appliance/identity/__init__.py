"""Local users, roles and sign-in, with separation of duties.

Users live in SQLite (`identity/users.db`, mode 0600) with argon2id password
hashes. Three roles: operators work (ask and chat), security officers read,
export and prune the audit log and manage officer accounts, IT admins manage
the other accounts and installs. No role does another's job: an admin cannot
read audit content, prune, or create, reset or lock an officer; an officer
cannot manage operators or admins; an operator can only work. Every sign-in,
failure, throttle and account change is audited by the caller.
"""

from appliance.identity.roles import DEV_ROLE, PERMISSIONS, ROLES, Principal
from appliance.identity.users import (
    REQUEST_HOURS,
    Account,
    Request,
    SignInResult,
    Users,
    check_account,
    check_name,
    check_password,
    has_users,
    users_path,
)

__all__ = [
    "DEV_ROLE",
    "PERMISSIONS",
    "REQUEST_HOURS",
    "ROLES",
    "Account",
    "Principal",
    "Request",
    "SignInResult",
    "Users",
    "check_account",
    "check_name",
    "check_password",
    "has_users",
    "users_path",
]
