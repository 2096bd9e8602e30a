"""A log resumed on a new host from a backup: the restore event, its key, the gap.

The backup holds the log up to seq B, never the device key; the officer's
trusted checkpoint is at seq T. The restored log resumes above both with a new
key that verification accepts only through the restore event, reports the
events B+1..T as lost, and is never complete.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from appliance.audit import Actor, AuditLog, Checkpoint, Event, TamperError, resume_log
from appliance.audit.export import verify_export, write_export
from appliance.errors import AuditError, IntegrityError

KIM = Actor("kim", "operator")
ADMIN = Actor("root1", "admin")
APPROVED = {"admin": "root1", "officer": "lee"}


def fill(directory: Path, count: int) -> Checkpoint:
    """`count` more events, the last one signed; its checkpoint."""
    with AuditLog(directory) as log:
        for n in range(count):
            log.record(Event(KIM, "ask", details={"n": n}), checkpoint=n == count - 1)
        checkpoint = log.store.latest_checkpoint()
    assert checkpoint is not None
    return checkpoint


def back_up(directory: Path, into: Path) -> int:
    """The log copied with SQLite's online backup API (no device key); its last seq."""
    into.mkdir(parents=True)
    source = sqlite3.connect(directory / "log.db")
    target = sqlite3.connect(into / "log.db")
    source.backup(target)
    (last,) = target.execute("SELECT max(seq) FROM events").fetchone()
    source.close()
    target.close()
    return int(last)


def original_key(directory: Path):
    with AuditLog(directory) as log:
        return log.store.original_key()


def restored_home(tmp_path: Path, events_after_backup: int):
    """A log backed up, grown by `events_after_backup`, checkpointed by the officer
    (trusted), then lost; (backup's last seq, trusted, restored directory)."""
    old = tmp_path / "old"
    fill(old, 3)
    backup = tmp_path / "backup"
    backup_seq = back_up(old, backup)
    trusted = fill(old, events_after_backup)
    new = tmp_path / "new"
    shutil.copytree(backup, new)
    return backup_seq, trusted, new, original_key(old)


def test_a_restore_resumes_above_the_trusted_checkpoint_and_reports_the_lost_events(
    tmp_path: Path,
) -> None:
    backup_seq, trusted, new, key = restored_home(tmp_path, 4)
    made = resume_log(new, trusted, ADMIN, APPROVED)
    assert made.seq == trusted.seq + 1  # numbering resumes above the officer's checkpoint
    fill(new, 2)  # the restored host keeps working under its new key
    with AuditLog(new) as log:
        assert log.key.public != key
        report = log.verify(key, trusted)
        anchor = log.check_anchor()
    assert anchor is not None
    assert anchor.seq >= made.seq
    assert report.trusted_seq == trusted.seq
    assert not report.complete
    (restore,) = report.restores
    assert restore.seq == made.seq
    assert restore.lost == (backup_seq + 1, trusted.seq)
    assert restore.approved_by == APPROVED
    assert restore.old_key == key
    assert report.as_json()["complete"] is False


def test_a_backup_newer_than_the_trusted_checkpoint_loses_nothing(tmp_path: Path) -> None:
    old = tmp_path / "old"
    trusted = fill(old, 3)
    fill(old, 2)
    backup_seq = back_up(old, tmp_path / "new")
    made = resume_log(tmp_path / "new", trusted, ADMIN, APPROVED)
    assert made.seq == backup_seq + 1
    with AuditLog(tmp_path / "new") as log:
        report = log.verify(original_key(old), trusted)
    assert report.restores[0].lost is None
    assert not report.complete  # still a restore: what came after the backup is unknown


def test_an_export_across_the_restore_verifies_with_the_original_key(tmp_path: Path) -> None:
    _, trusted, new, key = restored_home(tmp_path, 2)
    resume_log(new, trusted, ADMIN, APPROVED)
    fill(new, 1)
    out = tmp_path / "export.jsonl"
    with AuditLog(new) as log, out.open("wb") as sink:
        write_export(log, sink, KIM)
    result = verify_export(out, key, trusted)
    assert result.report.trusted_seq == trusted.seq
    assert len(result.report.restores) == 1
    with AuditLog(new) as log:  # the new key alone does not vouch for the old events
        new_key = log.key.public
    with pytest.raises(IntegrityError, match="another device key"):
        verify_export(out, new_key)


def test_a_trusted_checkpoint_inside_the_lost_events_cannot_be_vouched_for(
    tmp_path: Path,
) -> None:
    old = tmp_path / "old"
    fill(old, 3)
    back_up(old, tmp_path / "new")
    inside = fill(old, 2)
    trusted = fill(old, 2)
    resume_log(tmp_path / "new", trusted, ADMIN, APPROVED)
    with AuditLog(tmp_path / "new") as log, pytest.raises(TamperError, match="lost at the restore"):
        log.verify(original_key(old), inside)


