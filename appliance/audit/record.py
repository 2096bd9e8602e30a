"""Audit events, their canonical bytes (the leaf), and the hash chain.

leaf_i  = RFC 8785 canonical JSON of event i (UTF-8), stored and hashed as is
hash_i  = SHA-256(0x00 || leaf_i)
chain_i = SHA-256(chain_{i-1} || hash_i),  chain_0 = 32 zero bytes

Canonical JSON sorts keys, so every leaf starts with its "action" member: the
verifier finds prune events without parsing every leaf.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from appliance.audit.canonical import canonical_json, encode_string

LEAF_VERSION = 1
_string = encode_string
GENESIS_CHAIN = bytes(32)
CONTENT_KEY = "content_sha256"  # top-level only; the verifier looks for it by bytes
CONTENT_PREFIX = b'"' + CONTENT_KEY.encode() + b'":"'
PRUNE_PREFIX = b'{"action":"prune",'
RESTORE_PREFIX = b'{"action":"restore",'

# Every action the appliance records. Unknown actions are a bug, not input.
ACTIONS = frozenset(
    {
        "log_created",
        "login",
        "login_failed",
        "logout",
        "ask",
        "answer",
        "policy_block",
        "policy_redact",
        "install",
        "upgrade",
        "rollback",
        "uninstall",
        "export",
        "prune",
        "key_rotate",
        "config_change",
        "heartbeat",
        "start",
        "shutdown",
        "engine_restart",
        "user_add",
        "user_lock",
        "user_unlock",
        "user_bind",
        "password_change",
        "user_request",
        "user_approve",
        "officer_escrow",
        "officer_recovery",
        "state",
        "doc_add",
        "doc_ask",
        "doc_remove",
        "doc_reindex",
        "collection_change",
        "store_key",
        "draft",
        "adapter",
        "backup",
        "restore",
    }
)
OUTCOMES = frozenset({"ok", "denied", "failed", "cancelled"})


@dataclass(frozen=True)
class Actor:
    """Who acted: a user name and the role they acted in."""

    user: str
    role: str


@dataclass(frozen=True)
class Event:
    """One thing that happened. Metadata stays readable; content is sealed apart."""

    actor: Actor
    action: str
    object: str | None = None
    outcome: str = "ok"
    label: str | None = None  # classification of the turn, when there is one
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown audit action {self.action!r}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown audit outcome {self.outcome!r}")


def leaf_record(event: Event, time_us: int, content_sha256: str | None) -> dict[str, Any]:
    """The object a leaf serialises (what `encode_leaf` writes, as a dict)."""
    record: dict[str, Any] = {
        "v": LEAF_VERSION,
        "time_us": time_us,
        "host": _host(),
        "boot": _boot_id(),
        "pid": os.getpid(),
        "user": event.actor.user,
        "role": event.actor.role,
        "action": event.action,
        "object": event.object,
        "outcome": event.outcome,
        "label": event.label,
        "details": dict(event.details),
    }
    if content_sha256 is not None:
        record[CONTENT_KEY] = content_sha256
    return record


@dataclass(slots=True)
class Leaf:
    """An event's leaf but for its time.

    `time_us` sorts last but two, so everything around its value is known
    before the write lock is taken; the time itself is taken under it.
    """

    head: bytes  # up to and including '"time_us":'
    tail: bytes  # from ',"user":' to the end

    def at(self, time_us: int) -> bytes:
        return self.head + b"%d" % time_us + self.tail


def encode_leaf(event: Event, time_us: int, content_sha256: str | None) -> bytes:
    """The canonical bytes that are stored and hashed for `event`."""
    return leaf_template(event, content_sha256).at(time_us)


def leaf_template(event: Event, content_sha256: str | None) -> Leaf:
    """`event`'s leaf, all but the time: RFC 8785 of `leaf_record(...)`.

    Written member by member in sorted order: the members and their types are
    fixed, so only `details` needs the general canonicaliser
    (tests/test_audit_canonical.py compares the two).
    """
    boot, host, pid = _process_members(os.getpid())  # a forked child has its own pid
    before_details = (
        '{"action":'
        + _string(event.action)
        + boot
        + ("" if content_sha256 is None else ',"content_sha256":' + _string(content_sha256))
        + ',"details":'
    )
    after_details = "".join(
        (
            host,
            ',"label":',
            _nullable(event.label),
            ',"object":',
            _nullable(event.object),
            ',"outcome":',
            _string(event.outcome),
            pid,
            ',"role":',
            _string(event.actor.role),
            ',"time_us":',
        )
    )
    # A lone surrogate fails here (in the canonicaliser or encode), as RFC 8785 requires.
    details = canonical_json(dict(event.details))
    head = before_details.encode() + details + after_details.encode()
    tail = (',"user":' + _string(event.actor.user) + ',"v":1}').encode()
    # The verifier finds the content digest by these bytes: they must occur
    # exactly where the writer put them, never inside details. (They cannot
    # span the time, whose neighbours are fixed.)
    if head.count(CONTENT_PREFIX) + tail.count(CONTENT_PREFIX) != (content_sha256 is not None):
        raise ValueError(f"audit details may not use the key {CONTENT_KEY!r}")
    return Leaf(head, tail)


def _nullable(text: str | None) -> str:
    return "null" if text is None else _string(text)


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def next_chain(previous: bytes, hashed_leaf: bytes) -> bytes:
    return hashlib.sha256(previous + hashed_leaf).digest()


def now_us() -> int:
    return time.time_ns() // 1000


@cache
def _process_members(pid: int) -> tuple[str, str, str]:
    """This process's boot, host and pid members of every leaf, encoded once (per pid)."""
    return ',"boot":' + _string(_boot_id()), ',"host":' + _string(_host()), f',"pid":{pid}'


@cache
def _host() -> str:
    return socket.gethostname()


@cache
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"
