"""The home's signed state: each change made behind the appliance's back is refused by
`appliance doctor` in one sentence; each change made through its commands is accepted."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from appliance.audit import Actor, AuditLog, audit_dir
from appliance.documents.home import open_documents
from appliance.documents.keys import documents_dir
from appliance.documents.library import Library
from appliance.errors import AuditError, ConfigError, IntegrityError
from appliance.homestate import check_state, home_state, record_state
from appliance.identity import Principal
from appliance.policy import active_policy, active_policy_path, shipped_policy
from appliance.policy.override import grant
from appliance.seal import Identity, write_identity
from tests.conftest import assert_one_line_error, run_cli
from tests.staff import as_user, make_staffed


@pytest.fixture(scope="module")
def base_home(tmp_path_factory: pytest.TempPathFactory, officer: Identity) -> Path:
    """One staffed defense-kr home (admin root1, officer lee, operator kim), made once."""
    return make_staffed(tmp_path_factory.mktemp("state"), officer)


@pytest.fixture
def home(base_home: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "home"
    shutil.copytree(base_home, copy, symlinks=True)
    return copy


def doctor(home: Path, *args: str) -> dict[str, dict]:
    """The doctor's checks by name (the model check fails fast: no model is given)."""
    result = run_cli("doctor", "--json", "--model", "/nonexistent.gguf", *args, home=home)
    assert result.returncode == 17, result.stderr
    return {check["name"]: check for check in json.loads(result.stdout)["checks"]}


def refused(home: Path, check: str, fragment: str, *args: str) -> str:
    found = doctor(home, *args)[check]
    assert found["ok"] is False, found
    assert fragment in found["detail"], found["detail"]
    assert "\n" not in found["detail"]
    return str(found["detail"])


def accepted(home: Path, *args: str) -> str:
    found = doctor(home, *args)
    assert found["state"]["ok"] is True, found["state"]
    assert found["audit"]["ok"] is True, found["audit"]
    return str(found["state"]["detail"])


def sql(home: Path, *statements: str) -> None:
    conn = sqlite3.connect(home / "identity" / "users.db")
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


def log_sql(home: Path, *statements: str) -> None:
    conn = sqlite3.connect(audit_dir(home) / "log.db")
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


def test_a_documents_store_put_back_or_edited_behind_the_appliance_is_refused(
    home: Path, tmp_path: Path
) -> None:
    kim = Principal("kim", "operator", "restricted")
    with AuditLog(audit_dir(home)) as log, open_documents(home, log) as store:
        library = Library(home, active_policy(home), log, kim, store)
        first = library.add("a.txt", "예산은 분기별로 보고한다.".encode())["document"]["id"]
    assert doctor(home)["documents"]["ok"] is True
    older = tmp_path / "older"
    shutil.copytree(documents_dir(home), older)
    with AuditLog(audit_dir(home)) as log, open_documents(home, log) as store:
        library = Library(home, active_policy(home), log, kim, store)
        second = library.add("b.txt", "휴가는 3일 전까지 신청한다.".encode())["document"]["id"]
        library.remove(first)
    found = doctor(home)["documents"]
    assert found["ok"] is True, found
    assert found["detail"].startswith("1 document, each as the audit log")
    # The older copy put back: the added document is missing, the removed one is back.
    shutil.rmtree(documents_dir(home))
    shutil.copytree(older, documents_dir(home))
    detail = refused(home, "documents", "the store differs from the audit log")
    assert f"1 missing ({second})" in detail
    assert f"1 not in the log ({first})" in detail
    # Without the store at all, the log still says what it should hold.
    (documents_dir(home) / "store.db").unlink(missing_ok=True)
    refused(home, "documents", "the store is missing")


def test_a_staffed_home_matches_its_signed_state(home: Path) -> None:
    detail = accepted(home)
    assert "matches the state signed at seq" in detail
    assert "rollback of the whole home" in detail  # what only a trusted checkpoint can rule out


def test_rewritten_officer_keys_are_refused(home: Path) -> None:
    intruder = Identity.generate()
    (audit_dir(home) / "officers").write_text(f"{intruder.recipient}\n")
    refused(home, "state", "the officer keys (audit/officers) changed outside the appliance")


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE users SET role = 'officer' WHERE name = 'kim'",
        "UPDATE users SET clearance = 'secret-1' WHERE name = 'kim'",
        "UPDATE users SET disabled = 1 WHERE name = 'lee'",
        "DELETE FROM users WHERE name = 'root1'",
    ],
)
def test_accounts_edited_in_the_database_are_refused(home: Path, statement: str) -> None:
    sql(home, statement)
    refused(home, "state", "the accounts' roles, clearances or lock state")


