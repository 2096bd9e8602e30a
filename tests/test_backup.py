"""Backups of a home: one sealed file, consistent while writers write, refused whole when
altered, made by an admin or by the service on its schedule, and reported by the doctor.

Real SQLite, real sealing, real processes for the command line; the service runs in this
process (`defense_served`) with a scripted engine, since no answer's text matters here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from appliance.audit import Actor, AuditLog, Event, audit_dir
from appliance.backup import (
    BACKUP_CONTENT_ID,
    last_backup,
    make_backup,
    open_backup,
    render_dropin,
    verify_log_copy,
)
from appliance.cli import build_parser
from appliance.config import load_home_config
from appliance.conversations import Conversations
from appliance.documents.home import open_documents
from appliance.documents.keys import KEY_CONTENT_ID
from appliance.documents.library import Library
from appliance.documents.store import DocumentStore
from appliance.engine import Message
from appliance.errors import (
    ApplianceError,
    ConfigError,
    CredentialError,
    InputError,
    IntegrityError,
    PermissionDeniedError,
    UsageError,
)
from appliance.health import backup_check
from appliance.homestate import record_state
from appliance.identity import Principal, Users
from appliance.policy import active_policy
from appliance.seal import Identity, open_bytes, seal_bytes, write_identity
from appliance.service import Client
from tests.conftest import assert_one_line_error, run_cli
from tests.servicing import defense_served, serving
from tests.staff import PASSWORDS, as_user
from tests.test_tui import ScriptedEngine

CANARY = "백업카나리아문장"
ADMIN = Actor("root1", "admin")


@pytest.fixture(scope="module")
def keeper() -> Identity:
    """The site's backup identity: backups are sealed to it, and only it opens them."""
    return Identity.generate()


