"""Accounts for tests: passwords in private files, a staffed defense-kr home, events."""

from __future__ import annotations

import json
from pathlib import Path

from appliance.audit import Actor, AuditLog, audit_dir
from appliance.homestate import record_state
from appliance.identity import Users
from appliance.policy import load_policy, shipped_policy
from appliance.seal import Identity
from appliance.session import Session
from tests.conftest import run_cli, with_officer

DEFENSE = shipped_policy("defense-kr")
PASSWORDS = {"root1": "admin-password-1", "kim": "operator-pass-1", "lee": "officer-pass-1"}


def password_file(tmp_path: Path, name: str, text: str | None = None) -> str:
    path = tmp_path / f"{name}.pw"
    path.write_text((text or PASSWORDS[name]) + "\n")
    path.chmod(0o600)
    return str(path)


def as_user(tmp_path: Path, name: str, password: str | None = None) -> list[str]:
    return ["--user", name, "--password-file", password_file(tmp_path, name, password)]


def settle(home: Path, *names: str) -> None:
    """The users have set their own passwords (the ones in PASSWORDS) since they were made."""
    with Users(home) as users:
        for name in names:
            users.set_password(name, PASSWORDS[name], 8, must_change=False)
    with AuditLog(audit_dir(home)) as log:  # as `users passwd` would
        record_state(home, log, Actor(names[0], "test"), "password_change")


def setup_args(tmp_path: Path) -> list[str]:
    return [
        "setup", "--admin", "root1", "--officer", "lee",
        "--new-password-file", password_file(tmp_path, "root1"),
        "--officer-password-file", password_file(tmp_path, "lee"),
    ]  # fmt: skip


def make_staffed(tmp_path: Path, officer: Identity) -> Path:
    """A defense-kr home: an admin, an officer, an operator cleared to 대외비; content sealed."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "policy.toml").write_bytes(DEFENSE.read_bytes())
    with_officer(home, officer)
    made = run_cli(*setup_args(tmp_path), home=home)
    assert made.returncode == 0, made.stderr
    settle(home, "root1", "lee")
    created = run_cli(
        "users", "add", "kim", "--role", "operator", "--clearance", "restricted",
        "--new-password-file", password_file(tmp_path, "kim"),
        *as_user(tmp_path, "root1"), home=home,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    settle(home, "kim")
    return home


def events(home: Path, tmp_path: Path, *args: str) -> list[dict]:
    shown = run_cli("audit", "show", "--json", *args, *as_user(tmp_path, "lee"), home=home)
    assert shown.returncode == 0, shown.stderr
    return [json.loads(line) for line in shown.stdout.splitlines()]


def open_session(
    home: Path, engine, log: AuditLog, user: str, role: str, clearance: str = "restricted"
) -> Session:
    """A session on a policy like defense-kr's but without the air-gap requirement."""
    text = DEFENSE.read_text(encoding="utf-8").replace(
        "require_airgap = true", "require_airgap = false"
    )
    (home / "policy.toml").write_text(text, encoding="utf-8")
    policy = load_policy(home / "policy.toml")
    with Users(home) as users:
        users.add(user, role, clearance, "long-enough-1", 8, must_change=False)
        principal = users.sign_in(
            user, "long-enough-1", max_failures=5, lockout_minutes=1
        ).principal
    assert principal is not None
    return Session(home, engine, log, policy, principal, "model", policy.lowest)
