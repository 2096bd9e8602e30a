"""Audit export: the verifier of an exported, signed log."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.audit.export import COLUMNS, MANIFEST_CONTEXT, verify_export
from appliance.audit.keys import DeviceKey
from appliance.errors import InputError, IntegrityError
from tests.fuzz.harness.common import as_file, derived_key, refusals

AUDIT_PRIVATE_KEY = Ed25519PrivateKey.from_private_bytes(derived_key("audit device key"))
AUDIT_KEY = DeviceKey(AUDIT_PRIVATE_KEY)


def fuzz_audit_export(data: bytes) -> None:
    """The file as given, then re-signed by the device key, which gets the fuzzed
    records past the manifest signature and into the verifier."""
    for variant in (data, resigned(data)):
        if variant is None:
            continue
        path = as_file("export.jsonl", variant)
        with refusals(IntegrityError, InputError):
            result = verify_export(path, AUDIT_KEY.public)
            assert result.report.last_seq >= result.report.first_seq - 1
            assert result.checkpoint.seq == result.report.last_seq


def resigned(data: bytes) -> bytes | None:
    """`data` with its last record's manifest made to sign everything before it."""
    head, newline, last = data.rstrip(b"\n").rpartition(b"\n")
    if not newline:
        return None
    before = head + newline
    try:
        if last.startswith(b"{"):
            record = json.loads(last)
            body = json.loads(record["body"])
        else:
            row = next(csv.reader(io.StringIO(last.decode())))
            record = dict(zip(COLUMNS, row, strict=True))
            body = json.loads(record["body"])
        body["sha256"] = hashlib.sha256(before).hexdigest()
        record["body"] = json.dumps(body, separators=(",", ":"))
        signature = AUDIT_KEY.sign(MANIFEST_CONTEXT + record["body"].encode())
        record["signature"] = base64.b64encode(signature).decode()
    except (ValueError, TypeError, KeyError, IndexError, RecursionError, StopIteration, csv.Error):
        return None
    if last.startswith(b"{"):
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    else:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="").writerow([record.get(c, "") for c in COLUMNS])
        line = buffer.getvalue()
    return before + line.encode("utf-8", "surrogateescape") + b"\n"
