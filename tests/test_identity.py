"""Users, roles and sign-in; the session pipeline: identity, clearance, DLP and audit per turn."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.audit import AuditLog, audit_dir
from appliance.config import GenerationParams
from appliance.engine import Message
from appliance.errors import (
    AuthenticationError,
    BlockedError,
    PermissionDeniedError,
    UsageError,
)
from appliance.identity import Principal, Users
from appliance.policy import load_policy, shipped_policy
from appliance.seal import Identity, write_identity
from appliance.session import Session
from tests.conftest import assert_one_line_error, run_cli, with_officer

DEFENSE = shipped_policy("defense-kr")
PASSWORDS = {"root1": "admin-password-1", "kim": "operator-pass-1", "lee": "officer-pass-1"}


def password_file(tmp_path: Path, name: str, text: str | None = None) -> str:
    path = tmp_path / f"{name}.pw"
    path.write_text((text or PASSWORDS[name]) + "\n")
    return str(path)


def as_user(tmp_path: Path, name: str, password: str | None = None) -> list[str]:
    return ["--user", name, "--password-file", password_file(tmp_path, name, password)]


@pytest.fixture
def staffed(tmp_path: Path, officer: Identity) -> Path:
    """A defense-kr home: an admin, an operator cleared to 대외비, an officer; content sealed."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "policy.toml").write_bytes(DEFENSE.read_bytes())
    with_officer(home, officer)
    admin = ["--new-password-file", password_file(tmp_path, "root1")]
    assert run_cli("setup", "--admin", "root1", *admin, home=home).returncode == 0
    for name, role, clearance in (
        ("kim", "operator", "restricted"),
        ("lee", "officer", "secret-1"),
    ):
        created = run_cli(
            "users", "add", name, "--role", role, "--clearance", clearance,
            "--new-password-file", password_file(tmp_path, name),
            *as_user(tmp_path, "root1"), home=home,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
    return home


def events(home: Path, tmp_path: Path, *args: str) -> list[dict]:
    shown = run_cli("audit", "show", "--json", *args, *as_user(tmp_path, "lee"), home=home)
    assert shown.returncode == 0, shown.stderr
    return [json.loads(line) for line in shown.stdout.splitlines()]


# -- accounts ---------------------------------------------------------------------------


def test_passwords_are_argon2id_and_lockout_follows_the_policy(tmp_path: Path) -> None:
    with Users(tmp_path) as users:
        users.add("kim", "operator", "restricted", "operator-pass-1", 12)
        stored = users.conn.execute("SELECT hash FROM users").fetchone()[0]
        assert stored.startswith("$argon2id$")
        sign_in = lambda password: users.sign_in(  # noqa: E731
            "kim", password, max_failures=3, lockout_minutes=5
        )
        assert sign_in("operator-pass-1").principal == Principal("kim", "operator", "restricted")
        assert sign_in("wrong").principal is None
        assert sign_in("wrong").locked_now is False
        assert sign_in("wrong").locked_now is True
        with pytest.raises(AuthenticationError, match="locked until"):
            sign_in("operator-pass-1")  # even the right password, while locked
        users.unlock("kim")
        assert sign_in("operator-pass-1").principal is not None
        assert users.sign_in("nobody", "x", max_failures=3, lockout_minutes=5).principal is None
        with pytest.raises(UsageError, match="at least 12"):
            users.add("lee", "officer", "secret-1", "short", 12)
        with pytest.raises(UsageError, match="not a valid user name"):
            users.add("Kim Jong", "operator", "public", "long-enough-pass", 12)
    assert (tmp_path / "identity" / "users.db").stat().st_mode & 0o777 == 0o600


def test_setup_creates_the_first_admin_once(staffed: Path, tmp_path: Path) -> None:
    again = run_cli(
        "setup", "--admin", "other", "--new-password-file", password_file(tmp_path, "root1"),
        home=staffed,
    )  # fmt: skip
    assert_one_line_error(again, 2, "accounts exist already")


def test_a_wrong_password_is_refused_and_audited(staffed: Path, tmp_path: Path) -> None:
    wrong = run_cli("audit", "verify", *as_user(tmp_path, "lee", "not-it"), home=staffed)
    assert_one_line_error(wrong, 14, "wrong user name or password")
    failed = events(staffed, tmp_path, "--action", "login_failed")
    assert failed[-1]["user"] == "lee"
    assert "not-it" not in json.dumps(failed)


def test_five_failures_lock_the_account(staffed: Path, tmp_path: Path) -> None:
    for _ in range(5):
        result = run_cli("audit", "verify", *as_user(tmp_path, "kim", "bad"), home=staffed)
        assert result.returncode == 14
    assert "locked for 30 minutes" in result.stderr
    right = run_cli("audit", "verify", *as_user(tmp_path, "kim"), home=staffed)
    assert_one_line_error(right, 14, "is locked until")


@pytest.mark.parametrize(
    ("user", "args", "needs"),
    [
        ("kim", ["audit", "verify"], "admin or officer"),  # an operator can only work
        ("root1", ["audit", "prune", "--before", "2999-01-01"], "officer"),
        ("root1", ["audit", "show", "--decrypt", "--identity", "x.key"], "officer"),
        ("lee", ["users", "add", "x1", "--role", "operator"], "admin"),  # no user management
        ("lee", ["users", "lock", "kim"], "admin"),
        ("kim", ["users", "list"], "admin"),
    ],
)
def test_separation_of_duties(staffed: Path, tmp_path: Path, user, args, needs) -> None:
    result = run_cli(*args, *as_user(tmp_path, user), home=staffed)
    assert_one_line_error(result, 15, f"needs the {needs} role")


def test_development_mode_only_where_the_policy_allows_it(tmp_path: Path) -> None:
    strict = tmp_path / "home"
    strict.mkdir()
    text = DEFENSE.read_text(encoding="utf-8").replace(
        "require_content = true", "require_content = false"
    )
    (strict / "policy.toml").write_text(text, encoding="utf-8")
    refused = run_cli("audit", "key", home=strict)
    assert_one_line_error(refused, 14, "forbids development mode")
    relaxed = run_cli("audit", "key", home=tmp_path / "dev")  # default policy
    assert relaxed.returncode == 0, relaxed.stderr


# -- the session pipeline ----------------------------------------------------------------


def _namespaced_ask(home: Path, tmp_path: Path, model_path: Path, prompt: str, *extra: str):
    """`ask` as kim in a network namespace of its own: defense-kr requires the air gap."""
    command = [
        sys.executable, "-m", "appliance", "ask", "--max-tokens", "6", "--temperature", "0",
        "--model", str(model_path), *as_user(tmp_path, "kim"), *extra, prompt,
    ]  # fmt: skip
    env = {**os.environ, "APPLIANCE_HOME": str(home)}
    return subprocess.run(
        ["unshare", "--net", "sh", "-c", f"exec {shlex.join(command)}"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
        start_new_session=True,
    )  # fmt: skip


def test_defense_kr_refuses_to_serve_off_the_air_gap(staffed, tmp_path, model_path) -> None:
    result = run_cli(
        "ask", "--model", str(model_path), *as_user(tmp_path, "kim"), "hello", home=staffed
    )
    assert_one_line_error(result, 13, "requires an air gap")
    assert result.stdout == ""


@pytest.mark.model
def test_an_operator_cleared_to_restricted_gets_nothing_labelled_secret_3(
    staffed, tmp_path, model_path
) -> None:
    result = _namespaced_ask(staffed, tmp_path, model_path, "Ⅲ급비밀 문서를 요약해 주세요")
    assert_one_line_error(result, 13, "labelled Ⅲ급비밀, above the clearance of kim (대외비)")
    assert result.stdout == ""
    refused = events(staffed, tmp_path, "--action", "policy_block")[-1]
    assert (refused["label"], refused["details"]["clearance"]) == ("secret-3", "restricted")
    declared = _namespaced_ask(staffed, tmp_path, model_path, "요약", "--level", "secret-3")
    assert_one_line_error(declared, 13, "cleared to 대외비")


@pytest.mark.model
def test_a_resident_number_is_blocked_and_audited_by_type_only(
    staffed, tmp_path, model_path
) -> None:
    result = _namespaced_ask(staffed, tmp_path, model_path, "제 주민번호는 900101-1234568 입니다")
    assert_one_line_error(result, 13, "contains a resident registration number")
    block = events(staffed, tmp_path, "--action", "policy_block")[-1]
    assert block["details"]["findings"] == [
        {"action": "block", "end": 22, "start": 8, "type": "rrn"}
    ]
    database = (audit_dir(staffed) / "log.db").read_bytes()
    assert b"900101" not in database  # neither in metadata nor anywhere else


@pytest.mark.model
def test_a_phone_number_is_redacted_before_the_model_sees_it(
    staffed, tmp_path, model_path, officer
) -> None:
    result = _namespaced_ask(staffed, tmp_path, model_path, "연락처 010-1234-5678 을 반복")
    assert result.returncode == 0, result.stderr
    assert "1234-5678" not in result.stdout
    redaction, ask, _ = events(staffed, tmp_path, "--actor", "kim")[-3:]
    assert redaction["action"] == "policy_redact"
    assert redaction["details"]["findings"][0]["type"] == "phone"
    assert ask["details"]["redacted"] == 1
    key = tmp_path / "officer.key"
    write_identity(key, officer, None)
    opened = events(staffed, tmp_path, "--action", "ask", "--decrypt", "--identity", str(key))
    assert opened[-1]["content"]["prompt"] == "연락처 010-1234-5678 을 반복"  # the officer sees it


def test_an_idle_session_must_sign_in_again(engine, tmp_path: Path) -> None:
    policy = load_policy(DEFENSE)
    with AuditLog(tmp_path / "audit") as log:
        principal = Principal("kim", "operator", "restricted")
        session = Session(engine, log, policy, principal, "model", policy.lowest)
        session.last_active = time.monotonic() - policy.idle_timeout_minutes * 60 - 1
        with pytest.raises(AuthenticationError, match="idle for more than 15 minutes"):
            session.turn([Message("user", "hello")], GenerationParams(max_tokens=2))
        (logout,) = [json.loads(row["leaf"]) for row in log.events(action="logout")]
        assert (logout["user"], logout["details"]) == ("kim", {"reason": "idle"})


def test_only_operators_may_ask(engine, tmp_path: Path) -> None:
    policy = load_policy(DEFENSE)
    with AuditLog(tmp_path / "audit") as log:
        officer = Principal("lee", "officer", "secret-1")
        session = Session(engine, log, policy, officer, "model", policy.lowest)
        with pytest.raises(PermissionDeniedError, match="needs the operator role"):
            session.turn([Message("user", "hello")], GenerationParams(max_tokens=2))


def test_the_session_refuses_a_blocked_prompt_before_the_engine(engine, tmp_path: Path) -> None:
    policy = load_policy(DEFENSE)
    with AuditLog(tmp_path / "audit") as log:
        operator = Principal("kim", "operator", "restricted")
        session = Session(engine, log, policy, operator, "model", policy.lowest)
        with pytest.raises(BlockedError, match="resident registration number"):
            session.turn([Message("user", "900101-1234568")], GenerationParams(max_tokens=2))
        assert list(log.events(action="ask")) == []  # no ask recorded: the model never ran


@pytest.mark.model
def test_an_officer_override_of_the_air_gap_is_audited(staffed, tmp_path, model_path) -> None:
    ask = ["ask", "--max-tokens", "4", "--model", str(model_path), *as_user(tmp_path, "kim")]
    assert run_cli(*ask, "hello", home=staffed).returncode == 13
    by_operator = run_cli(
        "airgap", "override", "--minutes", "5", "--reason", "x", *as_user(tmp_path, "kim"),
        home=staffed,
    )  # fmt: skip
    assert_one_line_error(by_operator, 15, "needs the officer role")
    granted = run_cli(
        "airgap", "override", "--minutes", "5", "--reason", "maintenance window",
        *as_user(tmp_path, "lee"), home=staffed,
    )  # fmt: skip
    assert granted.returncode == 0, granted.stderr
    served = run_cli(*ask, "hello", home=staffed)
    assert served.returncode == 0, served.stderr
    change = events(staffed, tmp_path, "--action", "config_change")[-1]
    assert (change["user"], change["details"]["reason"]) == ("lee", "maintenance window")
    start = events(staffed, tmp_path, "--action", "start")[-1]
    assert "overridden by lee" in start["details"]["airgap"]
