"""One verifier for the log on the host and for an export on another machine.

`walk` recomputes every leaf hash and chain hash over a run of events and
notes what the signed parts need (the chain at each checkpoint, prunes,
dropped content). A walk starting from the stored chain just before its
first event proves that run on its own, so the host splits a long log into
ranges walked in parallel (store.walk_ranges). `Verifier` then checks the
checkpoints and the officer's trusted checkpoint against the walks, proves
dropped content was pruned and nothing signed is missing, and reports the
first failure with its seq and a reason.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from appliance.audit.keys import Checkpoint, PublicKey
from appliance.audit.record import CONTENT_PREFIX, GENESIS_CHAIN, PRUNE_PREFIX, RESTORE_PREFIX
from appliance.errors import ApplianceError, IntegrityError


class TamperError(IntegrityError):
    """The log or export is not what the device wrote: `seq` is the first bad event."""

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(
            f"audit log fails verification at seq {seq}: {reason}", code="tampered", seq=seq
        )
        self.seq = seq
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:  # crosses process boundaries intact
        return (TamperError, (self.seq, self.reason))


# One stored event: (seq, leaf, leaf hash, chain hash, sealed content or None).
# A plain tuple, as SQLite returns it: the walk handles 100,000 a second per core.
Row = tuple[int, bytes, bytes, bytes, bytes | None]


@dataclass(frozen=True)
class Restore:
    """A `restore` event: the log resumed on a new host from a backup (docs/formats/audit.md).

    The backup ended at `backup_seq`; `trusted` is the officer's checkpoint the
    restore was given (signed by `old_key`); events backup_seq+1..trusted.seq,
    if any, are lost; from `seq` on, `new_key` signs.
    """

    seq: int
    backup_seq: int
    trusted: Checkpoint
    old_key: PublicKey
    new_key: PublicKey
    approved_by: dict[str, str]

    @property
    def lost(self) -> tuple[int, int] | None:
        """The first and last seq lost between the backup and the trusted checkpoint."""
        if self.trusted.seq <= self.backup_seq:
            return None
        return self.backup_seq + 1, self.trusted.seq

    def lost_in(self, base_seq: int, last_seq: int) -> int:
        """How many of the seqs base_seq+1..last_seq are lost events."""
        lost = self.lost
        if lost is None:
            return 0
        return max(0, min(lost[1], last_seq) - max(lost[0], base_seq + 1) + 1)

    def as_json(self) -> dict[str, Any]:
        lost = self.lost
        return {
            "seq": self.seq,
            "backup_seq": self.backup_seq,
            "trusted_seq": self.trusted.seq,
            "lost_from": lost[0] if lost else None,
            "lost_through": lost[1] if lost else None,
            "old_key": self.old_key.fingerprint,
            "new_key": self.new_key.fingerprint,
            "approved_by": self.approved_by,
        }


@dataclass
class Walk:
    """What walking one run of events found."""

    last_seq: int  # the last event proved whole
    first_seq: int = 1  # the first event this walk was given
    chains: dict[int, bytes] = field(default_factory=dict)  # at the seqs asked for
    prunes: list[tuple[int, int]] = field(default_factory=list)  # (seq, through_seq)
    missing_content: list[int] = field(default_factory=list)
    restores: list[Restore] = field(default_factory=list)
    failure: TamperError | None = None


def walk(
    rows: Iterable[Row],
    base_seq: int,
    base_chain: bytes,
    content_keys: Collection[bytes],
    marks: Collection[int],
    end_seq: int | None = None,
) -> Walk:
    """Check `rows` (seq base_seq+1 onward) against their stored hashes.

    The common case stays inline in the loop; anything rarer leaves it.
    """
    sha256 = hashlib.sha256
    leaf_prefix = sha256(b"\x00")
    found = Walk(base_seq, base_seq + 1)
    expected, chain = base_seq + 1, base_chain
    seq = expected
    try:
        for seq, leaf, hashed, stored_chain, content in rows:
            if seq != expected or leaf.startswith(RESTORE_PREFIX):
                chain = _resumed(found, seq, leaf, expected, chain, marks)
                expected = seq  # past the events the restore lost
            leaf_hash = leaf_prefix.copy()
            leaf_hash.update(leaf)
            if leaf_hash.digest() != hashed:
                raise TamperError(seq, "the event was modified (its hash does not match its bytes)")
            chain = sha256(chain + hashed).digest()
            if chain != stored_chain:
                raise TamperError(
                    seq,
                    "the chain breaks here: an event was removed, inserted or reordered before it",
                )
            if content is not None:
                at = leaf.find(CONTENT_PREFIX) + len(CONTENT_PREFIX)
                digest = sha256(content).hexdigest().encode()
                if leaf[at : at + 64] != digest or content[1:17] not in content_keys:
                    _check_content(seq, leaf, content, content_keys)  # says why
            elif CONTENT_PREFIX in leaf:
                found.missing_content.append(seq)
            if leaf.startswith(PRUNE_PREFIX):
                found.prunes.append((seq, _prune_through(seq, leaf)))

            if seq in marks:
                found.chains[seq] = chain
            expected += 1
        if end_seq is not None and expected <= end_seq:
            raise TamperError(expected, f"the event is missing (the log jumps past {expected})")
    except TamperError as exc:
        found.failure = exc
    except (TypeError, AttributeError):  # NULL or a number where bytes belong
        found.failure = TamperError(seq, "a stored field is missing or of the wrong type")
    found.last_seq = expected - 1
    return found


def _resumed(
    found: Walk, seq: int, leaf: bytes, expected: int, chain: bytes, marks: Collection[int]
) -> bytes:
    """The chain a `restore` event follows, once it is shown to follow this log: the
    backup's last event is the one just walked, and either it comes next (the
    officer's checkpoint is no newer) or it comes right after the officer's
    checkpoint and the events between are lost. Anything else is a gap."""
    restore = _restore(seq, leaf) if leaf.startswith(RESTORE_PREFIX) else None
    if restore is None:
        raise _gap(seq, expected)
    if restore.trusted.log != _details(seq, leaf).get("log"):
        raise TamperError(seq, "the restore's trusted checkpoint belongs to another log")
    starts_at_trusted = expected == found.first_seq and restore.trusted.seq == expected - 1
    if seq == expected and restore.lost is not None and starts_at_trusted:
        # This walk starts at the officer's checkpoint the restore resumed from (an
        # export since it): the restore follows it, the backup's events are not here.
        if chain != restore.trusted.chain:
            raise TamperError(seq, "the restore does not follow its trusted checkpoint")
        found.restores.append(restore)
        return chain
    backup_chain = _details(seq, leaf)["backup"].get("chain")
    if restore.backup_seq != expected - 1 or backup_chain != chain.hex():
        raise TamperError(seq, "the restore does not follow the backup it names")
    found.restores.append(restore)
    if seq == expected:
        if restore.trusted.seq > restore.backup_seq:
            raise TamperError(seq, "the restore skips the events it says are lost")
        return chain
    if restore.lost is None or restore.trusted.seq != seq - 1:
        raise _gap(seq, expected)
    if restore.trusted.seq in marks:
        found.chains[restore.trusted.seq] = restore.trusted.chain
    return restore.trusted.chain


def _restore(seq: int, leaf: bytes) -> Restore:
    details = _details(seq, leaf)
    try:
        trusted = details["trusted"]
        checkpoint = Checkpoint.from_parts(
            str(trusted["checkpoint"]).encode(),
            base64.b64decode(str(trusted["signature"]), validate=True),
            f"the restore at seq {seq}",
        )
        approved = details["approved_by"]
        return Restore(
            seq,
            int(details["backup"]["seq"]),
            checkpoint,
            PublicKey.parse(str(details["old_key"])),
            PublicKey.parse(str(details["new_key"])),
            {str(k): str(v) for k, v in approved.items()},
        )
    except (KeyError, ValueError, TypeError, AttributeError, ApplianceError):
        raise TamperError(seq, "a restore event without valid details") from None


def _details(seq: int, leaf: bytes) -> dict[str, Any]:
    try:
        details = json.loads(leaf)["details"]
    except (ValueError, KeyError, TypeError):
        details = None
    if not isinstance(details, dict) or not isinstance(details.get("backup"), dict):
        raise TamperError(seq, "a restore event without valid details")
    return details


def _gap(seq: int, expected: int) -> TamperError:
    if seq > expected:
        jump = f"the log jumps from {expected - 1} to {seq}"
        return TamperError(expected, f"the event is missing ({jump})")
    return TamperError(seq, "the event appears twice or out of order")


def _check_content(seq: int, leaf: bytes, content: bytes, content_keys: Collection[bytes]) -> None:
    at = leaf.find(CONTENT_PREFIX) + len(CONTENT_PREFIX)
    if leaf[at : at + 64] != hashlib.sha256(content).hexdigest().encode():
        raise TamperError(seq, "the sealed content was replaced or altered")
    raise TamperError(seq, "the sealed content's key is missing or altered")


def _prune_through(seq: int, leaf: bytes) -> int:
    try:
        through = int(json.loads(leaf)["details"]["through_seq"])
    except (ValueError, KeyError, TypeError):
        raise TamperError(seq, "a prune event without a valid through_seq") from None
    if through >= seq:
        raise TamperError(seq, "a prune event claims events after itself")
    return through


@dataclass
class Report:
    """What a successful verification proved."""

    log: str
    events: int = 0
    first_seq: int = 0
    last_seq: int = 0
    checkpoints: int = 0
    last_checkpoint: Checkpoint | None = None
    pruned: int = 0  # events whose content was dropped by a logged prune
    trusted_seq: int | None = None  # the officer's checkpoint this log extends
    officer_recoveries: list[int] = field(default_factory=list)  # seqs, via the escrow
    restores: list[Restore] = field(default_factory=list)  # each resumed it from a backup
    restored_before: list[int] = field(default_factory=list)  # an export's, before its start

    @property
    def complete(self) -> bool:
        """Never after a restore: what the backup missed cannot be proved absent."""
        return not self.restores and not self.restored_before

    def confirmed(self, restore: Restore) -> bool:
        """Whether the officer's trusted checkpoint is at or after the restore: then it
        pins the restore's new key; before it, only the restore event vouches for it."""
        return self.trusted_seq is not None and self.trusted_seq >= restore.seq

    @property
    def unsigned_tail(self) -> int:
        """Events after the last checkpoint (a crash leaves some; the next start signs them)."""
        signed = self.last_checkpoint.seq if self.last_checkpoint else self.first_seq - 1
        return max(0, self.last_seq - signed)

    def as_json(self) -> dict[str, Any]:
        last = self.last_checkpoint
        return {
            "ok": True,
            "log": self.log,
            "events": self.events,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "checkpoints": self.checkpoints,
            "last_checkpoint_seq": last.seq if last else None,
            "unsigned_tail": self.unsigned_tail,
            "pruned": self.pruned,
            "trusted_seq": self.trusted_seq,
            "officer_recoveries": self.officer_recoveries,
            "restores": [
                {**restore.as_json(), "confirmed": self.confirmed(restore)}
                for restore in self.restores
            ],
            "restored_before": self.restored_before,
            "complete": self.complete,
        }


