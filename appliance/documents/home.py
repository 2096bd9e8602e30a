"""The home's documents store, opened with its key, and the key's escrow kept current."""

from __future__ import annotations

from pathlib import Path

from appliance.audit import Actor, AuditLog, Event
from appliance.documents.keys import escrow_current, store_key
from appliance.documents.store import DocumentStore

SYSTEM = Actor("appliance", "system")


def open_documents(home: Path, log: AuditLog) -> DocumentStore:
    """The home's documents store (made on first use), its key sealed to the officers too."""
    store, resealed = DocumentStore.open(home, log.officers)
    if resealed:
        _record_escrow(log)
    return store


def escrow_to_officers(home: Path, log: AuditLog) -> None:
    """Seal the store key to the current officers if they changed since it was sealed."""
    if escrow_current(home, log.officers):
        return
    _, resealed = store_key(home, log.officers)
    if resealed:
        _record_escrow(log)


def _record_escrow(log: AuditLog) -> None:
    details = {"officers": len(log.officers)}
    log.record(Event(SYSTEM, "store_key", "documents", details=details))
