"""Audit log: durable appends against raw SQLite, and verification speed.

1. Durable appends/s, one writer: `AuditLog.record` (canonical JSON, content
   sealed to the officer, hash chain, BEGIN IMMEDIATE, WAL +
   synchronous=FULL, a signed checkpoint when one is due) against raw sqlite3
   inserting the very same rows, one durable transaction each. Rounds
   alternate so both see the same disk. Target: ratio >= 0.8.
2. Durable appends/s, 8 writer threads sharing one `AuditLog` (group
   commit), against the same raw sqlite3 writer (one writer, one commit per
   insert, the same rows and pragmas), rounds alternating. Target: ratio >= 2.
3. Verify rate: events/s for `AuditLog.verify` over a large log (every event
   with sealed content, a checkpoint every 1,000 events). Target >= 200,000.

Last line: `audit_concurrent_vs_raw_sqlite: <ratio>`.
"""

from __future__ import annotations

import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from appliance.audit import Actor, AuditLog, Event
from appliance.audit.content import ContentSealer
from appliance.audit.store import Pending
from appliance.seal import Identity

ROUNDS = 20
PER_ROUND = 25
THREADS = 8
PER_THREAD = 10  # events each writer thread records in a round
VERIFY_EVENTS = 200_000
BATCH = 1_000

ACTOR = Actor("kim", "operator")
PROMPT = {"prompt": "다음 주 훈련 일정과 참가 부대 현황을 요약해 주세요. " * 4}


def event(n: int) -> Event:
    details = {"n": n, "max_tokens": 512, "temperature": 0.7, "seed": n}
    return Event(ACTOR, "ask", "gemma3-270m-q4_k_m@1.0.0", label="대외비", details=details)


def raw_database(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(
        "CREATE TABLE events (seq INTEGER PRIMARY KEY, leaf BLOB NOT NULL, "
        "leaf_hash BLOB NOT NULL, chain BLOB NOT NULL, content BLOB)"
    )
    return conn


def raw_seconds_for(raw: sqlite3.Connection, rows: list[tuple]) -> float:
    """Insert `rows` one durable transaction each; the seconds it took."""
    start = time.perf_counter()
    for row in rows:
        raw.execute("BEGIN IMMEDIATE")
        raw.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?)", row)
        raw.execute("COMMIT")
    return time.perf_counter() - start


def alternate(
    root: Path, name: str, write_round: Callable[[AuditLog], None]
) -> tuple[int, float, float, int]:
    """ROUNDS of `write_round` on the appliance, each followed by raw inserts of its rows.

    Returns (events, appliance seconds, raw seconds, appliance commits).
    """
    officer = Identity.generate()
    ours_seconds = raw_seconds = 0.0
    count = 0
    raw = raw_database(root / f"{name}-raw.db")
    with AuditLog(root / name) as log:
        log.set_officers([officer.recipient], ACTOR)
        commits_before = log.commits
        for _ in range(ROUNDS):
            first = log.store.head_seq() + 1
            start = time.perf_counter()
            write_round(log)
            ours_seconds += time.perf_counter() - start
            rows = list(log.store.rows(first - 1))
            raw_seconds += raw_seconds_for(raw, rows)
            count += len(rows)
        commits = log.commits - commits_before
    raw.close()
    return count, ours_seconds, raw_seconds, commits


def bench_appends(root: Path) -> float:
    def one_writer(log: AuditLog) -> None:
        for n in range(PER_ROUND):
            log.record(event(n), PROMPT)

    count, ours_seconds, raw_seconds, _ = alternate(root, "single", one_writer)
    ours_rate, raw_rate = count / ours_seconds, count / raw_seconds
    print(f"durable appends: appliance {ours_rate:,.0f}/s, raw sqlite3 {raw_rate:,.0f}/s")
    print(f"  ({count} events each, {ROUNDS} alternating rounds, WAL + synchronous=FULL)")
    return ours_rate / raw_rate


def bench_concurrent(root: Path) -> float:
    def writers(log: AuditLog) -> None:
        # Threads start outside the timed part: the barrier releases them together.
        start = threading.Barrier(THREADS + 1)

        def work() -> None:
            start.wait()
            for n in range(PER_THREAD):
                log.record(event(n), PROMPT)

        threads = [threading.Thread(target=work) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        start.wait()
        for thread in threads:
            thread.join()

    count, ours_seconds, raw_seconds, commits = alternate(root, "concurrent", writers)
    ours_rate, raw_rate = count / ours_seconds, count / raw_seconds
    print(
        f"durable appends, {THREADS} writer threads: appliance {ours_rate:,.0f}/s "
        f"({count / commits:.1f} events a commit), raw sqlite3 one writer {raw_rate:,.0f}/s"
    )
    print(f"  ({count} events each, {ROUNDS} alternating rounds, WAL + synchronous=FULL)")
    return ours_rate / raw_rate


def bench_verify(root: Path) -> float:
    officer = Identity.generate()
    with AuditLog(root / "big") as log:
        sealer = ContentSealer([officer.recipient])
        key = (sealer.id, sealer.sealed_key)
        for start in range(0, VERIFY_EVENTS, BATCH):
            batch = []
            for n in range(start, start + BATCH):
                blob = sealer.seal(PROMPT)
                batch.append(Pending.of(event(n), blob, key))
            log.record_batch(batch, checkpoint=True)
        began = time.perf_counter()
        report = log.verify()
        seconds = time.perf_counter() - began
    rate = report.events / seconds
    print(
        f"verify: {report.events:,} events, {report.checkpoints} checkpoints in {seconds:.2f} s "
        f"= {rate:,.0f} events/s"
    )
    return rate


def main() -> None:
    # On disk, not tmpfs: fsync must cost what it costs in service.
    with tempfile.TemporaryDirectory(prefix="audit-bench-", dir="/var/tmp") as tmp:
        root = Path(tmp)
        ratio = bench_appends(root)
        concurrent = bench_concurrent(root)
        rate = bench_verify(root)
    print(f"audit_verify_events_per_s: {rate:.0f} (target >= 200000)")
    print(f"audit_append_vs_raw_sqlite: {ratio:.3f}")
    print(f"audit_concurrent_vs_raw_sqlite: {concurrent:.3f}")


if __name__ == "__main__":
    main()
