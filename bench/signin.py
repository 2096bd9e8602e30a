"""Sign-in: the time a wrong password takes for a known name and for an unknown one.

Both paths do the same work (one throttle lookup, one account lookup, one
argon2id verification, one throttle write), so an attacker timing the answers
learns nothing about which names exist. Each timing opens the user database
as a new process does (a decoy hash made per process once cost unknown names
an extra argon2id run). Timed side by side, interleaved, on fresh names so no
wait begins. Last line: `signin_unknown_vs_known: <ratio>`
(1.0 is indistinguishable).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from appliance.identity import Users

RUNS = 40


def timed(home: Path, name: str) -> float:
    start = time.perf_counter()
    with Users(home) as users:
        users.sign_in(name, "not-the-password", max_failures=10_000, lockout_minutes=1)
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        with Users(home) as users:
            for index in range(RUNS):
                users.add(f"user{index}", "operator", "public", "operator-pass-1", 8)
        known, unknown = [], []
        for index in range(RUNS):
            known.append(timed(home, f"user{index}"))
            unknown.append(timed(home, f"nobody{index}"))
    k, u = statistics.median(known), statistics.median(unknown)
    print(f"wrong password, known name:   median {k * 1000:.1f} ms over {RUNS}")
    print(f"wrong password, unknown name: median {u * 1000:.1f} ms over {RUNS}")
    print(f"signin_unknown_vs_known: {u / k:.3f}")


if __name__ == "__main__":
    main()
