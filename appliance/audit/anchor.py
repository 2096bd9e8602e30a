"""The anchor: the highest signed checkpoint, remembered outside the database.

`audit/anchor` holds the latest checkpoint this device signed, in the trusted
checkpoint file format (docs/formats/audit.md). It is rewritten atomically
after a transaction that signed a checkpoint has committed, and at close, and
only ever moves forward: a log whose head is below it, whose chain differs at
its seq, or that another key signs was truncated, rolled back or replaced
(an older log.db copied in, the WAL deleted after a crash). It lives beside
the log because the appliance owns no other place; whoever can roll back the
whole home can roll it back too, which only an officer's trusted checkpoint
kept off the host can show.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from appliance.audit.keys import Checkpoint, PublicKey
from appliance.errors import ConfigError, InputError, IntegrityError
from appliance.fsutil import atomic_writer

ANCHOR_FILE = "anchor"


def anchor_path(directory: Path) -> Path:
    return directory / ANCHOR_FILE


def read_anchor(directory: Path) -> Checkpoint | None:
    """The anchored checkpoint, or None if there is no anchor; IntegrityError if damaged."""
    path = anchor_path(directory)
    if not path.exists() and not path.is_symlink():
        return None
    try:
        return Checkpoint.read_file(path)
    except (InputError, IntegrityError):
        raise IntegrityError(
            f"the audit anchor {path} is damaged: it is not a signed checkpoint"
        ) from None


def advance_anchor(directory: Path, checkpoint: Checkpoint) -> None:
    """Anchor `checkpoint` unless the anchor already holds a later one of the same log.

    Processes that write the log at once take turns (a lock on the directory);
    an anchor that names another log or key, or a seq past this one, is left
    as it is: it is evidence, and `check_anchor` reports it.
    """
    with _locked(directory):
        try:
            current = read_anchor(directory)
        except IntegrityError:
            current = None  # damaged: a valid anchor replaces it
        if current is not None and (
            current.log != checkpoint.log
            or current.key != checkpoint.key
            or current.seq >= checkpoint.seq
        ):
            return
        with atomic_writer(anchor_path(directory), mode=0o600) as handle:
            handle.write(checkpoint.to_file_bytes())


def check_anchor(
    anchor: Checkpoint,
    log_id: str,
    key: PublicKey,
    head: int,
    chain_at: bytes | None,
    where: str = f"audit/{ANCHOR_FILE}",
) -> None:
    """Raise IntegrityError unless the log (`log_id`, head seq, chain at the anchor's
    seq) extends the checkpoint `anchor` (`where` names it), signed by `key`."""
    if anchor.key != key.fingerprint:
        raise IntegrityError(
            f"the audit device key ({key.fingerprint}) is not the one {where} names "
            f"({anchor.key}): the key or the whole log was replaced"
        )
    if not anchor.signed_by(key):
        raise IntegrityError(f"{where} is not signed by this device's audit key")
    if anchor.log != log_id:
        raise IntegrityError(
            f"the audit log {log_id} is not the log {anchor.log} that {where} names: "
            "the log was replaced"
        )
    if head < anchor.seq:
        raise IntegrityError(
            f"the audit log ends at seq {head}, but it had reached seq {anchor.seq} "
            f"({where}): its tail was deleted, its WAL lost, or an older copy restored"
        )
    if chain_at != anchor.chain:
        raise IntegrityError(
            f"the audit log differs at seq {anchor.seq} from what {where} recorded: "
            "its history was rewritten"
        )


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"cannot open {directory}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock
