"""Accounts bound to OS users (`service.bind_os_users`), through the real service.

Where the policy binds them, an account signs in only from the OS account an
admin bound it to: the service compares the client's SO_PEERCRED uid, refuses
anything else with one line, and audits it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from appliance.audit import Actor, AuditLog, audit_dir
from appliance.errors import AuthenticationError, UsageError
from appliance.homestate import record_state
from appliance.identity import Users
from appliance.policy import shipped_policy
from tests.conftest import assert_one_line_error, run_cli
from tests.servicing import Service, add_operator, serving
from tests.staff import PASSWORDS, as_user

pytestmark = pytest.mark.model
QUESTION = {"max_tokens": 4, "temperature": 0.0, "seed": 1}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("bound") / "home"
    home.mkdir()
    policy = shipped_policy("default").read_text(encoding="utf-8")
    (home / "policy.toml").write_text(
        policy.replace("[service]\n", "[service]\nbind_os_users = true\n")
    )
    AuditLog(audit_dir(home)).close()
    with Users(home) as users:
        users.add("root1", "admin", "public", PASSWORDS["root1"], 8, must_change=False)
        users.bind("root1", os.getuid())  # the admin signs in from this test's OS account
    add_operator(home, "dana")  # bound to none; records the home's state
    return home


@pytest.fixture(scope="module")
def service(home: Path, model_path: Path):
    with serving(home, model_path) as running:
        yield running


def _login_failures(home: Path) -> list[dict]:
    with AuditLog(audit_dir(home)) as log:
        return [json.loads(row["leaf"]) for row in log.events(action="login_failed")]


def test_an_account_signs_in_only_from_its_bound_os_user(
    service: Service, home: Path, tmp_path: Path
) -> None:
    with pytest.raises(AuthenticationError) as refused:
        service.client("dana")  # bound to no OS account yet
    assert refused.value.code == "os_user"
    assert "may sign in only from the OS account bound to it" in str(refused.value)
    assert _login_failures(home)[-1]["details"] == {"os_uid": os.getuid(), "bound": None}

    root1 = as_user(tmp_path, "root1")
    bound = run_cli("users", "bind", "dana", "--os-user", str(os.getuid()), *root1, home=home)
    assert bound.returncode == 0, bound.stderr
    listed = run_cli("users", "list", *root1, home=home)
    assert f"os uid {os.getuid()}" in listed.stdout.splitlines()[1]  # dana, after root1
    with service.client("dana") as client:  # from the OS account it is bound to now
        answer = client.ask("Say yes.", **QUESTION)
        answer.text()
        assert answer.result is not None
        assert answer.result["outcome"] == "ok"

    elsewhere = str(os.getuid() + 1)  # another OS account: the binding moves there
    moved = run_cli("users", "bind", "dana", "--os-user", elsewhere, *root1, home=home)
    assert moved.returncode == 0, moved.stderr
    asked = run_cli("ask", "Say yes.", *as_user(tmp_path, "dana"), home=home)
    assert_one_line_error(asked, AuthenticationError.exit_code, "may sign in only from the OS")

    with AuditLog(audit_dir(home)) as log:
        binds = [json.loads(row["leaf"]) for row in log.events(action="user_bind")]
    assert [(b["user"], b["object"], b["details"]["os_uid"]) for b in binds] == [
        ("root1", "dana", os.getuid()),
        ("root1", "dana", os.getuid() + 1),
    ]


def test_an_unknown_os_login_is_refused_before_the_service_is_asked(
    service: Service, home: Path, tmp_path: Path
) -> None:
    root1 = as_user(tmp_path, "root1")
    refused = run_cli("users", "bind", "dana", "--os-user", "no-such-login", *root1, home=home)
    assert_one_line_error(refused, UsageError.exit_code, "there is no OS user 'no-such-login'")


def test_the_bound_uid_is_part_of_the_signed_state(home: Path) -> None:
    with Users(home) as users:  # behind the appliance's back
        users.bind("dana", 4242)
    checked = run_cli("doctor", home=home)
    assert checked.returncode != 0
    assert "accounts" in checked.stdout + checked.stderr
    with Users(home) as users:
        users.bind("dana", os.getuid() + 1)  # as it was signed
    with AuditLog(audit_dir(home)) as log:  # (the signed state is unchanged by the above)
        record_state(home, log, Actor("root1", "admin"), "test restores")
