"""A signed-in user's saved conversations, as one connection of the service keeps them.

The store (`appliance.conversations`) opens only with the user's password, so
the service opens it at sign-in, the one time it sees the password, and closes
it when the session ends. A SQLite connection belongs to the thread that made
it: one worker thread per open store does all of its work, in order, so the
connection's reader (list, open, delete) and the engine's thread (which saves
a finished answer) never use it at once, and a save that comes after the
session ended fails with a clear message instead of touching a closed store.

A session sees only what it is cleared for: conversations labelled above the
user's clearance are neither listed nor opened (a refusal is audited).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from appliance.conversations import Conversations
from appliance.errors import ApplianceError, ConfigError, UsageError
from appliance.identity import Principal
from appliance.session import Conversation, Session

T = TypeVar("T")
log = logging.getLogger("appliance.service")

CALLS = ("list", "open", "delete")

NOT_SAVED = "conversations are saved only for a user signed in with a password"


def not_saved() -> UsageError:
    return UsageError(NOT_SAVED, code="not_saved")


@dataclass
class Kept(Conversation):
    """A conversation a connection keeps under a name, and the record it is saved as
    (None until its first save; a reset conversation is a new one, with none)."""

    saved_id: str | None = None


class SavedConversations:
    """One session's open store; every call runs on the store's own thread."""

    def __init__(self, store: Conversations, worker: ThreadPoolExecutor) -> None:
        self._store = store
        self._worker = worker
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def open(cls, home: Path, user: str, password: str) -> tuple[SavedConversations, str | None]:
        """The user's store, and a notice when an unreadable older store was set aside."""
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="conversations")
        try:
            store, notice = worker.submit(Conversations.open, home, user, password).result()
        except BaseException:
            worker.shutdown(wait=False)
            raise
        return cls(store, worker), notice

    @classmethod
    def at_sign_in(
        cls, home: Path, principal: Principal, password: str | None
    ) -> tuple[SavedConversations | None, str | None]:
        """The store of a user who signed in with their own password and may ask.

        One that cannot be opened costs the user their saved conversations for
        this session, not the sign-in: the notice says why.
        """
        if password is None or principal.dev or principal.must_change or not principal.may("ask"):
            return None, None
        try:
            return cls.open(home, principal.user, password)
        except (ApplianceError, sqlite3.Error) as exc:
            log.warning("the conversations of %s did not open: %s", principal.user, exc)
            return None, f"your saved conversations could not be opened: {exc}"

    def save(self, conversation: Kept) -> str:
        """Create or replace the conversation's record (its checked messages and label)."""
        assert conversation.label is not None  # a turn that ended ok set it
        conversation.saved_id = self._run(
            self._store.save,
            conversation.saved_id,
            list(conversation.messages),
            conversation.label.id,
        )
        return conversation.saved_id

    def listing(self, session: Session) -> list[dict[str, Any]]:
        """Newest first, those the session's user is cleared for."""
        policy, clearance = session.policy, session.clearance
        visible = {level.id for level in policy.levels if level.rank <= clearance.rank}
        return [
            {
                "id": summary.id,
                "title": summary.title,
                "label": summary.label,
                "label_name": policy.level(summary.label).name(policy.language),
                "updated_us": summary.updated_us,
            }
            for summary in self._run(self._store.summaries, visible)
        ]

    def load(self, session: Session, saved_id: str) -> Kept:
        """A saved conversation as a connection keeps it: no system prompt, its label."""
        try:
            messages, label_id = self._run(self._store.load, saved_id)
        except ConfigError:  # the one ConfigError load raises: no such record
            raise UsageError(
                f"there is no saved conversation {saved_id}", code="no_conversation"
            ) from None
        label = session.policy.level(label_id)
        if label.rank > session.clearance.rank:
            session._refuse_label(label, "saved conversation")  # audited; raises
        return Kept(None, messages, label, saved_id=saved_id)

    def delete(self, saved_id: str) -> None:
        self._run(self._store.delete, saved_id)

    def close(self) -> None:
        """After whatever is under way; later calls fail (the session ended)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._worker.submit(self._store.close)
        self._worker.shutdown(wait=True)

    def _run(self, call: Callable[..., T], *args: Any) -> T:
        with self._lock:
            if self._closed:
                raise UsageError(
                    "the session ended; its saved conversations are closed", code="not_saved"
                )
            future = self._worker.submit(call, *args)
        try:
            return future.result()
        except sqlite3.Error as exc:  # the disk, not the user: said in one line, never a trace
            raise ApplianceError(f"the saved conversations failed: {exc}") from None


def saved_calls(
    saved: SavedConversations | None,
    session: Session,
    args: dict[str, Any],
    kept: dict[str, Kept],
    make_room: Callable[[], None],
) -> dict[str, Any]:
    """One `conversations` call on the connection's store and its named conversations."""
    call = args["call"]
    if call not in CALLS:
        raise UsageError(f"conversations: no call {call[:40]!r}", code="unknown_op")
    if saved is None:
        raise not_saved()
    if call == "list":
        return {"conversations": saved.listing(session)}
    saved_id = args.get("saved_id")
    if saved_id is None:
        raise UsageError(f"conversations {call} needs 'saved_id'", code="bad_field")
    if call == "delete":
        saved.delete(saved_id)
        for conversation in kept.values():
            if conversation.saved_id == saved_id:
                conversation.saved_id = None  # its next save makes a new record
        return {}
    name = args.get("conversation")
    if name is None:
        raise UsageError("conversations open needs 'conversation'", code="bad_field")
    if name not in kept:
        make_room()
    opened = kept[name] = saved.load(session, saved_id)  # what the name held is replaced
    assert opened.label is not None
    return {
        "messages": [{"role": m.role, "content": m.content} for m in opened.messages],
        "label": opened.label.id,
        "label_name": opened.label.name(session.policy.language),
    }