def test_a_planted_airgap_override_is_refused(home: Path) -> None:
    grant(home, "intruder", 240, "planted")
    refused(home, "state", "the air-gap override changed outside the appliance")


def test_an_edited_config_or_policy_is_refused(home: Path) -> None:
    (home / "config.toml").write_text('[ui]\nlanguage = "en"\n')
    refused(home, "state", "the home's config.toml changed outside the appliance")
    (home / "config.toml").unlink()
    policy = home / "policy.toml"
    policy.write_text(policy.read_text().replace("require_airgap = true", "require_airgap = false"))
    refused(home, "state", "the policy file that policy.toml names changed")


def test_a_truncated_log_is_refused(home: Path) -> None:
    log_sql(
        home,
        "DROP TRIGGER events_append_only",
        "DROP TRIGGER checkpoints_no_delete",
        "DELETE FROM events WHERE seq > (SELECT max(seq) - 2 FROM events)",
        "DELETE FROM checkpoints WHERE seq > (SELECT max(seq) FROM events)",
    )
    refused(home, "state", "its tail was deleted, its WAL lost, or an older copy restored")


KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from appliance.audit import Actor, AuditLog, Event
    log = AuditLog(Path(sys.argv[1]))
    log.record(Event(Actor("kim", "operator"), "login", "appliance"), checkpoint=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_a_wal_deleted_after_a_killed_writer_is_refused(home: Path) -> None:
    directory = audit_dir(home)
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(directory)], check=False, timeout=60
    )
    assert killed.returncode == -9
    assert (directory / "log.db-wal").stat().st_size > 0  # the event is only in the WAL
    (directory / "log.db-wal").unlink()
    (directory / "log.db-shm").unlink(missing_ok=True)
    refused(home, "state", "its tail was deleted, its WAL lost, or an older copy restored")


def test_an_older_log_copied_in_is_refused(home: Path, base_home: Path, tmp_path: Path) -> None:
    locked = run_cli("users", "lock", "kim", *as_user(tmp_path, "root1"), home=home)
    assert locked.returncode == 0, locked.stderr
    shutil.copy(audit_dir(base_home) / "log.db", audit_dir(home) / "log.db")
    refused(home, "state", "but it had reached seq")


def test_a_deleted_log_is_never_begun_again(home: Path, tmp_path: Path) -> None:
    (audit_dir(home) / "log.db").unlink()
    refused(home, "audit", "but audit/anchor shows it reached seq")
    (audit_dir(home) / "anchor").unlink()
    for left in audit_dir(home).glob("log.db*"):  # the empty one the refused open left
        left.unlink()
    refused(home, "state", "but the home has accounts")
    listing = run_cli("users", "list", *as_user(tmp_path, "root1"), home=home)
    assert_one_line_error(listing, 11, "a new log is begun only in a home without accounts")


def test_a_missing_or_dangling_policy_link_fails_closed(home: Path) -> None:
    (home / "policy.toml").unlink()
    refused(home, "policy", "has accounts but no policy")
    (home / "policy.toml").symlink_to(home / "releases" / "gone" / "policy.toml")
    refused(home, "policy", "which does not exist")
    refused(home, "state", "the policy link (policy.toml) changed outside the appliance")


def test_only_a_development_home_falls_back_to_the_default_policy(tmp_path: Path) -> None:
    assert active_policy_path(tmp_path) == shipped_policy("default")
    (tmp_path / "config.toml").write_text('[model]\nmanifest = "current/bundle.json"\n')
    with pytest.raises(ConfigError, match="an installed release but no policy"):
        active_policy_path(tmp_path)


def test_changes_through_the_appliance_are_accepted(home: Path, tmp_path: Path) -> None:
    locked = run_cli("users", "lock", "kim", *as_user(tmp_path, "root1"), home=home)
    assert locked.returncode == 0, locked.stderr
    accepted(home)
    new_officer = Identity.generate()
    write_identity(tmp_path / "lee.key", new_officer, None)
    rotated = run_cli(
        "audit", "officer", "--identity", str(tmp_path / "lee.key"), *as_user(tmp_path, "lee"),
        home=home,
    )  # fmt: skip
    assert rotated.returncode == 0, rotated.stderr
    override = run_cli(
        "airgap", "override", "--minutes", "30", "--reason", "maintenance",
        *as_user(tmp_path, "lee"), home=home,
    )  # fmt: skip
    assert override.returncode == 0, override.stderr
    accepted(home)
    (home / "airgap-override.json").unlink()  # withdrawing an override weakens nothing
    accepted(home)


