"""The audit log: hash chain, checkpoints, tampering, content, concurrency, crashes."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from appliance.audit import Actor, AuditLog, Checkpoint, Event, TamperError
from appliance.audit.export import verify_export, write_export
from appliance.audit.record import GENESIS_CHAIN, leaf_hash, next_chain
from appliance.errors import AuditError, CredentialError, IntegrityError
from appliance.seal import Identity

KIM = Actor("kim", "operator")
LEE = Actor("lee", "officer")


def ask(n: int) -> Event:
    return Event(KIM, "ask", "gemma3-270m-q4_k_m@1.0.0", label="대외비", details={"n": n})


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "audit"


def fill(log_dir: Path, count: int, officer: Identity | None = None) -> list[int]:
    """`count` ask events, each its own signed batch; returns their seqs."""
    with AuditLog(log_dir) as log:
        if officer is not None:
            log.set_officers([officer.recipient], LEE)
        return [log.record(ask(n), {"prompt": f"질문 {n}"}, checkpoint=True) for n in range(count)]


def verify(log_dir: Path, trusted: Checkpoint | None = None):
    with AuditLog(log_dir) as log:
        return log.verify(trusted=trusted)


def tamper(log_dir: Path, *statements: str, params: tuple = ()) -> None:
    """Edit the database as an attacker with file access would: triggers dropped first."""
    conn = sqlite3.connect(log_dir / "log.db", isolation_level=None)
    for name in ("events_append_only", "events_prune_only", "checkpoints_no_update"):
        conn.execute(f"DROP TRIGGER IF EXISTS {name}")
    conn.execute("DROP TRIGGER IF EXISTS checkpoints_no_delete")
    for statement in statements:
        conn.execute(statement, params if "?" in statement else ())
    conn.close()


def latest_checkpoint(log_dir: Path) -> Checkpoint:
    with AuditLog(log_dir) as log:
        report = log.verify()
    assert report.last_checkpoint is not None
    return report.last_checkpoint


def expect_tamper(log_dir: Path, seq: int, reason: str, trusted: Checkpoint | None = None) -> None:
    with pytest.raises(TamperError) as caught:
        verify(log_dir, trusted)
    assert caught.value.seq == seq, caught.value
    assert reason in caught.value.reason, caught.value


# -- a log that is whole ---------------------------------------------------------


def test_a_new_log_starts_with_a_signed_genesis_event(log_dir: Path) -> None:
    report = verify(log_dir)
    assert (report.first_seq, report.last_seq, report.checkpoints) == (1, 1, 1)
    assert (log_dir / "log.db").stat().st_mode & 0o777 == 0o600
    assert (log_dir / "device.key").stat().st_mode & 0o777 == 0o600


def test_the_chain_is_the_documented_one(log_dir: Path) -> None:
    fill(log_dir, 3)
    conn = sqlite3.connect(log_dir / "log.db")
    rows = conn.execute("SELECT seq, leaf, leaf_hash, chain FROM events ORDER BY seq").fetchall()
    conn.close()
    assert [row[0] for row in rows] == [1, 2, 3, 4]
    chain = bytes(32)
    for _, leaf, hashed, stored in rows:  # chain_i = SHA-256(chain_i-1 || SHA-256(0x00 || leaf))
        assert hashed == hashlib.sha256(b"\x00" + leaf).digest() == leaf_hash(leaf)
        assert next_chain(chain, hashed) == hashlib.sha256(chain + hashed).digest()
        chain = hashlib.sha256(chain + hashed).digest()
        assert stored == chain


def test_events_are_canonical_json_with_queryable_metadata(log_dir: Path) -> None:
    fill(log_dir, 2)
    with AuditLog(log_dir) as log:
        rows = list(log.events(action="ask"))
        assert [row["seq"] for row in rows] == [2, 3]
        leaf = rows[0]["leaf"]
        assert leaf.startswith(b'{"action":"ask",')
        assert '"label":"대외비"'.encode() in leaf
        assert list(log.events(user="nobody")) == []
        assert [r["seq"] for r in log.events(user="kim", limit=1)] == [2]


def test_triggers_refuse_update_and_delete(log_dir: Path) -> None:
    fill(log_dir, 2)
    conn = sqlite3.connect(log_dir / "log.db", isolation_level=None)
    for statement in (
        "DELETE FROM events WHERE seq = 2",
        "UPDATE events SET leaf = CAST('{}' AS BLOB) WHERE seq = 2",
        "UPDATE events SET content = NULL WHERE seq = 2",
        "DELETE FROM checkpoints",
        "UPDATE meta SET value = 'x'",
    ):
        with pytest.raises(sqlite3.IntegrityError, match=r"append-only|fixed"):
            conn.execute(statement)
    conn.close()
    assert verify(log_dir).last_seq == 3


# -- each tampering is caught with its seq and reason ---------------------------------


def test_a_modified_field_is_caught(log_dir: Path) -> None:
    fill(log_dir, 5)
    tamper(log_dir, "UPDATE events SET leaf = replace(leaf, 'kim', 'lee') WHERE seq = 4")
    expect_tamper(log_dir, 4, "modified")


def test_a_modified_field_with_rehashed_chain_is_caught_by_the_checkpoint(log_dir: Path) -> None:
    fill(log_dir, 5)
    conn = sqlite3.connect(log_dir / "log.db", isolation_level=None)
    conn.execute("DROP TRIGGER events_prune_only")
    rows = conn.execute("SELECT seq, leaf FROM events ORDER BY seq").fetchall()
    chain = GENESIS_CHAIN
    for seq, leaf in rows:  # an attacker without the device key recomputes every hash
        if seq == 4:
            leaf = leaf.replace(b'"kim"', b'"lee"')
        hashed = leaf_hash(leaf)
        chain = next_chain(chain, hashed)
        conn.execute(
            "UPDATE events SET leaf = ?, leaf_hash = ?, chain = ? WHERE seq = ?",
            (leaf, hashed, chain, seq),
        )
    conn.close()
    expect_tamper(log_dir, 4, "signed checkpoint does not match")


def test_a_deleted_middle_row_is_caught(log_dir: Path) -> None:
    fill(log_dir, 5)
    tamper(log_dir, "DELETE FROM events WHERE seq = 3")
    expect_tamper(log_dir, 3, "missing")


def test_a_reordered_pair_is_caught(log_dir: Path) -> None:
    fill(log_dir, 5)
    conn = sqlite3.connect(log_dir / "log.db", isolation_level=None)
    conn.execute("DROP TRIGGER events_prune_only")
    four, five = (
        conn.execute(
            "SELECT leaf, leaf_hash, chain, content FROM events WHERE seq = ?", (s,)
        ).fetchone()
        for s in (4, 5)
    )
    update = "UPDATE events SET leaf = ?, leaf_hash = ?, chain = ?, content = ? WHERE seq = ?"
    conn.execute(update, (*five, 4))
    conn.execute(update, (*four, 5))
    conn.close()
    expect_tamper(log_dir, 4, "chain breaks")


def test_a_deleted_tail_is_caught_against_the_trusted_checkpoint(log_dir: Path) -> None:
    fill(log_dir, 6)
    trusted = latest_checkpoint(log_dir)
    assert trusted.seq == 7
    # The tail and its checkpoints go: the shorter log is consistent on its own...
    tamper(log_dir, "DELETE FROM events WHERE seq > 4", "DELETE FROM checkpoints WHERE seq > 4")
    assert verify(log_dir).last_seq == 4
    # ...but not against the checkpoint the officer kept.
    expect_tamper(log_dir, 5, "before the trusted checkpoint at seq 7", trusted)


def test_a_deleted_tail_whose_checkpoint_stayed_is_caught(log_dir: Path) -> None:
    fill(log_dir, 6)
    tamper(log_dir, "DELETE FROM events WHERE seq > 4")
    expect_tamper(log_dir, 5, "signed in a checkpoint but are gone")


def test_a_database_replaced_by_an_older_copy_is_caught(log_dir: Path, tmp_path: Path) -> None:
    fill(log_dir, 3)
    old = tmp_path / "old.db"
    source = sqlite3.connect(log_dir / "log.db")
    with sqlite3.connect(old) as copy:
        source.backup(copy)
    source.close()
    with AuditLog(log_dir) as log:
        for n in range(3):
            log.record(ask(n))
    trusted = latest_checkpoint(log_dir)
    for suffix in ("-wal", "-shm"):
        (log_dir / f"log.db{suffix}").unlink(missing_ok=True)
    old.replace(log_dir / "log.db")
    assert verify(log_dir).last_seq == 4  # the old copy is consistent on its own
    expect_tamper(log_dir, 5, "older copy", trusted)
    # New events on the old copy fork the history: caught at the trusted seq.
    with AuditLog(log_dir) as log:
        for n in range(5):
            log.record(ask(n))
    expect_tamper(log_dir, trusted.seq, "history was rewritten", trusted)


def test_a_forged_checkpoint_signature_is_caught(log_dir: Path) -> None:
    fill(log_dir, 4)
    tamper(
        log_dir,
        "UPDATE checkpoints SET signature = ? WHERE seq = 3",
        params=(bytes(64),),
    )
    expect_tamper(log_dir, 3, "signature is invalid")


def test_a_checkpoint_signed_by_another_key_is_caught(log_dir: Path, tmp_path: Path) -> None:
    fill(log_dir, 2)
    with AuditLog(tmp_path / "other") as other:
        forged = Checkpoint.sign(other.key, "x", 3, bytes(32), 0)
    tamper(
        log_dir,
        "UPDATE checkpoints SET body = ?, signature = ? WHERE seq = 3",
        params=(forged.body, forged.signature),
    )
    expect_tamper(log_dir, 3, "signature is invalid")


def test_replaced_content_is_caught(log_dir: Path) -> None:
    fill(log_dir, 3, Identity.generate())
    tamper(
        log_dir,
        "UPDATE events SET content = (SELECT content FROM events WHERE seq = 4) WHERE seq = 3",
    )
    expect_tamper(log_dir, 3, "content was replaced")


def test_content_removed_without_a_prune_is_caught(log_dir: Path) -> None:
    fill(log_dir, 3, Identity.generate())
    tamper(log_dir, "UPDATE events SET content = NULL WHERE seq = 4")
    expect_tamper(log_dir, 4, "removed without a prune")


def test_a_trusted_checkpoint_from_another_device_is_refused(log_dir: Path, tmp_path) -> None:
    fill(log_dir, 1)
    other = tmp_path / "other"
    fill(other, 1)
    with pytest.raises(IntegrityError, match="not signed by this key"):
        verify(log_dir, latest_checkpoint(other))


# -- content is for the officer only ---------------------------------------------------


def test_content_opens_for_the_officer_only(log_dir: Path) -> None:
    officer, operator = Identity.generate(), Identity.generate()
    fill(log_dir, 2, officer)
    with AuditLog(log_dir) as log:
        rows = list(log.events(action="ask"))
        for_officer, for_operator = log.content_opener([officer]), log.content_opener([operator])
    assert all("질문".encode() not in row["content"] for row in rows)
    assert for_officer.open(rows[1]["content"], rows[1]["seq"]) == {"prompt": "질문 1"}
    with pytest.raises(CredentialError, match="sealed to the security officer"):
        for_operator.open(rows[1]["content"], rows[1]["seq"])


def test_each_log_handle_seals_one_content_key(log_dir: Path) -> None:
    officer = Identity.generate()
    fill(log_dir, 3, officer)  # one handle: one key for its three contents
    fill(log_dir, 2)  # a second handle: its own key
    with AuditLog(log_dir) as log:
        keys = log.store.content_keys()
        blobs = [row["content"] for row in log.events(action="ask")]
        opener = log.content_opener([officer])
        opened = [opener.open(blob, n)["prompt"] for n, blob in enumerate(blobs)]
    assert len(keys) == 2
    assert len({blob[1:17] for blob in blobs}) == 2
    assert opened == ["질문 0", "질문 1", "질문 2", "질문 0", "질문 1"]


def test_an_altered_content_key_is_caught(log_dir: Path) -> None:
    fill(log_dir, 2, Identity.generate())
    conn = sqlite3.connect(log_dir / "log.db", isolation_level=None)
    conn.execute("DROP TRIGGER content_keys_no_update")
    conn.execute("UPDATE content_keys SET sealed = sealed || x'00'")
    conn.close()
    expect_tamper(log_dir, 3, "key is missing or altered")


def test_without_an_officer_only_metadata_is_kept(log_dir: Path) -> None:
    fill(log_dir, 2)
    with AuditLog(log_dir) as log:
        assert not log.records_content
        assert all(row["content"] is None for row in log.events())
        assert all(b"content_sha256" not in row["leaf"] for row in log.events())


def test_a_policy_that_requires_content_refuses_without_an_officer(log_dir: Path) -> None:
    with pytest.raises(AuditError, match="no security officer key"):
        AuditLog(log_dir, require_content=True)
    fill(log_dir, 1, Identity.generate())
    with AuditLog(log_dir, require_content=True) as log:
        assert log.records_content


def test_prune_drops_content_but_verification_passes(log_dir: Path) -> None:
    officer = Identity.generate()
    fill(log_dir, 4, officer)
    cutoff = time.time_ns() // 1000
    with AuditLog(log_dir) as log:
        log.record(ask(99), {"prompt": "kept"})
        through, dropped = log.prune(cutoff, LEE, {"before": "test"})
        assert dropped == 4
        rows = {row["seq"]: row for row in log.events()}
        report = log.verify()
    assert through == 6  # genesis, officer change, four asks
    assert all(rows[seq]["content"] is None for seq in range(1, through + 1))
    assert rows[7]["content"] is not None
    assert rows[8]["leaf"].startswith(b'{"action":"prune",')
    assert report.pruned == 4
    assert report.last_seq == 8


# -- fail closed, concurrency, crashes ---------------------------------------------------


def test_a_log_locked_past_the_timeout_fails_the_write(log_dir: Path) -> None:
    log = AuditLog(log_dir, lock_timeout=0.2)
    holder = sqlite3.connect(log_dir / "log.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(AuditError, match=r"locked by another process for more than 0\.2 s"):
            log.record(ask(1))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert log.record(ask(2)) == 2  # nothing half-written: the failed event took no seq
    log.close()


def test_a_failed_heartbeat_fails_the_next_action(log_dir: Path) -> None:
    log = AuditLog(log_dir, lock_timeout=0.1)
    holder = sqlite3.connect(log_dir / "log.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    log.start_heartbeat(KIM, seconds=0.05)
    deadline = time.monotonic() + 30
    while log._failure is None and time.monotonic() < deadline:
        time.sleep(0.05)
    holder.execute("ROLLBACK")
    holder.close()
    with pytest.raises(AuditError, match="locked"):
        log.record(ask(1))
    log.close()


def test_heartbeats_are_recorded_and_signed(log_dir: Path) -> None:
    log = AuditLog(log_dir)
    log.start_heartbeat(KIM, seconds=0.02)
    deadline = time.monotonic() + 30
    while len(list(log.events(action="heartbeat"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    log.close()
    beats = [row["seq"] for row in AuditLog(log_dir).events(action="heartbeat")]
    assert len(beats) >= 3
    report = verify(log_dir)
    assert report.unsigned_tail == 0
    assert report.checkpoints >= 1 + len(beats)


def _append_many(args: tuple[str, int, int]) -> None:
    directory, worker, count = args
    with AuditLog(Path(directory), lock_timeout=60) as log:
        for n in range(count):
            log.record(Event(Actor(f"user{worker}", "operator"), "ask", details={"n": n}))


def test_concurrent_writers_never_fork_the_chain(log_dir: Path) -> None:
    workers, per_worker = 6, 40
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers) as pool:  # all start on an empty directory at once
        pool.map(_append_many, [(str(log_dir), w, per_worker) for w in range(workers)])
    report = verify(log_dir)
    assert report.last_seq == 1 + workers * per_worker
    with AuditLog(log_dir) as log:
        users = [row for row in log.events(action="ask")]
    assert len(users) == workers * per_worker


WRITER = """
import sys
from pathlib import Path
from appliance.audit import Actor, AuditLog, Event
log = AuditLog(Path(sys.argv[1]))
print("ready", flush=True)
n = 0
while True:
    log.record(Event(Actor("crash", "operator"), "ask", details={"n": n}), {"prompt": "x" * 500})
    n += 1
"""


def test_kill_9_at_any_moment_leaves_a_log_that_verifies(log_dir: Path) -> None:
    fill(log_dir, 1, Identity.generate())
    chooser = random.Random(4)
    last = 0
    for _ in range(12):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(log_dir)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(chooser.uniform(0.0, 0.3))
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        report = verify(log_dir)
        assert report.last_seq >= last
        last = report.last_seq
    assert last > 20  # the writers did write between the kills


def test_threads_sharing_one_log_keep_one_chain(log_dir: Path) -> None:
    log = AuditLog(log_dir)

    def work() -> None:
        for n in range(30):
            log.record(ask(n))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    assert verify(log_dir).last_seq == 121


def test_the_device_key_must_match_the_log(log_dir: Path) -> None:
    fill(log_dir, 1)
    (log_dir / "device.key").unlink()
    with pytest.raises(AuditError, match="device key does not match"):
        AuditLog(log_dir)


# -- exports -------------------------------------------------------------------------


def export(log_dir: Path, out: Path, **options) -> None:
    with AuditLog(log_dir) as log, open(out, "wb") as sink:
        write_export(log, sink, LEE, **options)


def public_key(log_dir: Path):
    with AuditLog(log_dir) as log:
        return log.key.public


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_an_export_verifies_on_its_own(log_dir: Path, tmp_path: Path, fmt: str) -> None:
    fill(log_dir, 3, Identity.generate())
    out = tmp_path / f"export.{fmt}"
    export(log_dir, out, fmt=fmt)
    result = verify_export(out, public_key(log_dir))
    assert result.report.last_seq == 6  # genesis, officer, 3 asks, the export itself
    assert result.checkpoint.seq == 6
    assert result.fmt == fmt


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_an_export_edited_after_signing_is_refused(log_dir: Path, tmp_path: Path, fmt) -> None:
    fill(log_dir, 3)
    out = tmp_path / f"export.{fmt}"
    export(log_dir, out, fmt=fmt)
    data = out.read_bytes()
    out.write_bytes(data.replace(b"kim", b"lee", 1))
    with pytest.raises(IntegrityError, match="modified after it was signed"):
        verify_export(out, public_key(log_dir))
    out.write_bytes(data[: data.rindex(b"\n", 0, len(data) - 1) + 1])  # manifest cut off
    with pytest.raises(IntegrityError, match="does not end with a signed manifest"):
        verify_export(out, public_key(log_dir))


def test_an_export_extends_the_trusted_checkpoint(log_dir: Path, tmp_path: Path) -> None:
    fill(log_dir, 2)
    first = tmp_path / "first.jsonl"
    export(log_dir, first)
    trusted = verify_export(first, public_key(log_dir)).checkpoint
    fill(log_dir, 2)
    full, since = tmp_path / "full.jsonl", tmp_path / "since.jsonl"
    export(log_dir, full)
    export(log_dir, since, since=trusted)
    for path in (full, since):
        result = verify_export(path, public_key(log_dir), trusted)
        assert result.report.trusted_seq == trusted.seq
    assert verify_export(since, public_key(log_dir)).report.first_seq == trusted.seq + 1


def test_an_export_that_drops_the_tail_since_the_trusted_checkpoint_is_refused(
    log_dir: Path, tmp_path: Path
) -> None:
    fill(log_dir, 5)
    first = tmp_path / "first.jsonl"
    export(log_dir, first)
    trusted = verify_export(first, public_key(log_dir)).checkpoint
    tamper(log_dir, "DELETE FROM events WHERE seq > 3", "DELETE FROM checkpoints WHERE seq > 3")
    later = tmp_path / "later.jsonl"
    export(log_dir, later)  # a fresh, validly signed export of the shortened log
    assert verify_export(later, public_key(log_dir)).report.last_seq == 4
    with pytest.raises(TamperError, match="before the trusted checkpoint at seq 7") as caught:
        verify_export(later, public_key(log_dir), trusted)
    assert caught.value.seq == 5
    fill(log_dir, 5)  # the shortened log grows past the trusted seq: a fork
    forked = tmp_path / "forked.jsonl"
    export(log_dir, forked)
    with pytest.raises(TamperError, match="history was rewritten") as caught:
        verify_export(forked, public_key(log_dir), trusted)
    assert caught.value.seq == trusted.seq


def test_an_export_from_another_device_is_refused(log_dir: Path, tmp_path: Path) -> None:
    fill(log_dir, 1)
    out = tmp_path / "e.jsonl"
    export(log_dir, out)
    other = tmp_path / "other"
    fill(other, 1)
    with pytest.raises(IntegrityError, match="another device key"):
        verify_export(out, public_key(other))


def test_an_export_starting_after_the_trusted_checkpoint_is_refused(log_dir, tmp_path) -> None:
    fill(log_dir, 2)
    trusted = latest_checkpoint(log_dir)
    fill(log_dir, 2)
    late = tmp_path / "late.jsonl"
    export(log_dir, late, since=trusted.seq + 2)
    with pytest.raises(IntegrityError, match="starts after the trusted checkpoint"):
        verify_export(late, public_key(log_dir), trusted)


# -- long logs are walked in parallel ranges ---------------------------------------------


def parallel_verify(log_dir: Path, trusted: Checkpoint | None = None):
    with AuditLog(log_dir) as log:
        return log.verify(trusted=trusted, workers=3, parallel_from=1)


def test_parallel_ranges_prove_what_one_walk_proves(log_dir: Path) -> None:
    fill(log_dir, 40, Identity.generate())
    assert parallel_verify(log_dir).as_json() == verify(log_dir).as_json()


@pytest.mark.parametrize(
    ("statements", "seq", "reason"),
    [
        (["UPDATE events SET leaf = replace(leaf, 'kim', 'lee') WHERE seq = 35"], 35, "modified"),
        (["DELETE FROM events WHERE seq = 15"], 15, "missing"),  # a range boundary
        (["DELETE FROM events WHERE seq = 29"], 29, "missing"),  # the end of a range
        (
            [
                "UPDATE events SET leaf = replace(leaf, 'kim', 'lee') WHERE seq = 35",
                "UPDATE checkpoints SET signature = zeroblob(64) WHERE seq = 12",
            ],
            12,
            "signature is invalid",
        ),
    ],
)
def test_parallel_ranges_report_the_first_bad_seq(log_dir: Path, statements, seq, reason) -> None:
    fill(log_dir, 40, Identity.generate())
    tamper(log_dir, *statements)
    with pytest.raises(TamperError) as caught:
        parallel_verify(log_dir)
    assert (caught.value.seq, reason in caught.value.reason) == (seq, True), caught.value


def test_a_mistyped_field_fails_verification(log_dir: Path) -> None:
    fill(log_dir, 3)
    tamper(log_dir, "UPDATE events SET leaf = 42 WHERE seq = 3")
    expect_tamper(log_dir, 3, "wrong type")


def test_details_cannot_claim_the_content_key(log_dir: Path) -> None:
    event = Event(KIM, "ask", details={"nested": {"content_sha256": "ab"}})
    with AuditLog(log_dir) as log, pytest.raises(ValueError, match="content_sha256"):
        log.record(event)
    assert verify(log_dir).last_seq == 1  # nothing was written
