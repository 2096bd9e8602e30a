"""Audit log: durable appends against raw SQLite, and verification speed.

1. Durable appends/s: `AuditLog.record` (canonical JSON, content sealed to
   the officer, hash chain, BEGIN IMMEDIATE, WAL + synchronous=FULL, a signed
   checkpoint when one is due) against raw sqlite3 inserting the very same
   rows, one durable transaction each. Rounds alternate so both see the same
   disk. Target: ratio >= 0.8.
2. Verify rate: events/s for `AuditLog.verify` over a large log (every event
   with sealed content, a checkpoint every 1,000 events). Target >= 200,000.

Last line: `audit_append_vs_raw_sqlite: <ratio>`.
"""

from __future__ import annotations

import hashlib
import sqlite3
import tempfile
import time
from pathlib import Path

from appliance.audit import Actor, AuditLog, Event
from appliance.audit.content import ContentSealer
from appliance.audit.store import Pending
from appliance.seal import Identity

ROUNDS = 20
PER_ROUND = 25
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


def bench_appends(root: Path) -> float:
    officer = Identity.generate()
    ours_seconds = raw_seconds = 0.0
    count = 0
    raw = raw_database(root / "raw.db")
    with AuditLog(root / "ours") as log:
        log.set_officers([officer.recipient], ACTOR)
        for _ in range(ROUNDS):
            first = log.store.head_seq() + 1
            start = time.perf_counter()
            for n in range(PER_ROUND):
                log.record(event(n), PROMPT)
            ours_seconds += time.perf_counter() - start
            rows = list(log.store.rows(first - 1))
            start = time.perf_counter()
            for row in rows:
                raw.execute("BEGIN IMMEDIATE")
                raw.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?)", row)
                raw.execute("COMMIT")
            raw_seconds += time.perf_counter() - start
            count += PER_ROUND
    raw.close()
    ours_rate, raw_rate = count / ours_seconds, count / raw_seconds
    print(f"durable appends: appliance {ours_rate:,.0f}/s, raw sqlite3 {raw_rate:,.0f}/s")
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
                batch.append(Pending(event(n), blob, hashlib.sha256(blob).hexdigest(), key))
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
        rate = bench_verify(root)
    print(f"audit_verify_events_per_s: {rate:.0f} (target >= 200000)")
    print(f"audit_append_vs_raw_sqlite: {ratio:.3f}")


if __name__ == "__main__":
    main()
