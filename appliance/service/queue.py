"""Answers waiting for the engine: one model copy, taken in turn, with limits.

The engine answers `slots` requests at once (one in-process, one per
llama-server slot); the rest queue in arrival order, one worker thread per
slot taking them up. The policy bounds the queue as a whole and what one user
may have waiting or running; beyond either, a request is refused at once with
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
    def __init__(self, max_queued: int, max_per_user: int, slots: int = 1) -> None:
        self.max_queued = max_queued
        self.max_per_user = max_per_user
        self.slots = slots
        self._waiting: deque[Job] = deque()
        self._running: list[Job] = []
        self._changed = threading.Condition()
        self._closed = False
        self.answered = 0
        self._threads = [
            threading.Thread(target=self._work, name=f"engine-{slot}", daemon=True)
            for slot in range(slots)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, job: Job) -> int:
        """Queue `job`; return how many answers are ahead of it, or refuse with BusyError."""
        with self._changed:
            starts_now = len(self._waiting) < self.slots - len(self._running)
            ahead = 0 if starts_now else len(self._waiting) + len(self._running)
            if self._closed:
                raise BusyError("the appliance service is shutting down", code="shutting_down")
            mine = sum(j.user == job.user for j in (*self._waiting, *self._running))
            if mine >= self.max_per_user:
                raise BusyError(
                    f"{job.user} already has {mine} answer(s) waiting or running, the most "
                    "the policy allows; wait for one to finish or cancel it",
                    code="user_limit",
                    count=mine,
                )
            if ahead and len(self._waiting) >= self.max_queued:  # a free slot takes it now
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
            now = time.monotonic()
            return {
                "slots": self.slots,
                "running": [
                    {"user": job.user, "seconds": round(now - job.started)}
                    for job in self._running
                    if job.started is not None
                ],
                "waiting": [job.user for job in self._waiting],
                "answered": self.answered,
            }

    def close(self, timeout: float) -> list[Job]:
        """Refuse new work; give running answers `timeout` seconds, then cancel them.

        Returns the jobs that never ran (their owners are told the service stopped).
        """
        with self._changed:
            self._closed = True
            dropped = list(self._waiting)
            self._waiting.clear()
            self._changed.notify_all()
            deadline = time.monotonic() + timeout
            while self._running and time.monotonic() < deadline:
                self._changed.wait(deadline - time.monotonic())
            running = list(self._running)
        for job in running:
            job.cancel()
        for thread in self._threads:
            thread.join(timeout=30)
        return dropped

    def _work(self) -> None:
        while True:
            with self._changed:
                while not self._waiting and not self._closed:
                    self._changed.wait()
                if not self._waiting:
                    return
                job = self._waiting.popleft()
                self._running.append(job)
                job.started = time.monotonic()
            try:
                job.execute(job)
            finally:
                with self._changed:
                    self._running.remove(job)
                    self.answered += 1
                    self._changed.notify_all()
