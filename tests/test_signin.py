"""Sign-in tells nothing: the same work and words for every name, no typed name stored.

And a session ends when its rights do: idle, locked, or its password reset.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from appliance.audit import audit_dir
from appliance.identity import Users
from tests.conftest import assert_one_line_error, run_cli
from tests.staff import as_user, events
from tests.test_identity import refused_while_waiting


class CountingHasher(PasswordHasher):
    """The real argon2id hasher, counting the verifications it runs."""

    verifications = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        CountingHasher.verifications += 1
        return super().verify(hash, password)


def _work(users: Users, name: str, password: str) -> tuple[int, list[str]]:
    """Argon2 verifications and SQL statements (values blanked) of one sign-in."""
    statements: list[str] = []
    users.conn.set_trace_callback(statements.append)
    CountingHasher.verifications = 0
    try:
        users.sign_in(name, password, max_failures=5, lockout_minutes=30)
    finally:
        users.conn.set_trace_callback(None)
    shapes = [re.sub(r"'[^']*'|\b\d+\b", "?", statement) for statement in statements]
    return CountingHasher.verifications, shapes


@pytest.mark.parametrize("unknown", ["nobody", "Not A Name!", "x\udcff"])
def test_known_and_unknown_names_cost_the_same_work(tmp_path: Path, unknown: str) -> None:
    with Users(tmp_path) as users:
        users.add("kim", "operator", "public", "operator-pass-1", 8, must_change=False)
        users.hasher = CountingHasher()
        known = _work(users, "kim", "wrong-password")
        other = _work(users, unknown, "wrong-password")
    assert known == other
    assert known[0] == 1  # one argon2id verification each, against the decoy for unknown names


def test_waits_read_the_same_for_known_and_unknown_names(staffed: Path, tmp_path: Path) -> None:
    said = {}
    for name in ("kim", "nobody"):
        for _ in range(4):
            run_cli("audit", "verify", *as_user(tmp_path, name, "bad-pw"), home=staffed)
        fifth = run_cli("audit", "verify", *as_user(tmp_path, name, "bad-pw"), home=staffed)
        waiting = refused_while_waiting(staffed, tmp_path, name)
        said[name] = [re.sub(r"\d\d:\d\d:\d\d", "T", r.stderr) for r in (fifth, waiting)]
    assert said["kim"] == said["nobody"]
    assert "too many wrong passwords for this user name" in said["kim"][1]


def test_a_password_typed_as_the_name_is_never_stored(staffed: Path, tmp_path: Path) -> None:
    typed = "operator-pass-1"  # kim's password, typed into the name field
    result = run_cli("audit", "verify", *as_user(tmp_path, typed, "x"), home=staffed)
    assert_one_line_error(result, 14, "wrong user name or password")
    failed = events(staffed, tmp_path, "--action", "login_failed")[-1]
    assert re.fullmatch(r"\?[0-9a-f]{20}", failed["user"])
    for path in (audit_dir(staffed) / "log.db", staffed / "identity" / "users.db"):
        for suffix in ("", "-wal"):
            stored = Path(f"{path}{suffix}")
            assert not stored.exists() or typed.encode() not in stored.read_bytes()


def test_a_name_that_is_not_unicode_text_is_refused_and_audited(
    staffed: Path, tmp_path: Path
) -> None:
    name = "kim\udcff"  # what Python makes of the byte 0xFF in argv
    result = run_cli(
        "audit", "verify", "--user", name,
        "--password-file", as_user(tmp_path, "kim", "x")[-1], home=staffed,
    )  # fmt: skip
    assert_one_line_error(result, 14, "wrong user name or password")
    assert events(staffed, tmp_path, "--action", "login_failed")[-1]["user"].startswith("?")


def test_the_wait_doubles_and_stops_at_the_policy_cap(tmp_path: Path) -> None:
    waits = []
    with Users(tmp_path) as users:
        users.add("kim", "operator", "public", "operator-pass-1", 8, must_change=False)
        for _ in range(10):
            before = time.time_ns() // 1000
            result = users.sign_in("kim", "bad", max_failures=2, lockout_minutes=1)
            waits.append(
                round((result.wait_until_us - before) / 1e6) if result.wait_until_us else 0
            )
            users.conn.execute("UPDATE throttle SET wait_until_us = 0")  # the wait passes
    assert waits == [0, 1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_a_locked_account_is_only_said_to_someone_who_knows_its_password(
    staffed: Path, tmp_path: Path
) -> None:
    with Users(staffed) as users:
        users.lock("kim")
    wrong = run_cli("audit", "verify", *as_user(tmp_path, "kim", "bad-password"), home=staffed)
    assert_one_line_error(wrong, 14, "wrong user name or password")
    right = run_cli("audit", "verify", *as_user(tmp_path, "kim"), home=staffed)
    assert_one_line_error(right, 14, "the account kim is locked")