def test_an_officer_accepts_a_reviewed_config_edit_but_never_an_account_edit(
    home: Path, tmp_path: Path
) -> None:
    (home / "config.toml").write_text('[ui]\nlanguage = "en"\n')
    by_admin = run_cli(
        "audit", "state", "--accept", "--reason", "UI in English", *as_user(tmp_path, "root1"),
        home=home,
    )  # fmt: skip
    assert_one_line_error(by_admin, 15, "needs the officer role")
    signed = run_cli(
        "audit", "state", "--accept", "--reason", "UI in English", *as_user(tmp_path, "lee"),
        home=home,
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    assert "(config)" in signed.stdout
    accepted(home)
    sql(home, "UPDATE users SET role = 'admin' WHERE name = 'kim'")
    refused_accept = run_cli(
        "audit", "state", "--accept", "--reason", "x", *as_user(tmp_path, "lee"), home=home
    )
    assert_one_line_error(refused_accept, 6, "the accounts changed outside the appliance")


def test_a_trusted_checkpoint_reveals_a_rollback_of_the_whole_home(
    home: Path, base_home: Path, tmp_path: Path
) -> None:
    locked = run_cli("users", "lock", "kim", *as_user(tmp_path, "root1"), home=home)
    assert locked.returncode == 0, locked.stderr
    with AuditLog(audit_dir(home)) as log:
        latest = log.store.latest_checkpoint()
    assert latest is not None
    trusted = tmp_path / "trusted.json"  # what the officer keeps off the host
    trusted.write_bytes(latest.to_file_bytes())
    with_trust = accepted(home, "--trusted-checkpoint", str(trusted))
    assert "and the trusted checkpoint at seq" in with_trust
    shutil.rmtree(home)
    shutil.copytree(base_home, home, symlinks=True)  # the whole home as it was, anchor included
    accepted(home)  # on the host alone, nothing shows
    refused(home, "state", "but it had reached seq", "--trusted-checkpoint", str(trusted))


def test_check_state_is_what_the_service_runs(home: Path) -> None:
    with AuditLog(audit_dir(home)) as log:
        check_state(home, log)
        sql(home, "UPDATE users SET clearance = 'secret-1' WHERE name = 'kim'")
        with pytest.raises(IntegrityError, match=r"changed outside the appliance since seq \d+"):
            check_state(home, log)
        record_state(home, log, Actor("root1", "admin"), "test")
        check_state(home, log)
    assert set(home_state(home)) == {
        "officers", "accounts", "config", "policy_link", "policy", "airgap_override"
    }  # fmt: skip


def test_the_anchor_follows_checkpoints_and_never_moves_back(tmp_path: Path) -> None:
    directory = tmp_path / "audit"
    with AuditLog(directory) as log:
        log.record(log_event(), checkpoint=True)
        assert log.check_anchor().seq == 2  # type: ignore[union-attr]
    anchored = (directory / "anchor").read_bytes()
    assert os.stat(directory / "anchor").st_mode & 0o777 == 0o600
    with AuditLog(directory) as log:
        assert log.check_anchor().seq == 2  # type: ignore[union-attr]
    assert (directory / "anchor").read_bytes() == anchored  # nothing new to anchor
    (directory / "log.db").unlink()
    with pytest.raises(AuditError, match="shows it reached seq 2"):
        AuditLog(directory)


def log_event():
    from appliance.audit import Event

    return Event(Actor("kim", "operator"), "login", "appliance")


def _rewrite_officers(home: Path) -> None:
    (audit_dir(home) / "officers").write_text(f"{Identity.generate().recipient}\n")


def _promote_kim(home: Path) -> None:
    sql(home, "UPDATE users SET role = 'officer' WHERE name = 'kim'")


def _truncate_log(home: Path) -> None:
    log_sql(
        home,
        "DROP TRIGGER events_append_only",
        "DELETE FROM events WHERE seq > (SELECT max(seq) - 2 FROM events)",
    )


@pytest.mark.parametrize(
    ("attack", "code", "fragment"),
    [
        (_rewrite_officers, 6, "the officer keys (audit/officers) changed outside the appliance"),
        (_promote_kim, 6, "the accounts' roles, clearances or lock state"),
        (lambda home: grant(home, "intruder", 240, "planted"), 6, "the air-gap override"),
        (_truncate_log, 6, "an older copy restored"),
        (lambda home: (home / "policy.toml").unlink(), 7, "policy"),
    ],
    ids=["officers", "accounts", "override", "truncated", "no-policy"],
)
def test_the_service_refuses_to_serve_a_tampered_home(
    home: Path, attack, code: int, fragment: str
) -> None:
    attack(home)
    served = run_cli("serve", "--model", "/nonexistent.gguf", home=home, air_gapped=True)
    assert_one_line_error(served, code, fragment)
    assert not (home / "service.sock").exists()
