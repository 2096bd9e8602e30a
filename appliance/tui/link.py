"""The UI's link to the appliance service: one connection, one signed-in session.

Every screen asks through here and the service decides and audits; the UI
keeps only what it was sent. Requests are taken in turn on the connection:
an answer holds it while it streams (a cancel only sends), and the periodic
session check skips its turn rather than wait.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from appliance.errors import ApplianceError, ServiceError
from appliance.identity import Principal
from appliance.policy import Level
from appliance.service import Answer, Client

CONVERSATION = "ui"  # the name the service keeps this screen's conversation under


def levels_of(hello: dict[str, Any]) -> list[Level]:
    """The policy's levels as the service described them, lowest first."""
    try:
        levels = sorted(
            (
                Level(str(x["id"]), int(x["rank"]), str(x["ko"]), str(x["en"]), str(x["colour"]))
                for x in hello.get("levels", [])
            ),
            key=lambda level: level.rank,
        )
    except (KeyError, TypeError, ValueError):
        levels = []
    if not levels:
        raise ServiceError("the appliance service did not describe its classification levels")
    return levels


def greet(path: Path) -> dict[str, Any]:
    """What the service says before sign-in (policy, language, levels)."""
    with Client(path, timeout=30) as client:
        return client.hello()


class Link(Client):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._turn = threading.Lock()
        self.principal = Principal("", "", "")
        self.level_id = ""

    def sign_in(
        self, user: str | None, password: str | None, level: str | None = None
    ) -> dict[str, Any]:
        result = super().sign_in(user, password, level)
        self.principal = Principal(
            str(result.get("user")),
            str(result.get("role")),
            str(result.get("clearance")),
            dev=bool(result.get("development")),
            must_change=bool(result.get("must_change")),
        )
        self.level_id = str(result.get("level"))
        return result

    @property
    def saves_conversations(self) -> bool:
        return bool(self.signed_in.get("conversations"))

    def call(
        self,
        op: str,
        *,
        on_data: Callable[[str], object] | None = None,
        on_progress: Callable[[dict[str, Any]], object] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        with self._turn:
            return super().call(op, on_data=on_data, on_progress=on_progress, **fields)

    @contextlib.contextmanager
    def asking(self, prompt: str, **options: Any) -> Iterator[Answer]:
        """An answer, holding the connection until it ends (or is abandoned)."""
        with self._turn:
            answer = self.ask(prompt, **options)
            try:
                yield answer
            finally:
                if not answer.ended:  # abandoned: read on to its end
                    with contextlib.suppress(Exception):
                        answer.cancel()
                        answer.text()

    def check(self, *, active: bool) -> None:
        """Raise if the service ended the session (idle, account changed). `active`: the
        person at the UI did something since the last check. While an answer holds the
        connection the check skips its turn: the answer would hear the end first."""
        self._unless_answering("check", active=active)

    def sign_out(self) -> None:
        """End the session (the service records the logout), never waiting for an answer:
        while one holds the connection, closing it ends the session just the same."""
        with contextlib.suppress(ApplianceError):
            self._unless_answering("sign_out")
        self.close()

    def _unless_answering(self, op: str, **fields: Any) -> None:
        """`op` now, or nothing while an answer holds the connection."""
        if not self._turn.acquire(blocking=False):
            return
        try:
            super().call(op, **fields)
        finally:
            self._turn.release()
