"""Saved conversations: encrypted per user, bound to user, id and field, kept on a reset."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from appliance.conversations import Conversations
from appliance.engine import Message
from appliance.errors import IntegrityError

TALK = [Message("user", "서울의 인구는?  about 9.4 million"), Message("assistant", "약 940만 명")]


def test_a_conversation_round_trips_and_lists_newest_first(tmp_path: Path) -> None:
    store, notice = Conversations.open(tmp_path, "kim", "operator-pass-1")
    assert notice is None
    first = store.save(None, TALK, "public")
    second = store.save(None, [Message("user", "second")], "restricted")
    assert store.save(first, [*TALK, Message("user", "more")], "public") == first
    summaries = store.summaries({"public", "restricted"})
    assert [s.id for s in summaries] == [first, second]  # the update made `first` newest
    assert summaries[0].title == "서울의 인구는? about 9.4 million"
    messages, label = store.load(first)
    assert messages == [*TALK, Message("user", "more")]
    assert label == "public"
    store.delete(second)
    assert [s.id for s in store.summaries({"public", "restricted"})] == [first]
    store.close()


def test_the_file_is_private_and_holds_no_plaintext(tmp_path: Path) -> None:
    store, _ = Conversations.open(tmp_path, "kim", "operator-pass-1")
    store.save(None, TALK, "public")
    store.close()
    path = tmp_path / "conversations" / "kim.db"
    assert path.stat().st_mode & 0o777 == 0o600
    raw = b"".join(p.read_bytes() for p in path.parent.iterdir())
    assert "인구".encode() not in raw
    assert b"million" not in raw


def test_labels_above_the_clearance_are_hidden(tmp_path: Path) -> None:
    store, _ = Conversations.open(tmp_path, "kim", "operator-pass-1")
    store.save(None, [Message("user", "open")], "public")
    store.save(None, [Message("user", "closed")], "secret")
    assert [s.title for s in store.summaries({"public", "restricted"})] == ["open"]
    store.close()


def test_the_same_password_reopens_the_store(tmp_path: Path) -> None:
    store, _ = Conversations.open(tmp_path, "kim", "operator-pass-1")
    conversation = store.save(None, TALK, "public")
    store.close()
    again, notice = Conversations.open(tmp_path, "kim", "operator-pass-1")
    assert notice is None
    assert again.load(conversation)[0] == TALK
    again.close()


def test_another_password_sets_the_old_store_aside_and_loses_nothing(tmp_path: Path) -> None:
    store, _ = Conversations.open(tmp_path, "kim", "operator-pass-1")
    store.save(None, TALK, "public")
    store.close()
    fresh, notice = Conversations.open(tmp_path, "kim", "reset-by-admin-1")
    assert notice is not None
    assert "previous password" in notice
    assert fresh.summaries({"public"}) == []
    fresh.close()
    aside = [p for p in (tmp_path / "conversations").iterdir() if ".unreadable-" in p.name]
    assert aside
    assert aside[0].name.startswith("kim.db.unreadable-")
    kept = sqlite3.connect(aside[0]).execute("SELECT count(*) FROM conversations").fetchone()
    assert kept == (1,)


def test_rows_cannot_be_moved_between_users(tmp_path: Path) -> None:
    kim, _ = Conversations.open(tmp_path, "kim", "operator-pass-1")
    conversation = kim.save(None, TALK, "public")
    kim.close()
    Conversations.open(tmp_path, "lee", "operator-pass-2")[0].close()
    directory = tmp_path / "conversations"
    with sqlite3.connect(directory / "lee.db") as target:
        target.execute("ATTACH ? AS kim", (str(directory / "kim.db"),))
        target.execute("INSERT INTO conversations SELECT * FROM kim.conversations")
    target.close()
    lee, _ = Conversations.open(tmp_path, "lee", "operator-pass-2")
    with pytest.raises(IntegrityError, match="was altered"):
        lee.load(conversation)
    lee.close()


def test_fields_cannot_be_swapped_between_conversations(tmp_path: Path) -> None:
    store, _ = Conversations.open(tmp_path, "kim", "operator-pass-1")
    first = store.save(None, TALK, "public")
    second = store.save(None, [Message("user", "other")], "public")
    store.close()
    with sqlite3.connect(tmp_path / "conversations" / "kim.db") as db:
        body = db.execute("SELECT body FROM conversations WHERE id = ?", (first,)).fetchone()[0]
        db.execute("UPDATE conversations SET body = ? WHERE id = ?", (body, second))
    db.close()
    store, _ = Conversations.open(tmp_path, "kim", "operator-pass-1")
    assert store.load(first)[0] == TALK
    with pytest.raises(IntegrityError, match=f"conversation {second} of kim was altered"):
        store.load(second)
    store.close()


def test_a_lowered_label_makes_the_conversation_fail_to_open(tmp_path: Path) -> None:
    store, _ = Conversations.open(tmp_path, "kim", "operator-pass-1")
    secret = store.save(None, TALK, "secret-2")
    store.close()
    with sqlite3.connect(tmp_path / "conversations" / "kim.db") as conn:  # shown below Ⅱ급비밀
        conn.execute("UPDATE conversations SET label = 'public' WHERE id = ?", (secret,))
    store, _ = Conversations.open(tmp_path, "kim", "operator-pass-1")
    with pytest.raises(IntegrityError, match="was altered"):
        store.summaries({"public"})
    with pytest.raises(IntegrityError, match="was altered"):
        store.load(secret)
    store.close()


def test_a_store_from_before_labels_were_bound_is_resealed_once(tmp_path: Path) -> None:
    store, _ = Conversations.open(tmp_path, "kim", "operator-pass-1")
    kept = store.save(None, TALK, "restricted")
    # What an earlier release wrote: the same rows sealed without the label.
    with store._conn:
        for field, data in (
            ("title", b"old title"),
            ("body", b'[{"role":"user","content":"old"}]'),
        ):
            blob = store._seal(kept, field, data, None)  # type: ignore[arg-type]
            store._conn.execute(f"UPDATE conversations SET {field} = ? WHERE id = ?", (blob, kept))
        store._conn.execute("DELETE FROM bound")
    store.close()
    store, _ = Conversations.open(tmp_path, "kim", "operator-pass-1")
    assert store.load(kept) == ([Message("user", "old")], "restricted")
    assert [s.title for s in store.summaries({"restricted"})] == ["old title"]
    store.close()
