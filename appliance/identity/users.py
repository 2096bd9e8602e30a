"""The user database of one home: accounts, sign-in throttling and pending requests.

SQLite (`identity/users.db`, mode 0600), argon2id password hashes.

Sign-in does the same work whatever the name: one throttle lookup, one
account lookup, one argon2id verification (against a stored decoy hash when
the name is unknown) and one throttle write, and it answers in the same words.
Failures are counted per name under a keyed hash (HMAC-SHA256 with a random
key kept in the database), so names that do not exist behave like names that
do, and a password typed into the name field is never stored as typed.

After `max_failures` wrong passwords in a row for a name, each further attempt
waits: 1 second, then twice as long after every failure, up to the policy's
`lockout_minutes`. A progressive delay rather than a hard lockout: a guesser
gets a few attempts an hour, while the real user, whom anyone could otherwise
lock out for the whole period by typing their name, signs in after the
current wait. A correct password resets the count.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from appliance.config import ensure_dir
from appliance.errors import AuthenticationError, ConfigError, UsageError
from appliance.identity.roles import ROLES, Principal

NAME = re.compile(r"[a-z][a-z0-9._-]{1,31}")
REQUEST_HOURS = 24  # an officer request not approved by then expires
_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    clearance TEXT NOT NULL,
    hash TEXT NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,  -- unused since failures are counted per name_key
    locked_until INTEGER NOT NULL DEFAULT 0,  -- unused, as failures
    disabled INTEGER NOT NULL DEFAULT 0,
    created_us INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS secrets (name_key BLOB NOT NULL, decoy_hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS throttle (
    name_key TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    wait_until_us INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS requests (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    clearance TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    expires_us INTEGER NOT NULL
);
"""
_ACCOUNT = "SELECT name, role, clearance, disabled, must_change, os_uid FROM users"
_COLUMNS = {  # added after the first release; existing databases gain them on open
    "generation": "INTEGER NOT NULL DEFAULT 0",
    "must_change": "INTEGER NOT NULL DEFAULT 0",
    "os_uid": "INTEGER",  # the OS account it is bound to (service.bind_os_users), or NULL
}
MAX_UID = 2**32 - 2  # (uid_t)-1 is "no user"


@dataclass(frozen=True)
class SignInResult:
    principal: Principal | None
    wait_until_us: int = 0  # set when this failure starts or extends a wait


@dataclass(frozen=True)
class Account:
    name: str
    role: str
    clearance: str
    locked: bool
    failures: int
    must_change: bool = False
    os_uid: int | None = None  # the OS account it signs in from, where the policy binds