def test_a_restore_needs_the_officer_checkpoint_of_the_same_log_and_key(tmp_path: Path) -> None:
    _, trusted, new, _ = restored_home(tmp_path, 1)
    other = fill(tmp_path / "other", 5)
    with pytest.raises(IntegrityError, match="another log"):
        resume_log(new, other, ADMIN, APPROVED)
    forged = Checkpoint.from_parts(trusted.body, bytes(64), "forged")
    with pytest.raises(IntegrityError, match="not signed by the backup's device key"):
        resume_log(new, forged, ADMIN, APPROVED)
    assert not (new / "device.key").exists()  # refused before any key was made
    resume_log(new, trusted, ADMIN, APPROVED)
    with pytest.raises(AuditError, match="already has a device key"):
        resume_log(new, trusted, ADMIN, APPROVED)


def test_a_forged_key_change_without_a_restore_event_fails(tmp_path: Path) -> None:
    _, trusted, new, key = restored_home(tmp_path, 2)
    resume_log(new, trusted, ADMIN, APPROVED)
    conn = sqlite3.connect(new / "log.db", isolation_level=None)
    conn.execute("DROP TRIGGER events_append_only")
    conn.execute("DELETE FROM events WHERE action = 'restore'")
    conn.close()
    with AuditLog(new) as log, pytest.raises(TamperError):
        log.verify(key)


def test_only_the_checkpoint_a_restore_gave_the_officer_confirms_its_new_key(
    tmp_path: Path,
) -> None:
    """Checkpoints are no secret (every copy of the log holds them): anyone with a copy
    can append a `restore` of their own. The officer's checkpoint from before a restore
    cannot tell the real one from such a copy, and says so; the checkpoint the real
    restore gave the officer pins its new key, and the copy fails against it."""
    old = tmp_path / "old"
    early = fill(old, 3)
    back_up(old, tmp_path / "genuine")
    back_up(old, tmp_path / "copy")
    trusted = fill(old, 2)
    key = original_key(old)
    given = resume_log(tmp_path / "genuine", trusted, ADMIN, APPROVED)
    resume_log(tmp_path / "copy", early, Actor("mallory", "admin"), APPROVED)

    with AuditLog(tmp_path / "copy") as log:
        unconfirmed = log.verify(key, early).as_json()["restores"][0]
        assert unconfirmed["confirmed"] is False
        with pytest.raises((TamperError, IntegrityError)):
            log.verify(key, given)
    with AuditLog(tmp_path / "genuine") as log:
        report = log.verify(key, given)
    assert report.as_json()["restores"][0]["confirmed"] is True
    assert not report.complete


def test_a_backup_holding_a_restore_after_the_officer_checkpoint_is_refused(
    tmp_path: Path,
) -> None:
    old = tmp_path / "old"
    early = fill(old, 3)
    back_up(old, tmp_path / "copy")
    trusted = fill(old, 2)
    resume_log(tmp_path / "copy", early, Actor("mallory", "admin"), APPROVED)
    fill(tmp_path / "copy", 4)  # made-up history under a key of the copy's own
    back_up(tmp_path / "copy", tmp_path / "crafted")
    refused = r"restored after|not signed by the backup's device key"
    with pytest.raises(IntegrityError, match=refused):
        resume_log(tmp_path / "crafted", trusted, ADMIN, APPROVED)
    assert not (tmp_path / "crafted" / "device.key").exists()


def test_exports_from_the_restore_on_verify_and_are_never_complete(tmp_path: Path) -> None:
    _, trusted, new, key = restored_home(tmp_path, 2)
    made = resume_log(new, trusted, ADMIN, APPROVED)
    fill(new, 2)
    with AuditLog(new) as log:
        new_key = log.key.public
    since_trusted, since_restore = tmp_path / "t.jsonl", tmp_path / "r.jsonl"
    with AuditLog(new) as log, since_trusted.open("wb") as sink:
        write_export(log, sink, KIM, since=trusted)  # the restore is its first event
    with AuditLog(new) as log, since_restore.open("wb") as sink:
        write_export(log, sink, KIM, since=made)  # after it, under the new key alone
    first = verify_export(since_trusted, key, trusted).report
    assert [r.seq for r in first.restores] == [made.seq]
    assert not first.complete
    later = verify_export(since_restore, new_key, made).report
    assert later.restores == []
    assert later.restored_before == [made.seq]
    assert not later.complete  # the log was restored, whatever part of it is exported


def test_the_table_of_restores_must_say_what_the_restore_event_says(tmp_path: Path) -> None:
    _, trusted, new, key = restored_home(tmp_path, 2)
    resume_log(new, trusted, ADMIN, APPROVED)
    with AuditLog(tmp_path / "elsewhere") as elsewhere:
        other = elsewhere.key.public
    conn = sqlite3.connect(new / "log.db", isolation_level=None)
    conn.execute("DROP TRIGGER restores_no_update")  # as whoever can write the file would
    conn.execute("UPDATE restores SET trusted_seq = trusted_seq - 1")
    with AuditLog(new) as log, pytest.raises(TamperError):
        log.verify(key)
    conn.execute("DROP TRIGGER restores_no_update")  # opening the log put it back
    conn.execute("UPDATE restores SET trusted_seq = trusted_seq + 1, device_key = ?", (str(other),))
    conn.close()
    with pytest.raises(AuditError, match="device key does not match"):
        AuditLog(new)