@dataclass
class Verifier:
    """The signed parts of a log or export, checked against walks of its events."""

    log: str
    key: PublicKey
    checkpoints: dict[int, Checkpoint]
    content_keys: Collection[bytes]  # ids of the sealed content keys the log holds
    base_seq: int = 0
    base_chain: bytes = GENESIS_CHAIN
    trusted: Checkpoint | None = None
    restore_marks: Collection[int] = ()  # the trusted seqs restores name (their chains)
    restored_before: Collection[int] = ()  # an export's: the seqs of restores before it
    restores: list[Restore] = field(default_factory=list)  # as the walks find them

    def __post_init__(self) -> None:
        if self.trusted is not None and self.trusted.seq < self.base_seq:
            raise IntegrityError(
                f"this export starts after the trusted checkpoint (seq {self.trusted.seq}); "
                f"export again with --since {self.trusted.seq} or earlier"
            )

    @property
    def marks(self) -> set[int]:
        """The seqs whose chain hash the signed parts state."""
        marks = set(self.checkpoints) | set(self.restore_marks)
        if self.trusted is not None:
            marks.add(self.trusted.seq)
        return marks

    def key_at(self, seq: int) -> PublicKey:
        """The key that signs at `seq`: `key`, then each restore's new key from its seq."""
        key = self.key
        for restore in self.restores:
            if restore.seq <= seq:
                key = restore.new_key
        return key

    def feed_all(self, rows: Iterable[Row]) -> Report:
        """Verify everything after base_seq, walked in this process."""
        found = walk(rows, self.base_seq, self.base_chain, self.content_keys, self.marks)
        return self.conclude([found])

    def conclude(self, walks: Sequence[Walk]) -> Report:
        """Judge consecutive walks that together cover the events after base_seq."""
        chains: dict[int, bytes] = {self.base_seq: self.base_chain}
        prunes: list[tuple[int, int]] = []
        missing: list[int] = []
        failure: TamperError | None = None
        last = self.base_seq
        self.restores = []
        for found in walks:
            chains.update(found.chains)
            prunes += found.prunes
            missing += found.missing_content
            self.restores += found.restores
            last = found.last_seq
            if found.failure is not None:
                failure = found.failure
                break
        report = Report(self.log, first_seq=self.base_seq + 1, restores=self.restores)
        for restore in self.restores:
            self._check_restore(restore, chains)
        if self.trusted is not None:
            self._check_trusted_key(self.trusted)
        # A bad signed statement before the first bad event is the first failure.
        for seq in sorted(self.marks):
            if seq > last:
                break
            if seq not in chains:
                raise TamperError(seq, self._unprovable(seq))
            self._check_mark(seq, chains[seq], report)
        if failure is not None:
            raise failure
        report.last_seq = last
        report.events = (
            last - self.base_seq - sum(r.lost_in(self.base_seq, last) for r in self.restores)
        )
        report.restored_before = [seq for seq in self.restored_before if seq <= self.base_seq]
        self._check_complete(last, prunes, missing, report)
        return report

    # -- checks ------------------------------------------------------------------

    def _check_restore(self, restore: Restore, chains: dict[int, bytes]) -> None:
        """A restore names the key that signed before it and an officer's checkpoint
        that key signed; the log agrees with it where the log reaches it."""
        before = self.key_at(restore.seq - 1)
        if restore.old_key != before:
            raise TamperError(restore.seq, "the restore names another key than the log's")
        if not restore.trusted.signed_by(before) or restore.trusted.log != self.log:
            raise TamperError(
                restore.seq, "the restore's trusted checkpoint is not signed by the log's key"
            )
        if restore.lost is None and restore.trusted.seq >= self.base_seq:
            chain = chains.get(restore.trusted.seq)
            if chain is None or not hmac.compare_digest(chain, restore.trusted.chain):
                raise TamperError(
                    restore.seq, "the restored log differs from the restore's trusted checkpoint"
                )

    def _unprovable(self, seq: int) -> str:
        for restore in self.restores:
            lost = restore.lost
            if lost and lost[0] <= seq <= lost[1]:
                return (
                    f"the checkpoint falls in the events {lost[0]}-{lost[1]} lost at the restore "
                    f"at seq {restore.seq}; verify against the one it resumed from (seq "
                    f"{restore.trusted.seq}) or a later one"
                )
        return "the event is missing"

    def _check_mark(self, seq: int, chain: bytes, report: Report) -> None:
        checkpoint = self.checkpoints.get(seq)
        if checkpoint is not None:
            if not checkpoint.signed_by(self.key_at(seq)):
                raise TamperError(
                    seq, "the checkpoint's signature is invalid (forged or another key)"
                )
            if checkpoint.log != self.log:
                raise TamperError(seq, "the checkpoint belongs to another log")
            if not hmac.compare_digest(checkpoint.chain, chain):
                raise TamperError(seq, "the signed checkpoint does not match the events up to it")
            report.checkpoints += 1
            report.last_checkpoint = checkpoint
        if self.trusted is not None and seq == self.trusted.seq:
            if not hmac.compare_digest(self.trusted.chain, chain):
                raise TamperError(
                    seq,
                    "the log differs from the trusted checkpoint here: history was rewritten "
                    "or the database was replaced",
                )
            report.trusted_seq = seq

    def _check_complete(
        self, last: int, prunes: list[tuple[int, int]], missing: list[int], report: Report
    ) -> None:
        beyond = [seq for seq in self.checkpoints if seq > last]
        if beyond:
            raise TamperError(
                last + 1,
                f"events up to seq {max(beyond)} were signed in a checkpoint but are gone "
                "(the tail was deleted)",
            )
        if self.trusted is not None and self.trusted.seq > last:
            raise TamperError(
                last + 1,
                f"the log ends at seq {last}, before the trusted checkpoint at seq "
                f"{self.trusted.seq}: its tail was deleted or it was replaced by an older copy",
            )
        pruned_through = max((through for _, through in prunes), default=0)
        for seq in missing:
            if seq > pruned_through:
                raise TamperError(seq, "the event's sealed content was removed without a prune")
        report.pruned = len(missing)

    def _check_trusted_key(self, trusted: Checkpoint) -> None:
        if not trusted.signed_by(self.key_at(trusted.seq)):
            raise IntegrityError(
                "the trusted checkpoint is not signed by this key (forged, or another device)"
            )
        if trusted.log != self.log:
            raise IntegrityError("the trusted checkpoint belongs to another log")
