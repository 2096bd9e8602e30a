"""Answers waiting for the engine: one model copy, taken in turn, with limits.

The in-process engine answers one request at a time, so answers queue in
arrival order. The policy bounds the queue as a whole and what one user may
have waiting or running; beyond either, a request is refused at once with
how many are ahead, rather than left to hang. A cancelled request leaves the
queue at once; a running one is stopped at its next token.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from appliance.errors import BusyError


@dataclass(eq=False)
class Job:
    """One requested answer. `execute` runs on the engine's thread."""

    user: str
    execute: Callable[[Job], None]
    cancelled: threading.Event = field(default_factory=threading.Event)
    on_cancel: Callable[[], None] | None = None  # stops a running answer
    started: float | None = None

    def cancel(self) -> None:
        self.cancelled.set()
        if self.on_cancel is not None:
            self.on_cancel()


class AnswerQueue:
    def __init__(self, max_queued: int, max_per_user: int) -> None:
        self.max_queued = max_queued
        self.max_per_user = max_per_user
        self._waiting: deque[Job] = deque()
        self._running: Job | None = None
        self._changed = threading.Condition()
        self._closed = False
        self.answered = 0
        self._thread = threading.Thread(target=self._work, name="engine", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> int:
        """Queue `job`; return how many answers are ahead of it, or refuse with BusyError."""
        with self._changed:
            ahead = len(self._waiting) + (self._running is not None)
            if self._closed:
                raise BusyError("the appliance service is shutting down", code="shutting_down")
            mine = sum(j.user == job.user for j in self._waiting) + (
                self._running is not None and self._running.user == job.user
            )
            if mine >= self.max_per_user:
                raise BusyError(
                    f"{job.user} already has {mine} answer(s) waiting or running, the most "
                    "the policy allows; wait for one to finish or cancel it",
                    code="user_limit",
                    count=mine,
                )
            if ahead and len(self._waiting) >= self.max_queued:  # an idle engine takes it now
                raise BusyError(
                    f"the appliance is busy: {ahead} requests ahead; try again shortly",
                    code="busy",
                    ahead=ahead,
                )
            self._waiting.append(job)
            self._changed.notify_all()
            return ahead

    def withdraw(self, job: Job) -> bool:
        """Take a job out of the queue before it runs; False once it runs or ran."""
        with self._changed:
            try:
                self._waiting.remove(job)
            except ValueError:
                return False
            self._changed.notify_all()
            return True

    def snapshot(self) -> dict[str, Any]:
        with self._changed:
            running = self._running
            return {
                "running": None
                if running is None or running.started is None
                else {"user": running.user, "seconds": round(time.monotonic() - running.started)},
                "waiting": [job.user for job in self._waiting],
                "answered": self.answered,
            }

    def close(self, timeout: float) -> list[Job]:
        """Refuse new work; give the running answer `timeout` seconds, then cancel it.

        Returns the jobs that never ran (their owners are told the service stopped).
        """
        with self._changed:
            self._closed = True
            dropped = list(self._waiting)
            self._waiting.clear()
            self._changed.notify_all()
            deadline = time.monotonic() + timeout
            while self._running is not None and time.monotonic() < deadline:
                self._changed.wait(deadline - time.monotonic())
            running = self._running
        if running is not None:
            running.cancel()
        self._thread.join(timeout=30)
        return dropped

    def _work(self) -> None:
        while True:
            with self._changed:
                while not self._waiting and not self._closed:
                    self._changed.wait()
                if not self._waiting:
                    return
                job = self._running = self._waiting.popleft()
                job.started = time.monotonic()
            try:
                job.execute(job)
            finally:
                with self._changed:
                    self._running = None
                    self.answered += 1
                    self._changed.notify_all()
