"""Separation of duties holds against an admin: officers, their passwords, their keys.

Each test runs the real CLI on a defense-kr home with an admin (root1), an
officer (lee) and an operator (kim).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from appliance.identity import Users, users_path
from appliance.seal import Identity, write_identity
from tests.conftest import assert_one_line_error, run_cli
from tests.staff import as_user, events, password_file, setup_args


def test_an_admin_alone_cannot_make_an_officer(staffed: Path, tmp_path: Path) -> None:
    requested = run_cli(
        "users", "add", "eve", "--role", "officer", *as_user(tmp_path, "root1"), home=staffed
    )
    assert requested.returncode == 0, requested.stderr
    assert "an officer approves it" in requested.stdout
    with Users(staffed) as users:
        assert users.account("eve") is None  # only a request so far
    approve = ["users", "approve", "eve", "--new-password-file"]
    by_admin = run_cli(
        *approve, password_file(tmp_path, "eve", "admin-chosen-1"), *as_user(tmp_path, "root1"),
        home=staffed,
    )  # fmt: skip
    assert_one_line_error(by_admin, 15, "needs the officer role")
    by_officer = run_cli(
        *approve, password_file(tmp_path, "eve", "first-password-1"), *as_user(tmp_path, "lee"),
        home=staffed,
    )  # fmt: skip
    assert by_officer.returncode == 0, by_officer.stderr
    actions = [(e["action"], e["user"]) for e in events(staffed, tmp_path)]
    assert ("user_request", "root1") in actions
    assert ("user_approve", "lee") in actions
    # The first password was the officer's, and eve must replace it before anything else.
    first = as_user(tmp_path, "eve", "first-password-1")
    refused = run_cli("audit", "verify", *first, home=staffed)
    assert_one_line_error(refused, 14, "was set by someone else; set your own first")
    own = run_cli(
        "users", "passwd", "eve", *first,
        "--new-password-file", password_file(tmp_path, "eve-own", "eves-own-password"),
        home=staffed,
    )  # fmt: skip
    assert own.returncode == 0, own.stderr
    verified = run_cli("audit", "verify", *as_user(tmp_path, "eve", "eves-own-password"),
                       home=staffed)  # fmt: skip
    assert verified.returncode == 0, verified.stderr


def test_an_officer_request_expires(staffed: Path, tmp_path: Path) -> None:
    run_cli("users", "add", "eve", "--role", "officer", *as_user(tmp_path, "root1"), home=staffed)
    with sqlite3.connect(users_path(staffed)) as conn:  # a day and more goes by
        conn.execute("UPDATE requests SET expires_us = 1")
    new = password_file(tmp_path, "eve", "pw-pw-pw-1")
    late = run_cli(
        "users", "approve", "eve", "--new-password-file", new, *as_user(tmp_path, "lee"),
        home=staffed,
    )  # fmt: skip
    assert_one_line_error(late, 2, "no pending request for eve")
    listed = run_cli("users", "pending", *as_user(tmp_path, "lee"), home=staffed)
    assert listed.returncode == 0, listed.stderr
    assert "eve" not in listed.stdout


def test_a_reset_password_must_be_replaced_and_ends_open_sessions(
    staffed: Path, tmp_path: Path
) -> None:
    new = password_file(tmp_path, "kim", "reset-by-admin")
    reset = run_cli(
        "users", "passwd", "kim", "--new-password-file", new, *as_user(tmp_path, "root1"),
        home=staffed,
    )  # fmt: skip
    assert reset.returncode == 0, reset.stderr
    signed = run_cli("users", "list", *as_user(tmp_path, "kim", "reset-by-admin"), home=staffed)
    assert_one_line_error(signed, 14, "set by someone else")
    with Users(staffed) as users:
        assert users.account("kim").must_change  # type: ignore[union-attr]


def test_setup_passwords_are_temporary(tmp_path: Path) -> None:
    home = tmp_path / "home"
    made = run_cli(*setup_args(tmp_path), home=home)
    assert made.returncode == 0, made.stderr
    for name in ("root1", "lee"):
        first = run_cli("audit", "verify", *as_user(tmp_path, name), home=home)
        assert_one_line_error(first, 14, f"the password of {name} was set by someone else")


def test_recovering_an_officer_needs_the_escrow_identity(tmp_path: Path) -> None:
    escrow, stranger = Identity.generate(), Identity.generate()
    home = tmp_path / "home"
    made = run_cli(*setup_args(tmp_path), "--escrow", str(escrow.recipient), home=home)
    assert made.returncode == 0, made.stderr
    write_identity(tmp_path / "escrow.key", escrow, None)
    write_identity(tmp_path / "stranger.key", stranger, None)
    recover = ["users", "recover", "lee", "--new-password-file"]
    pw = password_file(tmp_path, "lee-new", "recovered-pass-1")
    refused = run_cli(*recover, pw, "--escrow-identity", str(tmp_path / "stranger.key"), home=home)
    assert_one_line_error(refused, 15, "not the officer escrow")
    done = run_cli(*recover, pw, "--escrow-identity", str(tmp_path / "escrow.key"), home=home)
    assert done.returncode == 0, done.stderr
    officer = as_user(tmp_path, "lee", "recovered-pass-1")
    report = run_cli("audit", "verify", "--json", *officer, home=home)
    assert report.returncode == 0, report.stderr
    (recovery,) = json.loads(report.stdout)["officer_recoveries"]
    shown = run_cli("audit", "show", "--json", "--action", "officer_recovery", *officer, home=home)
    assert json.loads(shown.stdout.splitlines()[0])["seq"] == recovery


def test_a_home_without_escrow_cannot_recover_an_officer(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert run_cli(*setup_args(tmp_path), home=home).returncode == 0
    escrow = Identity.generate()
    write_identity(tmp_path / "escrow.key", escrow, None)
    result = run_cli(
        "users", "recover", "lee", "--escrow-identity", str(tmp_path / "escrow.key"),
        "--new-password-file", password_file(tmp_path, "lee-new", "recovered-pass-1"), home=home,
    )  # fmt: skip
    assert_one_line_error(result, 15, "no officer escrow")


def test_officer_keys_are_set_only_by_an_officer_who_holds_them(
    staffed: Path, tmp_path: Path
) -> None:
    mine, key = Identity.generate(), tmp_path / "lee.key"
    write_identity(key, mine, None)
    public = tmp_path / "lee.pub"
    public.write_text(str(mine.recipient) + "\n")
    by_admin = run_cli("audit", "officer", "--identity", str(key), *as_user(tmp_path, "root1"),
                       home=staffed)  # fmt: skip
    assert_one_line_error(by_admin, 15, "needs the officer role")
    pasted = run_cli("audit", "officer", "--identity", str(public), *as_user(tmp_path, "lee"),
                     home=staffed)  # fmt: skip
    assert pasted.returncode != 0  # a recipient alone proves nothing
    assert_one_line_error(pasted, pasted.returncode, "lee.pub")
    held = run_cli("audit", "officer", "--identity", str(key), *as_user(tmp_path, "lee"),
                   home=staffed)  # fmt: skip
    assert held.returncode == 0, held.stderr
    listed = run_cli("audit", "officer", *as_user(tmp_path, "lee"), home=staffed)
    assert listed.stdout.split() == [str(mine.recipient)]
    rotation = events(staffed, tmp_path, "--action", "key_rotate")[-1]
    assert (rotation["user"], rotation["details"]["officers"]) == ("lee", [str(mine.recipient)])
