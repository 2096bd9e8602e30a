"""Local users, roles and sign-in, with separation of duties.

Users live in SQLite (`identity/users.db`, mode 0600) with argon2id password
hashes. Three roles: operators work (ask and chat), security officers read,
export and prune the audit log and manage policy, IT admins manage users and
installs. No role does another's job: an admin cannot read audit content or
prune, an officer cannot manage users, an operator can only work. Every
sign-in, failure, lockout and account change is audited by the caller.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from appliance.config import ensure_dir
from appliance.errors import (
    AuthenticationError,
    ConfigError,
    PermissionDeniedError,
    UsageError,
)

ROLES = ("operator", "officer", "admin")
DEV_ROLE = "dev"  # a home without users, where the policy allows it
PERMISSIONS: dict[str, frozenset[str]] = {
    "ask": frozenset({"operator"}),
    "audit.read": frozenset({"officer", "admin"}),  # verify, export, show metadata
    "audit.content": frozenset({"officer"}),  # show --decrypt
    "audit.prune": frozenset({"officer"}),
    "audit.officer-keys": frozenset({"officer"}),
    "airgap.override": frozenset({"officer"}),
    "users.manage": frozenset({"admin"}),
}
_NAME = re.compile(r"[a-z][a-z0-9._-]{1,31}")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    clearance TEXT NOT NULL,
    hash TEXT NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    locked_until INTEGER NOT NULL DEFAULT 0,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_us INTEGER NOT NULL
)
"""


@dataclass(frozen=True)
class Principal:
    """Who is signed in: the name, role and clearance (a policy level id)."""

    user: str
    role: str
    clearance: str
    dev: bool = False  # development mode: the local account, every role

    def may(self, permission: str) -> bool:
        return self.dev or self.role in PERMISSIONS[permission]

    def require(self, permission: str) -> None:
        if not self.may(permission):
            allowed = " or ".join(sorted(PERMISSIONS[permission]))
            raise PermissionDeniedError(
                f"{self.user} ({self.role}) may not do this; it needs the {allowed} role"
            )


@dataclass(frozen=True)
class SignInResult:
    principal: Principal | None
    locked_now: bool = False  # this failure locked the account


@dataclass(frozen=True)
class Account:
    name: str
    role: str
    clearance: str
    locked: bool
    failures: int


def users_path(home: Path) -> Path:
    return home / "identity" / "users.db"


def has_users(home: Path) -> bool:
    """Whether the home has accounts; reads only, so it works on a read-only home."""
    path = users_path(home)
    if not path.exists():
        return False
    with Users(home) as users:
        return not users.empty()


class Users:
    """The user database of one home (created on first use)."""

    def __init__(self, home: Path) -> None:
        ensure_dir(home / "identity")
        path = users_path(home)
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
            self.conn = sqlite3.connect(path, timeout=10, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the user database {path}: {exc}") from None
        self.hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory defaults

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Users:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def empty(self) -> bool:
        return bool(self.conn.execute("SELECT count(*) FROM users").fetchone()[0] == 0)

    def add(self, name: str, role: str, clearance: str, password: str, min_length: int) -> None:
        if not _NAME.fullmatch(name):
            raise UsageError(f"'{name}' is not a valid user name (a-z, 0-9, . _ -; 2-32)")
        if role not in ROLES:
            raise UsageError(f"unknown role '{role}' (use {', '.join(ROLES)})")
        _check_password(password, min_length)
        with self._transaction():
            if self._row(name) is not None:
                raise UsageError(f"the user {name} already exists")
            self.conn.execute(
                "INSERT INTO users (name, role, clearance, hash, created_us) "
                "VALUES (?, ?, ?, ?, ?)",
                (name, role, clearance, self.hasher.hash(password), _now_us()),
            )

    def set_password(self, name: str, password: str, min_length: int) -> None:
        _check_password(password, min_length)
        self._update(name, "hash = ?, failures = 0", (self.hasher.hash(password),))

    def lock(self, name: str) -> None:
        self._update(name, "disabled = 1", ())

    def unlock(self, name: str) -> None:
        self._update(name, "disabled = 0, failures = 0, locked_until = 0", ())

    def accounts(self) -> list[Account]:
        now = _now_us()
        rows = self.conn.execute(
            "SELECT name, role, clearance, disabled, locked_until, failures FROM users "
            "ORDER BY name"
        )
        return [
            Account(name, role, clearance, bool(disabled) or until > now, failures)
            for name, role, clearance, disabled, until, failures in rows
        ]

    def sign_in(
        self, name: str, password: str, *, max_failures: int, lockout_minutes: int
    ) -> SignInResult:
        """Check a password; count failures and lock after `max_failures` in a row.

        Unknown names cost a hash verification too, so timing does not tell
        which names exist.
        """
        with self._transaction():
            row = self._row(name)
            if row is None:
                _burn(self.hasher, password)
                return SignInResult(None)
            role, clearance, stored, failures, locked_until, disabled = row
            now = _now_us()
            if disabled or locked_until > now:
                until = "an admin unlocks it" if disabled else _clock(locked_until)
                raise AuthenticationError(f"the account {name} is locked until {until}")
            try:
                self.hasher.verify(stored, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                failed = int(failures) + 1
                lock = failed >= max_failures
                lock_end = now + lockout_minutes * 60_000_000 if lock else 0
                self.conn.execute(
                    "UPDATE users SET failures = ?, locked_until = ? WHERE name = ?",
                    (0 if lock else failed, lock_end, name),
                )
                return SignInResult(None, locked_now=lock)
            if self.hasher.check_needs_rehash(stored):
                stored = self.hasher.hash(password)
            self.conn.execute(
                "UPDATE users SET failures = 0, hash = ? WHERE name = ?", (stored, name)
            )
            return SignInResult(Principal(name, role, clearance))

    # -- internals -----------------------------------------------------------------------

    def _row(self, name: str) -> tuple[Any, ...] | None:
        return self.conn.execute(  # type: ignore[no-any-return]
            "SELECT role, clearance, hash, failures, locked_until, disabled FROM users "
            "WHERE name = ?",
            (name,),
        ).fetchone()

    def _update(self, name: str, assignments: str, values: tuple[Any, ...]) -> None:
        with self._transaction():
            cursor = self.conn.execute(
                f"UPDATE users SET {assignments} WHERE name = ?",
                (*values, name),
            )
            if cursor.rowcount == 0:
                raise UsageError(f"there is no user {name}")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise


def _check_password(password: str, min_length: int) -> None:
    if len(password) < min_length:
        raise UsageError(f"the password must have at least {min_length} characters")


def _burn(hasher: PasswordHasher, password: str) -> None:
    with contextlib.suppress(VerificationError, InvalidHashError):
        hasher.verify(_dummy_hash(), password)


@functools.cache
def _dummy_hash() -> str:
    return PasswordHasher().hash("no user has this password")


def _now_us() -> int:
    return time.time_ns() // 1000


def _clock(time_us: int) -> str:
    return time.strftime("%H:%M UTC", time.gmtime(time_us / 1e6))
