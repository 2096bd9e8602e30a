"""Audit exports: one file an officer verifies elsewhere with nothing but it and a key.

Records, one per line (JSON Lines, or CSV rows with fixed columns):
  header      the log id, the device public key, and where the export starts
  content_key every content key, sealed to the officers (base64)
  checkpoint  every signed checkpoint in the range (the last one made for the export)
  event       leaf bytes as stored, leaf hash, chain hash, sealed content (base64)
  manifest    SHA-256 of every byte before it, signed by the device key
Format: docs/formats/audit.md.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import rfc8785

from appliance.audit.content import key_id
from appliance.audit.keys import Checkpoint, PublicKey
from appliance.audit.record import Actor, Event
from appliance.audit.verify import Report, Row, Verifier
from appliance.errors import InputError, IntegrityError, UsageError

if TYPE_CHECKING:
    from appliance.audit import AuditLog

EXPORT_FORMAT = "appliance-audit-export/v1"
MANIFEST_CONTEXT = b"appliance-audit/v1 export\n"
FORMATS = ("jsonl", "csv")
COLUMNS = (
    "type",
    "seq",
    "time",
    "user",
    "role",
    "action",
    "object",
    "outcome",
    "label",
    "leaf",
    "leaf_hash",
    "chain",
    "content",
    "body",
    "signature",
)
MAX_RECORD = 64 << 20  # one line; sealed content of one answer is far smaller

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ExportResult:
    events: int
    first_seq: int
    last_seq: int
    checkpoint: Checkpoint


# -- writing -------------------------------------------------------------------


def write_export(
    log: AuditLog,
    sink: BinaryIO,
    actor: Actor,
    *,
    fmt: str = "jsonl",
    since: Checkpoint | int | None = None,
    progress: Progress | None = None,
) -> ExportResult:
    """Record the export, sign the head, and write everything after `since`."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format '{fmt}' (use {' or '.join(FORMATS)})")
    store = log.store
    base_seq = since.seq if isinstance(since, Checkpoint) else (since or 0)
    base_chain = store.chain_at(base_seq)
    if base_chain is None or base_seq < 0:
        raise UsageError(f"the log has no event {base_seq} to export from")
    if isinstance(since, Checkpoint) and not (
        since.signed_by(store.key_at(since.seq))
        and since.log == log.log_id
        and since.chain == base_chain
    ):
        raise IntegrityError("the checkpoint given with --since does not match this log")
    details = {"since_seq": base_seq, "format": fmt}
    last = log.record(Event(actor, "export", "audit log", details=details), checkpoint=True)
    checkpoints = {seq: cp for seq, cp in store.checkpoints(base_seq).items() if seq <= last}
    writer = _RecordWriter(sink, fmt)
    header: dict[str, Any] = {
        "v": 1,
        "format": EXPORT_FORMAT,
        "log": log.log_id,
        "public_key": str(store.key_at(base_seq)),  # a restore's new key comes after
        "base_seq": base_seq,
        "base_chain": base_chain.hex(),
        "restore_marks": sorted(seq for seq in store.restore_marks() if seq > base_seq),
        "restored_before": [seq for seq in store.restore_seqs() if seq <= base_seq],
    }
    writer.write({"type": "header", "body": rfc8785.dumps(header).decode()})
    for sealed in store.content_keys().values():
        writer.write({"type": "content_key", "content": _b64(sealed)})
    for checkpoint in checkpoints.values():
        writer.write(_checkpoint_record(checkpoint))
    total, written = last - base_seq, 0
    for row in store.rows(base_seq):
        seq = row[0]
        if seq > last:
            break
        writer.write(_event_record(row))
        written += 1  # fewer than the seqs spanned where a restore lost events
        if progress and (seq % 1024 == 0 or seq == last):
            progress(seq - base_seq, total)
    manifest: dict[str, Any] = {
        "v": 1,
        "log": log.log_id,
        "sha256": writer.digest.hexdigest(),
        "events": written,
        "last_seq": last,
        "key": log.key.public.fingerprint,
    }
    body = rfc8785.dumps(manifest)
    signature = log.key.sign(MANIFEST_CONTEXT + body)
    writer.write({"type": "manifest", "body": body.decode(), "signature": _b64(signature)})
    return ExportResult(written, base_seq + 1, last, checkpoints[last])


class _RecordWriter:
    def __init__(self, sink: BinaryIO, fmt: str) -> None:
        self.sink = sink
        self.fmt = fmt
        self.digest = hashlib.sha256()
        if fmt == "csv":
            self._emit(_csv_line(list(COLUMNS)))

    def write(self, record: dict[str, Any]) -> None:
        if self.fmt == "csv":
            self._emit(_csv_line([_csv_value(record.get(column)) for column in COLUMNS]))
        else:
            line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
            self._emit(line.encode())

    def _emit(self, data: bytes) -> None:
        self.sink.write(data)
        self.digest.update(data)