def configure(home: Path, folder: Path, keeper: Identity, **more: object) -> None:
    """[backup] in the home's config.toml (the tests sign the state where they serve)."""
    lines = ["[backup]", f'folder = "{folder}"', f'recipients = ["{keeper.recipient}"]']
    lines += [f"{key} = {json.dumps(value)}" for key, value in more.items()]
    (home / "config.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def identity_file(tmp_path: Path, identity: Identity, name: str = "keeper.key") -> str:
    path = tmp_path / name
    write_identity(path, identity, None)
    return str(path)


def backups(folder: Path) -> list[Path]:
    return sorted(folder.glob("appliance-backup-*.sealed"))


def leaves(home: Path, action: str) -> list[dict]:
    with AuditLog(audit_dir(home)) as log:
        return [json.loads(row["leaf"]) for row in log.events(action=action)]


def test_a_backup_holds_the_home_and_its_log_copy_verifies(staffed, officer, keeper, tmp_path):
    home, folder = staffed, tmp_path / "backups"
    kim = Principal("kim", "operator", "restricted")
    with AuditLog(audit_dir(home)) as log, open_documents(home, log) as store:
        library = Library(home, active_policy(home), log, kim, store)
        added = library.add("지침.txt", f"{CANARY}\n대외비\n예산은 분기별로 보고한다.".encode())
    conversations, _ = Conversations.open(home, "kim", PASSWORDS["kim"])
    with contextlib.closing(conversations):
        conversations.save(None, [Message("user", "질문"), Message("assistant", "답")], "normal")
    with AuditLog(audit_dir(home)) as log:
        made = make_backup(home, log, ADMIN, folder, [keeper.recipient])  # opens the store
        assert last_backup(log) is not None
        assert last_backup(log)[0] == made.seq

    assert made.path.parent == folder
    assert made.path.name.startswith("appliance-backup-")
    assert stat.S_IMODE(made.path.stat().st_mode) == 0o600
    sealed = made.path.read_bytes()
    assert hashlib.sha256(sealed).hexdigest() == made.sha256
    assert len(sealed) == made.bytes
    assert CANARY.encode() not in sealed
    assert not list(home.glob(".backup-*"))  # the store's copy went with its folder
    event = leaves(home, "backup")[-1]
    assert event["outcome"] == "ok"
    assert event["user"] == "root1"
    assert event["details"]["sha256"] == made.sha256
    assert event["details"]["last_seq"] == made.last_seq < made.seq
    assert event["details"]["recipients"] == [str(keeper.recipient)]

    with open_backup(made.path, [keeper]) as backup:
        root, manifest = backup.root, backup.manifest
        assert stat.S_IMODE(root.stat().st_mode) == 0o700
        assert manifest["last_seq"] == made.last_seq == backup.report.last_seq
        assert backup.report.checkpoints >= 1
        copy = verify_log_copy(root / "audit" / "log.db")
        assert copy.chain.hex() == manifest["chain"]
        assert str(copy.key) == manifest["device_key"]
        names = set(manifest["files"])
        assert {"audit/log.db", "identity/users.db", "conversations/kim.db"} <= names
        assert {"documents/store.db", "documents/store.key", "audit/officers"} <= names
        assert manifest["policy_link"]["kind"] == "file"
        assert "policy.toml" in names
        assert not any(name.startswith("keys/") or "device.key" in name for name in names)
        assert not (root / "audit" / "device.key").exists()
        with Users(root) as users:
            assert {a.name for a in users.accounts()} == {"root1", "lee", "kim"}
        saved, _ = Conversations.open(root, "kim", PASSWORDS["kim"])
        with contextlib.closing(saved):
            assert [s.title for s in saved.summaries({"normal"})] == ["질문"]
        # The store stays encrypted under its key; the officer's escrow opens that key.
        copied = (root / "documents" / "store.db").read_bytes()
        assert CANARY.encode() not in copied
        key = open_bytes(
            (root / "documents" / "store.key").read_bytes(),
            [officer],
            "store.key",
            expect_content_id=KEY_CONTENT_ID,
        )
        with DocumentStore(root / "documents" / "store.db", key) as documents:
            assert [d.id for d in documents.all_documents()] == [added["document"]["id"]]
    assert not root.exists()  # removed once the block ends


def test_a_backup_taken_while_16_sessions_write_verifies(officer, keeper, tmp_path):
    home, folder = tmp_path / "home", tmp_path / "backups"
    stop = threading.Event()
    written = [0] * 17  # events of each session, then saves of the conversations
    with AuditLog(audit_dir(home)) as log:
        log.set_officers([officer.recipient], Actor("lee", "officer"))

        def session(index: int) -> None:
            actor = Actor(f"user{index}", "operator")
            while not stop.is_set():
                log.record(Event(actor, "ask", "m", label="normal"), {"prompt": f"질문 {index}"})
                written[index] += 1

        def saver() -> None:  # one user's conversations are written meanwhile too
            conversations, _ = Conversations.open(home, "kim", "long-enough-1")
            with contextlib.closing(conversations):
                while not stop.is_set():
                    conversations.save(None, [Message("user", "q")], "normal")
                    written[16] += 1

        threads = [threading.Thread(target=session, args=(i,)) for i in range(16)]
        threads.append(threading.Thread(target=saver))
        for thread in threads:
            thread.start()
        try:
            while (sum(written) < 200 or not written[16]) and all(t.is_alive() for t in threads):
                time.sleep(0.01)  # under way
            made = [make_backup(home, log, ADMIN, folder, [keeper.recipient]) for _ in range(2)]
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        live = {row["seq"]: row for row in log.events()}
    assert all(written)
    for result in made:
        with open_backup(result.path, [keeper]) as backup:
            report, manifest = backup.report, backup.manifest
            assert report.last_seq == manifest["last_seq"] == result.last_seq
            assert report.events == manifest["last_seq"]  # every event up to it, no gap
            saved, _ = Conversations.open(backup.root, "kim", "long-enough-1")
            with contextlib.closing(saved):  # a consistent copy of a database being written
                assert saved.summaries({"normal"})
        # The copy is a prefix of the live log: the same chain at its last seq.
        with AuditLog(audit_dir(home)) as log:
            assert log.store.chain_at(result.last_seq).hex() == manifest["chain"]
        assert result.last_seq < result.seq
        assert result.seq in live
    assert made[0].last_seq < made[1].last_seq


def test_an_altered_foreign_or_truncated_backup_is_refused_with_one_line(keeper, tmp_path):
    home, folder = tmp_path / "home", tmp_path / "backups"
    with AuditLog(audit_dir(home)) as log:
        made = make_backup(home, log, ADMIN, folder, [keeper.recipient])
        other = make_backup(
            home, log, ADMIN, tmp_path / "elsewhere", [Identity.generate().recipient]
        )
    key = identity_file(tmp_path, keeper)
    good = made.path.read_bytes()

    def variant(name: str, data: bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(data)
        return path

    def refused(path: Path, code: int, fragment: str) -> None:
        """`appliance backup verify`, in a process of its own: one line, a stable code."""
        result = run_cli("backup", "verify", str(path), "--identity", key, home=home)
        assert_one_line_error(result, code, fragment)
        assert str(path) in result.stderr  # the refusal names the file

    def opened(path: Path, cls: type[ApplianceError], fragment: str) -> None:
        """open_backup, as a restore calls it: the same one sentence, naming the file."""
        with pytest.raises(cls) as refusal, open_backup(path, [keeper]):
            pytest.fail(f"{path.name} was opened")
        assert fragment in refusal.value.message
        assert str(path) in refusal.value.message
        assert "\n" not in refusal.value.message

    verified = run_cli("backup", "verify", str(made.path), "--identity", key, home=home)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("Backup verified:")
    assert len(verified.stdout.splitlines()) == 1

    salt = good.index(b"salt: ") + len(b"salt: ") + 5
    flipped = bytearray(good)
    flipped[salt] = ord("B") if flipped[salt] != ord("B") else ord("C")
    refused(variant("header.sealed", bytes(flipped)), 6, "header was modified")
    altered = bytearray(good)
    altered[len(good) // 2] ^= 0x01
    refused(variant("payload.sealed", bytes(altered)), 6, "fails authentication")
    refused(other.path, 9, "none of the given identities")

    opened(variant("last.sealed", good[:-1] + bytes([good[-1] ^ 1])), IntegrityError, "segment")
    opened(variant("short.sealed", good[:-100]), IntegrityError, "truncated")
    opened(variant("long.sealed", good + b"\0"), IntegrityError, "after its final segment")
    model = seal_bytes(b"not a backup", [keeper.recipient], "model@1")
    opened(variant("model.sealed", model), IntegrityError, "not an appliance backup")
    opened(variant("plain.tar", b"plain text"), InputError, "not a sealed file")
    opened(tmp_path / "missing.sealed", InputError, "cannot read")
    opened(other.path, CredentialError, "none of the given identities")

    # One byte flipped anywhere, at 40 places over the whole file: never opened.
    for where in range(0, len(good), max(1, len(good) // 40)):
        altered = bytearray(good)
        altered[where] ^= 0x20
        path = variant("any.sealed", bytes(altered))
        with pytest.raises(ApplianceError) as refusal, open_backup(path, [keeper]):
            pytest.fail(f"a backup altered at byte {where} was opened")
        assert str(path) in refusal.value.message
        assert "\n" not in refusal.value.message
        path.unlink()


def test_what_is_inside_a_backup_is_checked_though_sealing_is_not_signing(keeper, tmp_path):
    """Anyone with the recipient string can seal a file to it: a sealed archive that is not
    one the appliance made (no signed manifest, a member it never writes) is refused."""
    from appliance.backup.archive import END, header

    odd = header("config.toml", 3) + b"abc" + bytes(509) + END
    for name, data in (("garbage", b"x" * 2048), ("unsigned", odd)):
        path = tmp_path / f"{name}.sealed"
        path.write_bytes(seal_bytes(data, [keeper.recipient], BACKUP_CONTENT_ID))
        with (
            pytest.raises(IntegrityError, match="not a backup this version reads"),
            open_backup(path, [keeper]),
        ):
            pass
    evil = bytearray(header("config.toml", 0))
    evil[0:11] = b"../etc/pwn\0"
    evil[148:156] = b" " * 8
    evil[148:156] = b"%06o\0 " % sum(evil)  # a valid header, but for its name
    path = tmp_path / "evil.sealed"
    path.write_bytes(seal_bytes(bytes(evil) + END, [keeper.recipient], BACKUP_CONTENT_ID))
    with (
        pytest.raises(IntegrityError, match=r"name no backup holds"),
        open_backup(path, [keeper]),
    ):
        pass


def test_the_site_config_says_where_and_to_whom(keeper, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    configure(home, tmp_path / "backups", keeper, every_hours=6)
    site = load_home_config(home).backup
    assert site is not None
    assert site.every_hours == 6.0
    assert site.recipients == (str(keeper.recipient),)
    assert site.folder == tmp_path / "backups"
    bad = {
        'folder = "backups"': "backup.folder",
        f'folder = "{home}/backups"': "outside the home",
        'folder = "/srv/my backups"': "backup.folder",
        'recipients = ["apr1nope"]': "backup.recipients",
        "recipients = []": "backup.recipients",
        "every_hours = 0": "backup.every_hours",
        "every_hours = true": "backup.every_hours",
        "copies = 3": "backup.copies: unknown key",
    }
    good = (home / "config.toml").read_text()
    for line, fragment in bad.items():
        key = line.split(" = ")[0]
        lines = [x for x in good.splitlines() if not x.startswith(key)] + [line]
        (home / "config.toml").write_text("\n".join(lines) + "\n")
        with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
            load_home_config(home)


def test_appliance_backup_is_an_admins_act_to_the_sites_folder_only(staffed, keeper, tmp_path):
    home, folder = staffed, tmp_path / "backups"
    missing = run_cli("backup", *as_user(tmp_path, "root1"), home=home)
    assert_one_line_error(missing, 7, "add [backup] with folder and recipients")
    configure(home, folder, keeper)
    assert f"ReadWritePaths={folder}\n" in render_dropin(load_home_config(home).backup)
    # [backup] counts only once an officer accepts it: nobody else chooses the recipients.
    unaccepted = run_cli("backup", *as_user(tmp_path, "root1"), home=home)
    assert_one_line_error(unaccepted, 6, "config.toml changed outside the appliance")
    assert not folder.exists() or backups(folder) == []
    accepting = run_cli(
        "audit", "state", "--accept", "--reason", "backups to the site's keeper",
        *as_user(tmp_path, "lee"), home=home,
    )  # fmt: skip
    assert accepting.returncode == 0, accepting.stderr
    refused = run_cli("backup", *as_user(tmp_path, "kim"), home=home)
    assert_one_line_error(refused, 15, "needs the admin role")
    assert leaves(home, "policy_block")[-1]["details"] == {"permission": "backup.run"}
    assert not folder.exists() or backups(folder) == []

    made = run_cli("backup", *as_user(tmp_path, "root1"), home=home)
    assert made.returncode == 0, made.stderr
    assert len(made.stdout.splitlines()) == 1
    [path] = backups(folder)
    assert made.stdout.startswith(f"Wrote {path} (")
    assert "reaches seq" in made.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    event = leaves(home, "backup")[-1]
    assert (event["user"], event["outcome"], event["object"]) == ("root1", "ok", path.name)
    assert event["details"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    # Options choose neither the folder nor the recipients.
    for option in ("--recipient", "--folder", "--out"):
        with pytest.raises(UsageError):
            build_parser().parse_args(["backup", option, str(tmp_path)])


def test_the_service_backs_up_on_request_and_on_its_schedule(staffed, keeper, tmp_path):
    home, folder = staffed, tmp_path / "backups"
    configure(home, folder, keeper, every_hours=0.0003)  # about a second
    with AuditLog(audit_dir(home)) as log, open_documents(home, log):
        pass  # the store exists: the service copies it from its own open store
    with defense_served(home, ScriptedEngine(["네."])) as path:
        scheduled = wait_for(home, lambda e: e["user"] == "appliance" and e["outcome"] == "ok")
        assert scheduled["details"]["scheduled"] is True
        with Client(path, timeout=120) as client:
            client.sign_in("root1", PASSWORDS["root1"])
            found = client.call("backup")
        with Client(path, timeout=120) as client:
            client.sign_in("kim", PASSWORDS["kim"])
            with pytest.raises(PermissionDeniedError) as refusal:
                client.call("backup")
            assert refusal.value.code == "role_denied"
    assert Path(found["path"]) in backups(folder)
    assert found["name"] == Path(found["path"]).name
    with open_backup(Path(found["path"]), [keeper]) as backup:
        assert backup.manifest["last_seq"] == found["last_seq"]
        assert "documents/store.db" in backup.manifest["files"]
    mine = [e for e in leaves(home, "backup") if e["user"] == "root1"]
    assert [e["details"]["sha256"] for e in mine] == [found["sha256"]]


def test_a_failed_scheduled_backup_is_audited_and_the_service_goes_on(staffed, keeper, tmp_path):
    home, blocked = staffed, tmp_path / "not-a-folder"
    blocked.write_text("a file where the folder should be")
    configure(home, blocked, keeper, every_hours=0.0003)
    with defense_served(home, ScriptedEngine(["네."])) as path:
        failed = wait_for(home, lambda e: e["outcome"] == "failed")
        assert "not a directory" in failed["details"]["error"]
        with Client(path, timeout=120) as client:  # still serving
            client.sign_in("root1", PASSWORDS["root1"])
            with pytest.raises(ConfigError, match="not a directory"):
                client.call("backup")
            assert client.hello()["protocol"] == 1


def test_doctor_reports_the_age_of_the_last_backup(staffed, keeper, tmp_path):
    home = staffed

    def check() -> dict:
        result = run_cli("doctor", "--json", "--model", "/nonexistent.gguf", home=home)
        return next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "backup")

    never = check()
    assert never["ok"] is None
    assert "never backed up" in never["detail"]
    configure(home, tmp_path / "backups", keeper)
    with AuditLog(audit_dir(home)) as log:
        make_backup(home, log, ADMIN, tmp_path / "backups", [keeper.recipient])
    recent = check()
    assert recent["ok"] is True
    assert "the last backup is" in recent["detail"]
    assert "the policy allows 24 h" in recent["detail"]

    # A day and an hour later, the same backup is past the policy's limit.
    later = backup_check(home, active_policy(home), installed=False, now=time.time() + 25 * 3600)
    assert later["ok"] is None
    assert "the last backup is 25.0 h old" in later["detail"]
    assert "make one ('appliance backup')" in later["detail"]


def wait_for(home: Path, matches, seconds: float = 120) -> dict:
    """The first `backup` event that `matches`, waiting for the service to record it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = [e for e in leaves(home, "backup") if matches(e)]
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError("no such backup event was recorded")


def test_a_policy_link_is_kept_as_a_link(keeper, tmp_path):
    home, policy = tmp_path / "home", tmp_path / "release" / "policy.toml"
    policy.parent.mkdir()
    policy.write_text("# the release's policy\n")
    home.mkdir()
    (home / "policy.toml").symlink_to(policy)
    with AuditLog(audit_dir(home)) as log:
        made = make_backup(home, log, ADMIN, tmp_path / "backups", [keeper.recipient])
    with open_backup(made.path, [keeper]) as backup:
        link = backup.manifest["policy_link"]
        assert link["kind"] == "link"
        assert link["target"] == str(policy)
        assert link["sha256"] == hashlib.sha256(policy.read_bytes()).hexdigest()
        assert "policy.toml" not in backup.manifest["files"]
        restored = tmp_path / "restored"
        restored.mkdir()
        backup.restore_policy_link(restored)
        assert os.readlink(restored / "policy.toml") == str(policy)


def test_appliance_backup_is_a_client_of_the_running_service(staffed, keeper, model_path, tmp_path):
    home, folder = staffed, tmp_path / "backups"
    configure(home, folder, keeper)
    with AuditLog(audit_dir(home)) as log:  # as `audit state --accept` does
        record_state(home, log, Actor("lee", "officer"), "backup folder reviewed")
    with serving(home, model_path):
        made = run_cli("backup", *as_user(tmp_path, "root1"), home=home)
        assert made.returncode == 0, made.stderr
        refused = run_cli("backup", *as_user(tmp_path, "kim"), home=home)
        assert_one_line_error(refused, 15, "needs the admin role")
    [path] = backups(folder)
    assert made.stdout.startswith(f"Wrote {path} (")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    [event] = [e for e in leaves(home, "backup") if e["outcome"] == "ok"]
    started = [e for e in leaves(home, "start") if e["user"] == "appliance"][-1]
    assert event["pid"] == started["pid"]  # written by the service, not by the command
    assert event["details"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    with open_backup(path, [keeper]) as backup:
        assert backup.manifest["last_seq"] == event["details"]["last_seq"]
