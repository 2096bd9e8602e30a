"""Whether the documents store holds what the audit log says it should.

Every document added (`doc_add`, with its sha256) and removed (`doc_remove`)
is an event in the hash-chained log, whose leaves survive pruning. Replaying
them gives the documents the store must hold, each at its last sha256. An
older copy of the store put back (a rollback), a document slipped in or
taken out behind the appliance's back, or one swapped for another version,
shows as a difference: `appliance doctor` fails its `documents` check.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from appliance.audit import AuditLog
from appliance.documents.keys import documents_dir, read_store_key
from appliance.documents.store import STORE_FILE, DocumentStore

SHOWN = 3  # document ids named per kind of difference


@dataclass(frozen=True)
class Difference:
    missing: list[str] = field(default_factory=list)  # logged as added, not in the store
    unexpected: list[str] = field(default_factory=list)  # in the store, not logged (or removed)
    changed: list[str] = field(default_factory=list)  # another sha256 than the last logged

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.changed)

    def describe(self) -> str:
        parts = []
        for name, ids in (
            ("missing", self.missing),
            ("not in the log", self.unexpected),
            ("another version than logged", self.changed),
        ):
            if ids:
                more = f" and {len(ids) - SHOWN} more" if len(ids) > SHOWN else ""
                parts.append(f"{len(ids)} {name} ({', '.join(ids[:SHOWN])}{more})")
        return "; ".join(parts)


def logged_documents(log: AuditLog) -> dict[str, str]:
    """Document id -> sha256 of every document the log leaves in the store."""
    replay: list[tuple[int, str, str, str | None]] = []
    for action in ("doc_add", "doc_remove"):
        for row in log.events(action=action):
            leaf = json.loads(row["leaf"])
            if leaf.get("outcome") == "ok" and isinstance(leaf.get("object"), str):
                sha256 = (leaf.get("details") or {}).get("sha256")
                replay.append((int(row["seq"]), action, leaf["object"], sha256))
    documents: dict[str, str] = {}
    for _, action, document, sha256 in sorted(replay):
        if action == "doc_add" and isinstance(sha256, str):
            documents[document] = sha256
        else:
            documents.pop(document, None)
    return documents


def compare(store: DocumentStore, log: AuditLog) -> tuple[int, Difference]:
    """How many documents the store holds, and how it differs from the log."""
    expected = logged_documents(log)
    held = {document.id: document.sha256 for document in store.all_documents()}
    return len(held), Difference(
        missing=sorted(set(expected) - set(held)),
        unexpected=sorted(set(held) - set(expected)),
        changed=sorted(d for d in set(held) & set(expected) if held[d] != expected[d]),
    )


def check_home(home: Path, log: AuditLog) -> tuple[bool, str]:
    """The home's store against its log: (consistent, what was found)."""
    path = documents_dir(home) / STORE_FILE
    if not path.exists():
        expected = logged_documents(log)
        if expected:
            return False, f"the store is missing; the log leaves {len(expected)} documents in it"
        return True, "no documents store yet"
    with DocumentStore(path, read_store_key(home)) as store:
        count, difference = compare(store, log)
    if difference:
        return False, f"the store differs from the audit log: {difference.describe()}"
    held = f"{count} document" + ("" if count == 1 else "s")
    return True, f"{held}, each as the audit log last recorded it"
