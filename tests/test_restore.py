"""A home lost after its backup, restored on a new host by an admin and an officer of it.

The old site is made once by real commands: a staffed defense-kr home, a saved
conversation and a document, a sealed backup, more work after it, and the
officer's trusted checkpoint (an export verified off the host). Each test
restores into a new, empty home with `appliance restore` in its own process.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance import restore as restoring
from appliance.audit import Actor, AuditLog, Checkpoint, Event, audit_dir
from appliance.backup import make_backup
from appliance.conversations import Conversations
from appliance.documents.home import open_documents
from appliance.documents.keys import OWN_IDENTITY
from appliance.documents.library import Library
from appliance.engine import Message
from appliance.homestate import check_state
from appliance.identity import Principal, has_users
from appliance.policy import active_policy
from appliance.seal import Identity, read_identity, write_identity
from appliance.service.endpoint import claim
from tests.conftest import assert_one_line_error, run_cli
from tests.staff import PASSWORDS, as_user, make_staffed, password_file

ADMIN = Actor("root1", "admin")


@dataclass(frozen=True)
class Site:
    home: Path  # the home that is lost
    backup: Path
    keeper: Path  # the escrowed identity backups are sealed to
    trusted: Path  # the officer's checkpoint, kept off the host
    backup_seq: int
    trusted_seq: int
    folder: Path  # where the test keeps the site's secrets


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, officer: Identity) -> Site:
    folder = tmp_path_factory.mktemp("site")
    home = make_staffed(folder, officer)
    kim = Principal("kim", "operator", "restricted")
    with AuditLog(audit_dir(home)) as log, open_documents(home, log) as store:
        Library(home, active_policy(home), log, kim, store).add(
            "지침.txt", "예산은 분기별로 보고한다.".encode()
        )
    conversations, _ = Conversations.open(home, "kim", PASSWORDS["kim"])
    with contextlib.closing(conversations):
        saved = [Message("user", "보고 주기?"), Message("assistant", "분기")]
        conversations.save(None, saved, "normal")
    keeper = Identity.generate()
    keeper_file = folder / "keeper.key"
    write_identity(keeper_file, keeper, None)
    with AuditLog(audit_dir(home)) as log:
        made = make_backup(home, log, ADMIN, folder / "backups", [keeper.recipient])

    # Work goes on after the backup: an account the backup does not hold.
    added = run_cli(
        "users", "add", "park", "--role", "operator", "--clearance", "restricted",
        "--new-password-file", password_file(folder, "park", "park-password-1"),
        *as_user(folder, "root1"), home=home,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr

    # The officer exports the log and keeps the verified export's checkpoint off the host.
    key = run_cli("audit", "key", *as_user(folder, "lee"), home=home)
    assert key.returncode == 0, key.stderr
    export, trusted = folder / "audit.jsonl", folder / "trusted.json"
    exported = run_cli("audit", "export", "--out", str(export), *as_user(folder, "lee"), home=home)
    assert exported.returncode == 0, exported.stderr
    checked = run_cli(
        "audit", "verify-export", str(export), "--pubkey", key.stdout.split()[-1],
        "--save-checkpoint", str(trusted), home=folder,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    trusted_seq = json.loads(json.loads(trusted.read_text())["checkpoint"])["seq"]
    assert trusted_seq > made.last_seq
    return Site(home, made.path, keeper_file, trusted, made.last_seq, trusted_seq, folder)


def new_host(site: Site, tmp_path: Path, *, identity: bool = True) -> Path:
    """An empty home on a new host, with the escrowed site identity (this home's own
    documents identity) installed, unless not `identity`."""
    home = tmp_path / "new-home"
    (home / "keys").mkdir(parents=True)
    if identity:
        shutil.copy2(site.home / OWN_IDENTITY, home / OWN_IDENTITY)
    return home


def contents(home: Path) -> list[Path]:
    """What the home holds, but the service lock a restore holds while it runs."""
    return sorted(p.relative_to(home) for p in home.rglob("*") if p.name != "service.lock")


def given(home: Path) -> Path:
    """Where the restore writes the checkpoint it gives the officer (beside the home)."""
    return home.parent / "given.json"


def restore(
    site: Site,
    home: Path,
    admin: str = "root1",
    officer: str = "lee",
    wrong: dict | None = None,
    more: tuple[str, ...] = (),
):
    """`appliance restore` approved by `admin` and `officer`; `wrong` gives a role
    ("admin", "officer") a password that is not the account's. The officer's next
    checkpoint goes to `given(home)`."""
    passwords = wrong or {}
    return run_cli(
        "restore", str(site.backup), "--identity", str(site.keeper), *more,
        "--trusted-checkpoint", str(site.trusted), "--save-checkpoint", str(given(home)),
        "--admin", admin, "--officer", officer,
        "--admin-password-file", password_file(site.folder, admin, passwords.get("admin")),
        "--officer-password-file", password_file(site.folder, officer, passwords.get("officer")),
        home=home,
    )  # fmt: skip


def test_a_lost_home_is_restored_and_its_log_reports_the_restore(site, tmp_path):
    home = new_host(site, tmp_path)
    restored = restore(site, home)
    assert restored.returncode == 0, restored.stderr
    assert "3 accounts" in restored.stdout  # park came after the backup
    lost = f"{site.backup_seq + 1}-{site.trusted_seq}"
    assert f"the events {lost} after the backup are lost" in restored.stdout
    assert not (home / ".restoring").exists()

    # Kim's work is back: her conversation opens with her password, her document is listed.
    conversations, _ = Conversations.open(home, "kim", PASSWORDS["kim"])
    with contextlib.closing(conversations):
        (summary,) = conversations.summaries({"normal"})
        messages, label = conversations.load(summary.id)
    assert [m.content for m in messages] == ["보고 주기?", "분기"]
    assert label == "normal"
    kim = Principal("kim", "operator", "restricted")
    with AuditLog(audit_dir(home)) as log, open_documents(home, log) as store:
        listed = Library(home, active_policy(home), log, kim, store).list()
        assert [d["name"] for d in listed["documents"]] == ["지침.txt"]
        check_state(home, log)  # the restored home is as its last signed state says
        (row,) = log.events(action="restore")
        restore_event = json.loads(row["leaf"])
    assert row["seq"] == site.trusted_seq + 1  # numbering resumes above the checkpoint
    assert restore_event["details"]["approved_by"] == {"admin": "root1", "officer": "lee"}
    assert restore_event["details"]["backup"]["seq"] == site.backup_seq

    # Verified against the officer's checkpoint: whole, but never complete (exit 21).
    verified = run_cli(
        "audit", "verify", "--trusted-checkpoint", str(site.trusted), *as_user(tmp_path, "lee"),
        home=home,
    )  # fmt: skip
    assert verified.returncode == 21, verified.stderr
    assert f"{site.backup_seq + 1}-{site.trusted_seq}" in verified.stdout
    assert "Only the restore event vouches for the new key" in verified.stdout
    assert "Traceback" not in verified.stderr
    # The checkpoint the restore gave the officer pins the new key: the restore is confirmed.
    pinned = run_cli(
        "audit", "verify", "--trusted-checkpoint", str(given(home)), "--json",
        *as_user(tmp_path, "lee"), home=home,
    )  # fmt: skip
    assert pinned.returncode == 21, pinned.stderr
    summary = json.loads(pinned.stdout)
    assert summary["trusted_seq"] > site.trusted_seq
    assert [r["confirmed"] for r in summary["restores"]] == [True]
    assert summary["complete"] is False
    doctor = run_cli("doctor", "--json", "--model", "/nonexistent.gguf", home=home)
    audit = next(c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "audit")
    assert audit["ok"] is True
    assert f"restored from a backup at seq {row['seq']} (events {lost} lost)" in (audit["detail"])
    # The accounts made after the backup are gone with it; the others sign in.
    listed_users = run_cli("users", "list", *as_user(tmp_path, "root1"), home=home)
    assert listed_users.returncode == 0, listed_users.stderr
    assert "park" not in listed_users.stdout
    assert "kim" in listed_users.stdout

    # A second restore into the same home is refused: it has accounts now.
    again = restore(site, home)
    assert_one_line_error(again, 7, "has accounts")


@pytest.mark.parametrize(
    ("admin", "approver", "passwords", "code", "fragment"),
    [
        ("root1", "kim", {}, 15, "kim is not an officer"),  # an operator cannot approve
        ("lee", "root1", {}, 15, "lee is not an admin"),  # roles swapped
        ("root1", "lee", {"officer": "not-her-password"}, 14, "no officer lee"),
    ],
)
def test_a_restore_not_approved_by_an_admin_and_an_officer_leaves_the_home_untouched(
    site, tmp_path, admin, approver, passwords, code, fragment
):
    home = new_host(site, tmp_path)
    before = contents(home)
    refused = restore(site, home, admin, approver, passwords)
    assert_one_line_error(refused, code, fragment)
    assert not given(home).exists()  # no checkpoint for a restore that did not happen
    assert contents(home) == before
    assert not has_users(home)


def test_a_restore_with_the_wrong_identity_or_another_logs_checkpoint_is_refused(site, tmp_path):
    home = new_host(site, tmp_path)
    before = contents(home)
    stranger = tmp_path / "stranger.key"
    write_identity(stranger, Identity.generate(), None)
    wrong_key = run_cli(
        "restore", str(site.backup), "--identity", str(stranger),
        "--trusted-checkpoint", str(site.trusted), "--admin", "root1", "--officer", "lee",
        "--admin-password-file", password_file(tmp_path, "root1"),
        "--officer-password-file", password_file(tmp_path, "lee"),
        home=home,
    )  # fmt: skip
    assert_one_line_error(wrong_key, 9, "")

    # The checkpoint of another log does not resume this one; no device key is made.
    with AuditLog(tmp_path / "other") as log:
        log.record(Event(ADMIN, "state"), checkpoint=True)
        checkpoint = log.store.latest_checkpoint()
    assert checkpoint is not None
    another = tmp_path / "another.json"
    another.write_bytes(checkpoint.to_file_bytes())
    refused = run_cli(
        "restore", str(site.backup), "--identity", str(site.keeper),
        "--trusted-checkpoint", str(another), "--admin", "root1", "--officer", "lee",
        "--admin-password-file", password_file(tmp_path, "root1"),
        "--officer-password-file", password_file(tmp_path, "lee"),
        home=home,
    )  # fmt: skip
    assert_one_line_error(refused, 6, "another log")
    assert contents(home) == before


def test_without_the_site_identity_an_officer_escrow_opens_the_documents(site, officer, tmp_path):
    home = new_host(site, tmp_path, identity=False)
    before = contents(home)
    refused = restore(site, home)
    assert_one_line_error(refused, 7, "--escrow-identity")
    assert contents(home) == before

    escrow = tmp_path / "officer.key"
    write_identity(escrow, officer, None)
    restored = restore(site, home, more=("--escrow-identity", str(escrow)))
    assert restored.returncode == 0, restored.stderr
    assert (home / OWN_IDENTITY).is_file()  # this host's own, new identity
    kim = Principal("kim", "operator", "restricted")
    with AuditLog(audit_dir(home)) as log, open_documents(home, log) as store:
        listed = Library(home, active_policy(home), log, kim, store).list()
    assert [d["name"] for d in listed["documents"]] == ["지침.txt"]


def test_a_restore_interrupted_while_moving_in_is_finished_by_running_it_again(
    site, tmp_path, monkeypatch
):
    home = new_host(site, tmp_path)
    staging = home / restoring.STAGING
    replace, moved = os.replace, []

    def power_lost(source: str | Path, target: str | Path) -> None:
        if (staging / restoring.MOVING).exists() and str(source).startswith(str(staging)):
            if len(moved) == 2:
                raise KeyboardInterrupt  # the process stops between two pieces
            moved.append(target)
        replace(source, target)

    trusted = Checkpoint.read_file(site.trusted)
    monkeypatch.setattr(os, "replace", power_lost)
    with pytest.raises(KeyboardInterrupt):
        restoring.restore_home(
            home, site.backup, [read_identity(site.keeper, lambda: pytest.fail("wrapped"))],
            trusted, restoring.Approver("root1", PASSWORDS["root1"]),
            restoring.Approver("lee", PASSWORDS["lee"]),
        )  # fmt: skip
    monkeypatch.undo()
    assert (staging / restoring.MOVING).exists()
    assert len(moved) == 2
    assert not (audit_dir(home) / "log.db").exists()  # the audit folder moves last

    finished = restore(site, home)
    assert finished.returncode == 0, finished.stderr
    assert "Finished the restore" in finished.stdout
    assert not staging.exists()
    with AuditLog(audit_dir(home)) as log:
        check_state(home, log)
        assert not log.verify(trusted=trusted).complete


def test_a_restore_waits_for_no_service_it_refuses_while_one_holds_the_home(site, tmp_path):
    home = new_host(site, tmp_path)
    held = claim(home)  # as a running service holds it
    try:
        refused = restore(site, home)
    finally:
        os.close(held)
    assert_one_line_error(refused, 7, "stop it before a restore")
    assert not has_users(home)
