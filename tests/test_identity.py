"""Users, roles and sign-in; the session pipeline: identity, clearance, DLP and audit per turn."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from appliance.audit import AuditLog, audit_dir
from appliance.config import GenerationParams
from appliance.errors import (
    AuthenticationError,
    BlockedError,
    PermissionDeniedError,
    UsageError,
)
from appliance.identity import Principal, Users
from appliance.seal import write_identity
from appliance.session import Conversation
from tests.conftest import assert_one_line_error, run_cli
from tests.staff import DEFENSE, as_user, events, open_session, password_file, setup_args

# -- accounts ---------------------------------------------------------------------------


def test_passwords_are_argon2id_and_failures_make_the_name_wait(tmp_path: Path) -> None:
    with Users(tmp_path) as users:
        users.add("kim", "operator", "restricted", "operator-pass-1", 12, must_change=False)
        stored = users.conn.execute("SELECT hash FROM users").fetchone()[0]
        assert stored.startswith("$argon2id$")
        sign_in = lambda password: users.sign_in(  # noqa: E731
            "kim", password, max_failures=3, lockout_minutes=5
        )
        assert sign_in("operator-pass-1").principal == Principal("kim", "operator", "restricted")
        assert sign_in("wrong").principal is None
        assert sign_in("wrong").wait_until_us == 0
        waiting = sign_in("wrong").wait_until_us  # the third failure in a row: a wait begins
        assert waiting > time.time_ns() // 1000
        with pytest.raises(AuthenticationError, match="try again after"):
            sign_in("operator-pass-1")  # even the right password, while the name waits
        users.unlock("kim")  # an admin's unlock clears the wait
        assert sign_in("operator-pass-1").principal is not None
        assert users.sign_in("nobody", "x", max_failures=3, lockout_minutes=5).principal is None
        with pytest.raises(UsageError, match="at least 12"):
            users.add("lee", "officer", "secret-1", "short", 12)
        with pytest.raises(UsageError, match="not a valid user name"):
            users.add("Kim Jong", "operator", "public", "long-enough-pass", 12)
    assert (tmp_path / "identity" / "users.db").stat().st_mode & 0o777 == 0o600


def test_setup_creates_the_first_admin_and_officer_once(staffed: Path, tmp_path: Path) -> None:
    with Users(staffed) as users:
        roles = {account.name: account.role for account in users.accounts()}
    assert roles == {"root1": "admin", "lee": "officer", "kim": "operator"}
    again = run_cli(*setup_args(tmp_path), home=staffed)
    assert_one_line_error(again, 2, "accounts exist already")


def test_setup_makes_neither_account_when_one_password_is_too_short(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "policy.toml").write_bytes(DEFENSE.read_bytes())
    arguments = setup_args(tmp_path)[:-2]  # (writes lee.pw: the short one comes after)
    short = ["--officer-password-file", password_file(tmp_path, "lee", "short")]
    refused = run_cli(*arguments, *short, home=home)
    assert_one_line_error(refused, 2, "the password must have at least")
    with Users(home) as users:
        assert users.empty()  # the admin's (long enough) was not made either
    with AuditLog(audit_dir(home)) as log:
        assert not list(log.events(action="user_add"))


def test_a_wrong_password_is_refused_and_audited(staffed: Path, tmp_path: Path) -> None:
    wrong = run_cli("audit", "verify", *as_user(tmp_path, "lee", "not-it"), home=staffed)
    assert_one_line_error(wrong, 14, "wrong user name or password")
    failed = events(staffed, tmp_path, "--action", "login_failed")
    assert failed[-1]["user"] == "lee"
    assert "not-it" not in json.dumps(failed)


def test_failures_make_the_name_wait(staffed: Path, tmp_path: Path) -> None:
    said = [
        run_cli("audit", "verify", *as_user(tmp_path, "kim", "bad"), home=staffed).stderr
        for _ in range(5)
    ]
    assert "the next attempt with this name must wait until" in said[-1]
    assert all("must wait" not in line for line in said[:-1])
    assert_one_line_error(refused_while_waiting(staffed, tmp_path, "kim"), 14, "try again after")


def refused_while_waiting(home: Path, tmp_path: Path, name: str):
    """Wrong passwords until one meets a wait; each failure doubles it, so one soon does."""
    for _ in range(10):
        result = run_cli("audit", "verify", *as_user(tmp_path, name, "bad"), home=home)
        if "too many wrong passwords" in result.stderr:
            return result
    raise AssertionError(result.stderr)


@pytest.mark.parametrize(
    ("user", "args", "needs"),
    [
        ("kim", ["audit", "verify"], "admin or officer"),  # an operator can only work
        ("root1", ["audit", "prune", "--before", "2999-01-01"], "officer"),
        ("root1", ["audit", "show", "--decrypt", "--identity", "x.key"], "officer"),
        ("lee", ["users", "add", "x1", "--role", "operator"], "admin"),  # no user management
        ("lee", ["users", "lock", "kim"], "admin"),
        ("root1", ["users", "lock", "lee"], "officer"),  # officers belong to officers
        ("root1", ["users", "passwd", "lee"], "officer"),
        ("root1", ["users", "approve", "x1"], "officer"),
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
    """`ask` as kim on an air-gapped host: defense-kr requires the air gap."""
    return run_cli(
        "ask", "--max-tokens", "6", "--temperature", "0", "--model", str(model_path),
        *as_user(tmp_path, "kim"), *extra, prompt, home=home, air_gapped=True,
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
    with AuditLog(tmp_path / "audit") as log:
        session = open_session(tmp_path, engine, log, "kim", "operator")
        session.last_active = time.monotonic() - session.policy.idle_timeout_minutes * 60 - 1
        with pytest.raises(AuthenticationError, match="idle for more than 15 minutes"):
            session.turn(Conversation(), "hello", GenerationParams(max_tokens=2))
        (logout,) = [json.loads(row["leaf"]) for row in log.events(action="logout")]
        assert (logout["user"], logout["details"]) == ("kim", {"reason": "idle"})


def test_only_operators_may_ask(engine, tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit") as log:
        session = open_session(tmp_path, engine, log, "lee", "officer")
        with pytest.raises(PermissionDeniedError, match="needs the operator role"):
            session.turn(Conversation(), "hello", GenerationParams(max_tokens=2))


def test_the_session_refuses_a_blocked_prompt_before_the_engine(engine, tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit") as log:
        session = open_session(tmp_path, engine, log, "kim", "operator")
        with pytest.raises(BlockedError, match="resident registration number"):
            session.turn(Conversation(), "900101-1234568", GenerationParams(max_tokens=2))
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
