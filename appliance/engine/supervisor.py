"""Keep one llama-server child alive: restart it when it dies, give up on a crash loop.

A child that dies (killed, out of memory, a llama.cpp abort) costs the answers
it was generating, which end with one clear error, never the service: the
supervisor starts a new child on the same model descriptor and reports the
restart (the service audits it). A child that keeps dying is not restarted
forever: after a few deaths in a short time every further request is refused
with the reason.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable

from appliance.engine.server_process import ServerProcess, describe_exit
from appliance.errors import ApplianceError, EngineError

QUICK_DEATHS = 3  # this many deaths ...
CRASH_WINDOW_SECONDS = 60.0  # ... within this long: give up
WAIT_SECONDS = 600.0  # how long a request waits for a restarting child

Spawn = Callable[[Callable[[], bool]], ServerProcess]  # (cancelled) -> a ready child


class Supervisor:
    """Starts the first child in the caller's thread (its errors are the caller's),
    then watches it from a thread of its own."""

    def __init__(self, spawn: Spawn, on_restart: Callable[[str], None]) -> None:
        self._spawn = spawn
        self._on_restart = on_restart
        self._state = threading.Condition()
        self._closing = False
        self._broken: str | None = None
        self._deaths: deque[float] = deque(maxlen=QUICK_DEATHS)
        self._child: ServerProcess | None = spawn(self._is_closing)
        self._thread = threading.Thread(target=self._watch, name="llama-server-watch", daemon=True)
        self._thread.start()

    def current(self) -> ServerProcess:
        """The running child; waits while one is restarting. EngineError once closed
        or given up."""
        deadline = time.monotonic() + WAIT_SECONDS
        with self._state:
            while True:
                if self._closing:
                    raise EngineError("the engine has been closed")
                if self._broken is not None:
                    raise EngineError(self._broken)
                if self._child is not None:
                    return self._child
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise EngineError("the engine process is restarting and is not ready yet")
                self._state.wait(remaining)

    @property
    def closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        with self._state:
            self._closing = True
            child = self._child
            self._state.notify_all()
        if child is not None:
            child.stop()
        self._thread.join()

    def _is_closing(self) -> bool:
        return self._closing

    def _watch(self) -> None:
        while True:
            with self._state:
                child = self._child
            if child is None:
                return
            code = child.process.wait()
            with self._state:
                if self._closing:
                    return
                self._child = None
            child.stop()  # the socket directory goes; its log is drained
            reason = describe_exit(code)
            replacement = self._restart(reason, child.last_line())
            if replacement is None:
                return
            with self._state:
                closing = self._closing
                if not closing:
                    self._child = replacement
                    self._state.notify_all()
            if closing:
                replacement.stop()
                return
            # The service's hook (it audits the restart): its failure must not end
            # supervision, and it reports its own errors.
            with contextlib.suppress(Exception):
                self._on_restart(reason)

    def _restart(self, reason: str, last_line: str) -> ServerProcess | None:
        now = time.monotonic()
        self._deaths.append(now)
        if len(self._deaths) == QUICK_DEATHS and now - self._deaths[0] < CRASH_WINDOW_SECONDS:
            self._give_up(
                f"the engine process stopped {QUICK_DEATHS} times within "
                f"{CRASH_WINDOW_SECONDS:.0f} seconds (last: {reason}, {last_line}); "
                "it is not restarted again: restart the appliance"
            )
            return None
        try:
            return self._spawn(self._is_closing)
        except ApplianceError as exc:
            self._give_up(f"the engine process stopped ({reason}) and did not restart: {exc}")
            return None

    def _give_up(self, reason: str) -> None:
        with self._state:
            self._broken = reason
            self._state.notify_all()