def _csv_line(values: list[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue().encode()


def _csv_value(value: Any) -> str:
    return "" if value is None else str(value)


def _event_record(row: Row) -> dict[str, Any]:
    seq, leaf, leaf_hash, chain, content = row
    try:
        leaf_text = leaf.decode()
        fields = json.loads(leaf_text)
    except ValueError:
        raise IntegrityError(
            f"seq {seq} holds a damaged event; run 'appliance audit verify'"
        ) from None
    record: dict[str, Any] = {
        "type": "event",
        "seq": seq,
        "time": _iso(fields.get("time_us")),
        **{name: fields.get(name) for name in ("user", "role", "action", "object", "outcome")},
        "label": fields.get("label"),
        "leaf": leaf_text,
        "leaf_hash": leaf_hash.hex(),
        "chain": chain.hex(),
        "content": _b64(content) if content is not None else None,
    }
    return record


def _checkpoint_record(checkpoint: Checkpoint) -> dict[str, Any]:
    return {
        "type": "checkpoint",
        "seq": checkpoint.seq,
        "body": checkpoint.body.decode(),
        "signature": _b64(checkpoint.signature),
    }


def _iso(time_us: Any) -> str | None:
    if not isinstance(time_us, int):
        return None
    moment = datetime.fromtimestamp(time_us / 1e6, UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- verifying -------------------------------------------------------------------


@dataclass(frozen=True)
class ExportReport:
    report: Report
    checkpoint: Checkpoint  # the newest one: what the officer trusts next
    fmt: str


def verify_export(
    path: Path,
    key: PublicKey,
    trusted: Checkpoint | None = None,
    *,
    progress: Progress | None = None,
) -> ExportReport:
    """Prove the export is whole, signed by `key` (and after a restore by the key its
    `restore` event names), and extends `trusted`."""
    manifest, signed = _check_manifest(path, progress)
    records = _records(path, str(manifest.get("sha256")))
    fmt, header = next(records)
    fields = _json(header.get("body"), "the export header")
    if fields.get("format") != EXPORT_FORMAT:
        raise InputError(f"{path} is not an audit export ({EXPORT_FORMAT})")
    if fields.get("public_key") != str(key):
        raise IntegrityError(
            f"{path} was made by another device key than the one given with --pubkey"
        )
    try:
        log, base_seq = str(fields["log"]), int(fields["base_seq"])
        base_chain = bytes.fromhex(fields["base_chain"])
        restore_marks = {int(seq) for seq in fields.get("restore_marks", [])}
        restored_before = [int(seq) for seq in fields.get("restored_before", [])]
    except (KeyError, ValueError, TypeError, OverflowError):  # OverflowError: int(1e400)
        raise IntegrityError(f"{path} has a malformed header") from None
    content_keys: set[bytes] = set()
    checkpoints: dict[int, Checkpoint] = {}
    record: dict[str, Any] | None = None
    for _, record in records:
        if record.get("type") == "content_key":
            content_keys.add(key_id(_unb64(record.get("content"), "a content key")))
        elif record.get("type") == "checkpoint":
            checkpoint = _parse_checkpoint(record)
            if checkpoint.seq <= base_seq:  # an export carries those after base_seq only
                raise IntegrityError(
                    f"{path} has a checkpoint at seq {checkpoint.seq}, not after its base "
                    f"seq {base_seq}"
                )
            checkpoints[checkpoint.seq] = checkpoint
        else:
            break
    verifier = Verifier(
        log,
        key,
        checkpoints,
        content_keys,
        base_seq,
        base_chain,
        trusted=trusted,
        restore_marks=restore_marks,
        restored_before=restored_before,
    )
    after_events: list[dict[str, Any] | None] = [None]

    def events() -> Iterator[Row]:
        current = record
        while current is not None and current.get("type") == "event":
            yield _parse_event(current)
            current = next(records, (fmt, None))[1]
        after_events[0] = current

    report = verifier.feed_all(events())
    final = after_events[0]
    if final is None or final.get("type") != "manifest" or next(records, None) is not None:
        raise IntegrityError(f"{path} has records out of order")
    last = report.last_checkpoint
    if last is None or last.seq != report.last_seq or manifest.get("last_seq") != report.last_seq:
        raise IntegrityError(f"{path} does not end with a checkpoint over its last event")
    if manifest.get("events") != report.events or manifest.get("log") != log:
        raise IntegrityError(f"{path}: the manifest does not describe its events")
    body, signature = signed
    if not verifier.key_at(report.last_seq).verifies(signature, MANIFEST_CONTEXT + body):
        raise IntegrityError(f"{path}: the manifest signature is invalid (the export was edited)")
    return ExportReport(report, last, fmt)


def _check_manifest(
    path: Path, progress: Progress | None
) -> tuple[dict[str, Any], tuple[bytes, bytes]]:
    """Pass 1: the digest of everything before the manifest; the manifest, and its body
    and signature (checked once the walk knows the key that signs the end)."""
    digest = hashlib.sha256()
    previous: bytes | None = None
    done = 0
    with _open(path) as handle:
        total = handle.seek(0, io.SEEK_END)
        handle.seek(0)
        while line := handle.readline(MAX_RECORD + 1):
            if len(line) > MAX_RECORD:
                raise IntegrityError(f"{path} has a record larger than {MAX_RECORD} bytes")
            if previous is not None:
                digest.update(previous)
            previous = line
            done += len(line)
            if progress:
                progress(done, total)
    if previous is None:
        raise InputError(f"{path} is empty")
    fmt = "csv" if path_format(previous) == "csv" else "jsonl"
    record = _parse_line(previous, fmt)
    if record.get("type") != "manifest":
        raise IntegrityError(f"{path} does not end with a signed manifest (truncated?)")
    body = str(record.get("body", "")).encode()
    signature = _unb64(record.get("signature"), "the manifest signature")
    manifest = _json(body.decode(), "the manifest")
    if manifest.get("sha256") != digest.hexdigest():
        raise IntegrityError(f"{path} was modified after it was signed (its digest differs)")
    return manifest, (body, signature)


def path_format(line: bytes) -> str:
    return "jsonl" if line.startswith(b"{") else "csv"


def _records(path: Path, expect_sha256: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Pass 2: every record, as a dict with the CSV column names.

    The bytes are hashed again as they are parsed, so a file changed between
    the two passes fails too.
    """
    digest = hashlib.sha256()
    with _open(path) as handle:
        first = handle.readline(MAX_RECORD + 1)
        fmt = path_format(first)
        if fmt == "csv":
            if _parse_csv(first) != list(COLUMNS):
                raise InputError(f"{path} is not an audit export (unknown columns)")
            digest.update(first)
            first = handle.readline(MAX_RECORD + 1)
        previous = first
        yield fmt, _parse_line(first, fmt)
        while line := handle.readline(MAX_RECORD + 1):
            digest.update(previous)
            previous = line
            yield fmt, _parse_line(line, fmt)
    if digest.hexdigest() != expect_sha256:
        raise IntegrityError(f"{path} changed while it was being verified")


def _parse_line(line: bytes, fmt: str) -> dict[str, Any]:
    try:
        text = line.decode()
    except UnicodeDecodeError:
        raise IntegrityError("an export record is not UTF-8") from None
    if fmt == "csv":
        values = _parse_csv(line)
        if len(values) != len(COLUMNS):
            raise IntegrityError("an export row has the wrong number of columns")
        return {column: value for column, value in zip(COLUMNS, values, strict=True) if value}
    record = _json(text, "an export record")
    return record


def _parse_csv(line: bytes) -> list[str]:
    try:
        rows = list(csv.reader(io.StringIO(line.decode(errors="replace"))))
    except csv.Error:  # a carriage return outside quotes: no row the writer makes
        return []
    return rows[0] if len(rows) == 1 else []


def _parse_event(record: dict[str, Any]) -> Row:
    try:
        seq = int(record["seq"])
        leaf = str(record["leaf"]).encode()
        leaf_hash = bytes.fromhex(record["leaf_hash"])
        chain = bytes.fromhex(record["chain"])
    except (KeyError, ValueError, TypeError, OverflowError):  # OverflowError: int(1e400)
        raise IntegrityError(f"export event {record.get('seq', '?')} is malformed") from None
    content = record.get("content")
    blob = _unb64(content, f"the content of seq {seq}") if content else None
    return (seq, leaf, leaf_hash, chain, blob)


def _parse_checkpoint(record: dict[str, Any]) -> Checkpoint:
    body = str(record.get("body", "")).encode()
    signature = _unb64(record.get("signature"), "a checkpoint signature")
    where = f"export checkpoint {record.get('seq', '?')}"
    try:
        return Checkpoint.from_parts(body, signature, where)
    except (OverflowError, RecursionError):  # a seq of 1e400, or a body nested too deeply
        raise IntegrityError(f"{where}: malformed checkpoint") from None


def _json(text: Any, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except (ValueError, RecursionError):  # RecursionError: arrays nested too deeply
        value = None
    if not isinstance(value, dict):
        raise IntegrityError(f"{what} is not a JSON object")
    return value


def _unb64(value: Any, what: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise IntegrityError(f"{what} is not valid base64") from None


def _open(path: Path) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
