"""Group commit: threads of one process that record at once share one durable transaction."""

from __future__ import annotations

import json
import os
import random
import shlex
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from appliance.audit import Actor, AuditLog, Event
from appliance.errors import AuditError
from appliance.seal import Identity
from tests.conftest import in_private_mounts

OFFICER = Actor("lee", "officer")
THREADS = 8


def ask(thread: int, n: int) -> Event:
    details = {"thread": thread, "n": n}
    return Event(Actor(f"user{thread}", "operator"), "ask", "model@1", details=details)


def prompt(thread: int, n: int) -> dict[str, str]:
    return {"prompt": f"스레드 {thread}의 질문 {n}"}


def stored(log: AuditLog) -> dict[int, dict]:
    """Every event's leaf as a dict, by seq."""
    return {row["seq"]: json.loads(row["leaf"]) for row in log.events()}


def run_threads(count: int, work: Callable[[int], None]) -> None:
    threads = [threading.Thread(target=work, args=(thread,)) for thread in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@pytest.fixture
def officer_log(tmp_path: Path) -> tuple[Path, Identity]:
    """A log whose content is sealed to an officer."""
    officer = Identity.generate()
    with AuditLog(tmp_path / "audit") as log:
        log.set_officers([officer.recipient], OFFICER)
    return tmp_path / "audit", officer


def test_threads_recording_at_once_each_get_their_own_seq_in_one_chain(officer_log) -> None:
    directory, officer = officer_log
    per_thread = 25
    seqs: dict[tuple[int, int], int] = {}

    with AuditLog(directory) as log:
        first = log.store.head_seq() + 1

        def work(thread: int) -> None:
            for n in range(per_thread):
                seqs[thread, n] = log.record(ask(thread, n), prompt(thread, n))

        run_threads(THREADS, work)
        report = log.verify()
        leaves = stored(log)
        opener = log.content_opener([officer])
        contents = {row["seq"]: row["content"] for row in log.events(action="ask")}

    total = THREADS * per_thread
    assert sorted(seqs.values()) == list(range(first, first + total))  # distinct, no gaps
    assert report.last_seq == first + total - 1
    for (thread, n), seq in seqs.items():
        assert leaves[seq]["details"] == {"thread": thread, "n": n}
        assert opener.open(contents[seq], seq) == prompt(thread, n)
    for thread in range(THREADS):  # each thread's events in the order it recorded them
        mine = [seqs[thread, n] for n in range(per_thread)]
        assert mine == sorted(mine)
    times = [leaves[seq]["time_us"] for seq in sorted(leaves)]
    assert times == sorted(times)  # the chain order is the commit order


def hold_write_lock(directory: Path) -> sqlite3.Connection:
    """A writer outside this handle (as another process is): it holds the write lock."""
    holder = sqlite3.connect(directory / "log.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    return holder


def queue_behind_a_blocked_leader(
    log: AuditLog, outcomes: dict[int, int | str], work: Callable[[int], int]
) -> list[threading.Thread]:
    """Thread 0 leads a commit that waits for the write lock; 1..7 queue behind it."""

    def run(thread: int) -> None:
        try:
            outcomes[thread] = work(thread)
        except AuditError as exc:
            outcomes[thread] = str(exc)

    threads = [threading.Thread(target=run, args=(thread,)) for thread in range(THREADS)]
    threads[0].start()
    wait_until(lambda: log._writing)
    for thread in threads[1:]:
        thread.start()
    wait_until(lambda: len(log._queue) == THREADS - 1)
    return threads


def test_callers_queued_during_a_commit_are_committed_together(tmp_path: Path) -> None:
    directory = tmp_path / "audit"
    outcomes: dict[int, int | str] = {}
    with AuditLog(directory, lock_timeout=60) as log:
        holder = hold_write_lock(directory)
        threads = queue_behind_a_blocked_leader(
            log, outcomes, lambda thread: log.record(ask(thread, 0))
        )
        holder.execute("COMMIT")
        for thread in threads:
            thread.join()
        leaves = stored(log)
        report = log.verify()

    assert log.commits == 2  # the leader alone, then the seven queued behind it
    assert outcomes[0] == 2
    assert sorted(outcomes.values()) == list(range(2, 2 + THREADS))
    group = [leaves[seq] for seq in range(3, 3 + THREADS - 1)]
    assert len({leaf["time_us"] for leaf in group}) == 1  # one transaction, one time
    assert report.last_seq == 1 + THREADS


def test_a_checkpoint_one_caller_asks_for_signs_its_whole_group(tmp_path: Path) -> None:
    directory = tmp_path / "audit"
    outcomes: dict[int, int | str] = {}
    with AuditLog(directory, lock_timeout=60, checkpoint_seconds=3600) as log:
        holder = hold_write_lock(directory)
        threads = queue_behind_a_blocked_leader(
            log, outcomes, lambda thread: log.record(ask(thread, 0), checkpoint=thread == 3)
        )
        holder.execute("COMMIT")
        for thread in threads:
            thread.join()
        later = log.record(ask(8, 0))  # nobody asks, and the last one is recent: unsigned
        signed = set(log.store.checkpoints())
        report = log.verify()
    assert outcomes[0] == 2
    assert later == 10
    # Genesis; the handle's first commit (a checkpoint was due); the group's last event.
    assert signed == {1, 2, 9}
    assert report.unsigned_tail == 1


def test_a_failed_commit_fails_every_caller_of_its_group_and_stores_none(
    officer_log,
) -> None:
    directory, officer = officer_log
    outcomes: dict[int, int | str] = {}
    with AuditLog(directory, lock_timeout=60) as log:
        head = log.store.head_seq()
        holder = hold_write_lock(directory)
        threads = queue_behind_a_blocked_leader(
            log, outcomes, lambda thread: log.record(ask(thread, 0), prompt(thread, 0))
        )
        # The leader's event (head + 1) passes; the group's first row goes in, its
        # second is refused: the whole group must roll back.
        holder.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON events "
            f"WHEN NEW.seq > {head + 2} BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
        )
        holder.execute("COMMIT")
        for thread in threads:
            thread.join()
        assert log.commits == 1  # the leader's own event went in (seq head + 1)
        assert outcomes[0] == head + 1
        failures = [outcomes[thread] for thread in range(1, THREADS)]
        assert all(f"cannot write the audit log {directory}" in str(f) for f in failures)
        assert all("disk on fire" in str(failure) for failure in failures)
        assert log.store.head_seq() == head + 1  # nothing of the group is visible
        holder.execute("DROP TRIGGER refuse")
        holder.close()
        # The log goes on where it stood: no gap, no event of the failed group.
        seq = log.record(ask(99, 0), prompt(99, 0))
        leaves = stored(log)
        report = log.verify()
        opener = log.content_opener([officer])
        content = next(log.events(action="ask", user="user99"))["content"]
    assert seq == head + 2
    assert report.last_seq == head + 2
    assert [leaves[s]["details"]["thread"] for s in (head + 1, head + 2)] == [0, 99]
    assert opener.open(content, seq) == prompt(99, 0)


# -- a disk that fills up under eight writers ----------------------------------------------

FILLER = """
import json, os, sqlite3, sys, threading, time
from pathlib import Path
from appliance.audit import Actor, AuditLog, Event
from appliance.errors import AuditError
directory = Path(sys.argv[1])
log = AuditLog(directory, lock_timeout=60)
outcomes = []

def record(thread, n, text):
    event = Event(Actor(f"user{thread}", "operator"), "ask", details={"thread": thread, "n": n})
    try:
        seq = log.record(event, {"prompt": f"{thread}/{n} {text}"})
        outcomes.append([thread, n, seq, None])
    except AuditError as exc:
        outcomes.append([thread, n, None, str(exc)])

def until(condition):
    while not condition():
        time.sleep(0.005)

# While there is room: eight writers, eight events each.
writers = [
    threading.Thread(target=lambda t=t: [record(t, n, "x" * 100) for n in range(8)])
    for t in range(8)
]
for writer in writers: writer.start()
for writer in writers: writer.join()

# Then a commit waits for the write lock, seven callers queue behind it, and the disk fills.
holder = sqlite3.connect(directory / "log.db", isolation_level=None)
holder.execute("BEGIN IMMEDIATE")
writers = [threading.Thread(target=record, args=(t, 8, "y" * 3000)) for t in range(8)]
writers[0].start()
until(lambda: log._writing)
for writer in writers[1:]: writer.start()
until(lambda: len(log._queue) == 7)
filler = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT)
try:
    while True:
        os.write(filler, bytes(4096))
except OSError:
    pass
holder.execute("ROLLBACK")
for writer in writers: writer.join()
print(json.dumps(outcomes))
"""


def test_a_full_disk_fails_every_caller_of_the_failed_commits_and_loses_nothing(
    officer_log, tmp_path: Path
) -> None:
    directory, officer = officer_log
    live, copy = tmp_path / "live", tmp_path / "copy"
    live.mkdir()
    copy.mkdir()
    # The log moves to a 1 MiB tmpfs for the writers, and is copied out after.
    script = " && ".join(
        [
            f"mount -t tmpfs -o size=1m tmpfs {shlex.quote(str(live))}",
            f"cp -a {shlex.quote(str(directory))}/. {shlex.quote(str(live))}",
            f"{shlex.quote(sys.executable)} -c {shlex.quote(FILLER)} {shlex.quote(str(live))}",
            f"rm {shlex.quote(str(live / 'filler'))}",
            f"cp -a {shlex.quote(str(live))}/. {shlex.quote(str(copy))}",
        ]
    )
    result = in_private_mounts(script, tmp_path)
    assert result.returncode == 0, result.stderr
    outcomes = json.loads(result.stdout)
    recorded = {(thread, n): seq for thread, n, seq, _ in outcomes if seq is not None}
    failed = {(thread, n): error for thread, n, seq, error in outcomes if seq is None}
    assert set(recorded) == {(thread, n) for thread in range(THREADS) for n in range(8)}
    # The lone commit and the group of seven queued behind it: every caller failed.
    assert set(failed) == {(thread, 8) for thread in range(THREADS)}
    assert all("full" in error for error in failed.values()), failed

    with AuditLog(copy) as log:
        report = log.verify()
        rows = {row["seq"]: row for row in log.events(action="ask")}
        opener = log.content_opener([officer])
    by_event = {
        (leaf["details"]["thread"], leaf["details"]["n"]): seq
        for seq, leaf in ((seq, json.loads(row["leaf"])) for seq, row in rows.items())
    }
    assert by_event == recorded  # every event a caller saw recorded, and no failed one
    assert report.last_seq == max(recorded.values())
    for (thread, n), seq in recorded.items():
        assert opener.open(rows[seq]["content"], seq) == {"prompt": f"{thread}/{n} " + "x" * 100}


# -- kill -9 under eight writer threads -----------------------------------------------------

WRITERS = """
import os, sys, threading
from pathlib import Path
from appliance.audit import Actor, AuditLog, Event
log = AuditLog(Path(sys.argv[1]))
round_ = int(sys.argv[2])

def work(thread):
    n = 0
    while True:
        details = {"thread": thread, "n": n, "round": round_}
        event = Event(Actor(f"user{thread}", "operator"), "ask", details=details)
        seq = log.record(event, {"prompt": f"{round_}/{thread}/{n}"})
        # One write of under PIPE_BUF bytes: whole lines, even from eight threads,
        # which the pipe keeps through the kill (the host stays up: no fsync needed).
        os.write(1, f"{seq} {thread} {n}\\n".encode())
        n += 1

os.write(1, b"ready\\n")
for thread in range(8):
    threading.Thread(target=work, args=(thread,), daemon=True).start()
threading.Event().wait()
"""


def test_kill_9_under_eight_writers_loses_no_event_a_caller_saw_recorded(officer_log) -> None:
    directory, officer = officer_log
    chooser = random.Random(8)
    told: dict[int, tuple[int, int, int]] = {}  # seq -> (round, thread, n)
    for round_ in range(6):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITERS, str(directory), str(round_)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout is not None
        assert writer.stdout.readline() == "ready\n"
        time.sleep(chooser.uniform(0.05, 0.4))
        os.kill(writer.pid, signal.SIGKILL)
        # The pipe keeps what the writers wrote; a line cut by the kill is ignored.
        output, _ = writer.communicate()
        for line in output.splitlines(keepends=True):
            if line.endswith("\n"):
                seq, thread, n = map(int, line.split())
                assert seq not in told, f"seq {seq} given twice"
                told[seq] = (round_, thread, n)
        with AuditLog(directory) as log:
            report = log.verify()  # the chain is whole after every kill
        assert report.last_seq >= max(told, default=0)

    with AuditLog(directory) as log:
        rows = {row["seq"]: row for row in log.events(action="ask")}
        opener = log.content_opener([officer])
    assert len(told) > 20  # the writers did write between the kills
    for seq, (round_, thread, n) in told.items():
        leaf = json.loads(rows[seq]["leaf"])
        assert leaf["details"] == {"thread": thread, "n": n, "round": round_}
        assert opener.open(rows[seq]["content"], seq) == {"prompt": f"{round_}/{thread}/{n}"}