@dataclass(frozen=True)
class Request:
    """An admin's request for an officer account, waiting for an officer."""

    name: str
    role: str
    clearance: str
    requested_by: str
    expires_us: int


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
        self.hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory defaults
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600))
            self.conn = sqlite3.connect(path, timeout=10, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.executescript(_SCHEMA)
            self._migrate()
            self._name_key, self._decoy = self._secrets()
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the user database {path}: {exc}") from None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Users:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- accounts ---------------------------------------------------------------------------

    def empty(self) -> bool:
        return bool(self.conn.execute("SELECT count(*) FROM users").fetchone()[0] == 0)

    def add(
        self,
        name: str,
        role: str,
        clearance: str,
        password: str,
        min_length: int,
        *,
        must_change: bool = True,
    ) -> None:
        """A new account; `must_change` unless the user typed the password themselves."""
        check_name(name)
        if role not in ROLES:
            raise UsageError(
                f"unknown role '{role}' (use {', '.join(ROLES)})", code="unknown_role", role=role
            )
        check_password(password, min_length)
        with self._transaction():
            if self._row(name) is not None:
                raise UsageError(f"the user {name} already exists", code="user_exists", user=name)
            self.conn.execute(
                "INSERT INTO users (name, role, clearance, hash, created_us, must_change) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (name, role, clearance, self.hasher.hash(password), _now_us(), int(must_change)),
            )

    def set_password(
        self, name: str, password: str, min_length: int, *, must_change: bool = True
    ) -> None:
        """A new password; `must_change` when someone other than the user set it."""
        check_password(password, min_length)
        self._update(
            name, "hash = ?, must_change = ?", (self.hasher.hash(password), int(must_change))
        )

    def lock(self, name: str) -> None:
        self._update(name, "disabled = 1", ())

    def unlock(self, name: str) -> None:
        self._update(name, "disabled = 0", ())
        with self._transaction():
            self.conn.execute("DELETE FROM throttle WHERE name_key = ?", (self.name_key(name),))

    def bind(self, name: str, os_uid: int | None) -> None:
        """Bind the account to an OS uid (None: to none); its open sessions end."""
        if os_uid is not None and not 0 <= os_uid <= MAX_UID:
            raise UsageError(f"an OS uid is from 0 to {MAX_UID}", code="bad_uid", most=MAX_UID)
        self._update(name, "os_uid = ?", (os_uid,))

    def account(self, name: str) -> Account | None:
        """One account, by a lookup of the same shape whether or not `name` exists."""
        # A name that is not a valid one (a lone surrogate cannot even be encoded)
        # never reaches SQLite: the empty name, which no account has, stands in.
        row = self.conn.execute(
            f"{_ACCOUNT} WHERE name = ?", (name if NAME.fullmatch(name) else "",)
        ).fetchone()
        return None if row is None else self._account(row)

    def accounts(self) -> list[Account]:
        return [self._account(row) for row in self.conn.execute(f"{_ACCOUNT} ORDER BY name")]

    def security_state(self) -> list[tuple[Any, ...]]:
        """(name, role, clearance, locked by an admin, generation[, bound OS uid]) of every
        account, by name; the uid only where one is bound (states signed before binding
        existed stay valid).

        What the appliance signs as the accounts' state (appliance/homestate.py):
        not password hashes or sign-in throttling, which change without an
        admin's action.
        """
        rows = self.conn.execute(
            "SELECT name, role, clearance, disabled, generation, os_uid FROM users ORDER BY name"
        )
        return [
            (str(n), str(r), str(c), bool(d), int(g), *(() if u is None else (int(u),)))
            for n, r, c, d, g, u in rows
        ]

    def _account(self, row: tuple[Any, ...]) -> Account:
        """Locked when an admin locked it or its name is waiting after failures."""
        name, role, clearance, disabled, must_change, os_uid = row
        failures, wait_until = self._throttle(self.name_key(name))
        locked = bool(disabled) or wait_until > _now_us()
        return Account(name, role, clearance, locked, failures, bool(must_change), os_uid)

    def _throttle(self, key: str) -> tuple[int, int]:
        """Failures in a row for a keyed name, and until when it must wait."""
        row = self.conn.execute(
            "SELECT failures, wait_until_us FROM throttle WHERE name_key = ?", (key,)
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def current(self, principal: Principal) -> None:
        """Raise AuthenticationError unless the account is as it was when `principal` signed in."""
        row = self.conn.execute(
            "SELECT generation, disabled FROM users WHERE name = ?", (principal.user,)
        ).fetchone()
        if row is None or row[0] != principal.generation or row[1]:
            raise AuthenticationError(
                f"the account {principal.user} was changed or locked since it signed in; "
                "sign in again"
            )

    # -- sign-in ----------------------------------------------------------------------------

    def name_key(self, name: str) -> str:
        """A keyed hash of a typed name: stable per home, useless without the database."""
        data = name.encode("utf-8", "surrogatepass")
        return hmac.new(self._name_key, data, hashlib.sha256).hexdigest()[:20]

    def sign_in(
        self, name: str, password: str, *, max_failures: int, lockout_minutes: int
    ) -> SignInResult:
        """Check a password, counting failures per name; see the module's docstring.

        Each attempt is counted as a failure before its password is checked, in one
        short transaction, so that attempts in parallel cannot outrun the throttle;
        the slow check (argon2id) runs with no lock held, and a right password then
        clears the count. Sign-ins of many users at once do not queue behind it.
        """
        key = self.name_key(name)
        with self._transaction():
            now = _now_us()
            failures, wait_until = self._throttle(key)
            if wait_until > now:
                raise AuthenticationError(
                    f"too many wrong passwords for this user name; try again after "
                    f"{_clock(wait_until)}",
                    code="throttled",
                    wait_until_us=wait_until,
                )
            row = self._row(name if NAME.fullmatch(name) else "")
            failures += 1
            wait_until = 0
            if failures >= max_failures:
                doublings = min(failures - max_failures, 30)  # 2**30 s is past any cap
                seconds = min(2**doublings, lockout_minutes * 60)
                wait_until = now + seconds * 1_000_000
            self.conn.execute(
                "INSERT OR REPLACE INTO throttle VALUES (?, ?, ?)", (key, failures, wait_until)
            )
        stored = row[2] if row is not None else self._decoy
        if not (self._verify(stored, password) and row is not None):
            return SignInResult(None, wait_until)
        with self._transaction():
            row = self._row(name)  # as it is now: the password may have changed meanwhile
            if row is None or row[2] != stored:
                return SignInResult(None, wait_until)
            self.conn.execute("DELETE FROM throttle WHERE name_key = ?", (key,))
            role, clearance, _, disabled, generation, must_change, os_uid = row
            if disabled:  # said only to someone who knows the password
                raise AuthenticationError(f"the account {name} is locked", code="locked", user=name)
            if self.hasher.check_needs_rehash(stored):
                self.conn.execute(
                    "UPDATE users SET hash = ? WHERE name = ?", (self.hasher.hash(password), name)
                )
            principal = Principal(
                name,
                role,
                clearance,
                generation=generation,
                must_change=bool(must_change),
                os_uid=os_uid,
            )
            return SignInResult(principal)

    # -- officer requests --------------------------------------------------------------------

    def request(self, name: str, role: str, clearance: str, requested_by: str) -> Request:
        """Record a request for an account that needs a second role's approval."""
        check_name(name)
        expires = _now_us() + REQUEST_HOURS * 3_600_000_000
        with self._transaction():
            if self._row(name) is not None:
                raise UsageError(f"the user {name} already exists", code="user_exists", user=name)
            self.conn.execute(
                "INSERT OR REPLACE INTO requests VALUES (?, ?, ?, ?, ?)",
                (name, role, clearance, requested_by, expires),
            )
        return Request(name, role, clearance, requested_by, expires)

    def requests(self) -> list[Request]:
        """Pending requests that have not expired."""
        rows = self.conn.execute(
            "SELECT * FROM requests WHERE expires_us > ? ORDER BY name", (_now_us(),)
        )
        return [Request(*row) for row in rows]

    def take_request(self, name: str) -> Request:
        """Remove and return the pending request for `name`."""
        with self._transaction():
            row = self.conn.execute("SELECT * FROM requests WHERE name = ?", (name,)).fetchone()
            self.conn.execute("DELETE FROM requests WHERE name = ?", (name,))
        if row is None or row[4] <= _now_us():
            raise UsageError(
                f"there is no pending request for {name} (or it expired)",
                code="no_request",
                user=name,
            )
        return Request(*row)

    # -- internals ---------------------------------------------------------------------------

    def _verify(self, stored: str, password: str) -> bool:
        try:
            self.hasher.verify(stored, password.encode("utf-8", "surrogatepass"))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return True

    def _row(self, name: str) -> tuple[Any, ...] | None:
        return self.conn.execute(  # type: ignore[no-any-return]
            "SELECT role, clearance, hash, disabled, generation, must_change, os_uid FROM users "
            "WHERE name = ?",
            (name,),
        ).fetchone()

    def _update(self, name: str, assignments: str, values: tuple[Any, ...]) -> None:
        """Change an account; every change ends the sessions it had open."""
        with self._transaction():
            cursor = self.conn.execute(
                f"UPDATE users SET {assignments}, generation = generation + 1 WHERE name = ?",
                (*values, name),
            )
            if cursor.rowcount == 0:
                raise UsageError(f"there is no user {name}", code="no_user", user=name)

    def _migrate(self) -> None:
        have = {row[1] for row in self.conn.execute("PRAGMA table_info(users)")}
        for column, definition in _COLUMNS.items():
            if column not in have:
                self.conn.execute(f"ALTER TABLE users ADD COLUMN {column} {definition}")

    def _secrets(self) -> tuple[bytes, str]:
        with self._transaction():
            row = self.conn.execute("SELECT name_key, decoy_hash FROM secrets").fetchone()
            if row is None:
                row = (secrets.token_bytes(32), self.hasher.hash(secrets.token_urlsafe(24)))
                self.conn.execute("INSERT INTO secrets VALUES (?, ?)", row)
        return bytes(row[0]), str(row[1])

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise


def check_account(home: Path, principal: Principal) -> None:
    """Raise AuthenticationError unless `principal`'s account is as it signed in.

    Development mode has no account (and a read-only home must stay untouched).
    """
    if principal.dev:
        return
    with Users(home) as users:
        users.current(principal)


def check_name(name: str) -> None:
    if not NAME.fullmatch(name):
        raise UsageError(
            "that is not a valid user name (a-z, 0-9, . _ -; 2-32, a letter first)",
            code="bad_user_name",
        )


def check_password(password: str, min_length: int) -> None:
    if len(password) < min_length:
        raise UsageError(
            f"the password must have at least {min_length} characters",
            code="password_short",
            min_length=min_length,
        )


def _now_us() -> int:
    return time.time_ns() // 1000


def _clock(time_us: int) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(time_us / 1e6))
