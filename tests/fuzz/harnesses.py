"""One harness per parser that reads untrusted bytes, shared by atheris and pytest.

Each `fuzz_<target>(data)` feeds `data` to the parser the way the appliance
does (a file on disk where the parser opens a path) and asserts its contract:
for any bytes it either returns a valid result or raises the module's own
documented error (one sentence, a stable exit code). Any other exception, an
assertion failure, a hang or unbounded memory is a bug. DLP functions take
any text and must never raise; their spans must lie inside the text.

`run.py` drives these under atheris; `tests/test_fuzz.py` replays the seed
corpora (`corpus/<target>/`) and every past crash (`regressions/<target>/`).
"""

from __future__ import annotations

import atexit
import base64
import csv
import dataclasses
import hashlib
import io
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from appliance.audit.export import COLUMNS, MANIFEST_CONTEXT, verify_export
from appliance.audit.keys import DeviceKey
from appliance.bundle.archive import METADATA as METADATA_DIR
from appliance.bundle.archive import TARGETS as TARGETS_DIR
from appliance.bundle.archive import BundleArchive
from appliance.bundle.manifest import model_pin, parse_manifest
from appliance.bundle.verify import verify_bundle
from appliance.config import load_home_config
from appliance.documents import sandbox
from appliance.documents.chunking import chunk_document
from appliance.documents.formats import ZipLimits, read_zip_parts, sniff, sniff_family
from appliance.documents.model import FORMATS, KINDS, Parsed
from appliance.engine.gguf import GGUFFile, read_gguf
from appliance.engine.hparams import check_hyperparameters
from appliance.engine.info import describe
from appliance.errors import (
    ApplianceError,
    BundleError,
    ConfigError,
    CredentialError,
    DocumentError,
    InputError,
    IntegrityError,
    ModelFormatError,
    PolicyError,
    UsageError,
)
from appliance.policy import (
    Finding,
    OutputGuard,
    Policy,
    check_added,
    check_input,
    load_policy,
    mask,
    scan,
    shipped_policy,
)
from appliance.policy.dlp.normalize import fold, normalise
from appliance.policy.schema import DETECTORS, Rule
from appliance.seal import Identity, open_bytes
from appliance.seal.header import parse_header
from appliance.service.protocol import OPS, LineReader, ProtocolError, decode, parse_request
from tests.fuzz.targets import INSTRUMENT

FUZZ_DIR = Path(__file__).resolve().parent
CORPUS = FUZZ_DIR / "corpus"
REGRESSIONS = FUZZ_DIR / "regressions"
# The trusted root the bundle seeds were signed under (made with them by seeds.py).
BUNDLE_ROOT = FUZZ_DIR / "bundle-root.json"


def derived_key(label: str) -> bytes:
    """Fixed key material, so that committed seeds open under the harness's keys."""
    return hashlib.sha256(b"appliance fuzz " + label.encode()).digest()


SEALED_IDENTITY = Identity(X25519PrivateKey.from_private_bytes(derived_key("sealed identity")))
AUDIT_PRIVATE_KEY = Ed25519PrivateKey.from_private_bytes(derived_key("audit device key"))
AUDIT_KEY = DeviceKey(AUDIT_PRIVATE_KEY)


@contextmanager
def refusals(*allowed: type[Exception]) -> Iterator[None]:
    """Inside, only the documented refusals may escape: anything else is a bug."""
    try:
        yield
    except allowed as exc:
        _check_refusal(exc)


def _check_refusal(exc: Exception) -> None:
    # exit code 1 is "internal error (a bug)": a refusal has its own class
    assert type(exc) is not ApplianceError, exc
    assert str(exc).strip(), f"{type(exc).__name__} without a message"
    if isinstance(exc, DocumentError):  # what the parent takes as a child's refusal
        assert exc.code in sandbox.REFUSAL_CODES, exc.code
        assert exc.message.isprintable(), exc.message
        assert len(exc.message) <= sandbox.MESSAGE_CHARS, exc.message


@cache
def scratch() -> Path:
    """A private directory for the files parsers open by path (tmpfs when there is one)."""
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix="appliance-fuzz-", dir=base))
    atexit.register(shutil.rmtree, path, True)
    return path


def as_file(name: str, data: bytes) -> Path:
    path = scratch() / name
    path.write_bytes(data)
    return path


# -- engine: GGUF structure and hyperparameters ---------------------------------------


def fuzz_gguf(data: bytes) -> None:
    path = as_file("model.gguf", data)
    with refusals(ModelFormatError):
        gguf = read_gguf(path)
        _check_gguf(gguf, len(data))
        check_hyperparameters(gguf)
        describe(gguf)


def _check_gguf(gguf: GGUFFile, size: int) -> None:
    """What llama.cpp relies on once validation has passed."""
    assert gguf.file_size == size
    assert gguf.alignment > 0
    assert gguf.alignment & (gguf.alignment - 1) == 0
    assert gguf.data_offset % gguf.alignment == 0
    assert all(key for key in gguf.metadata)
    names = [tensor.name for tensor in gguf.tensors]
    assert len(set(names)) == len(names)
    for tensor in gguf.tensors:
        assert len(tensor.shape) <= 4
        assert all(dim >= 0 for dim in tensor.shape)
        assert tensor.offset % gguf.alignment == 0
        assert gguf.data_offset + tensor.offset + tensor.nbytes <= size


# -- seal: header and STREAM payload --------------------------------------------------


def fuzz_sealed(data: bytes) -> None:
    with refusals(InputError, IntegrityError):
        parsed = parse_header(data, "fuzz.sealed")
        assert 0 < parsed.size <= len(data)
        assert parsed.header.stanzas
    with refusals(InputError, IntegrityError, CredentialError):
        plain = open_bytes(data, [SEALED_IDENTITY], "fuzz.sealed")
        assert len(plain) == parse_header(data, "fuzz.sealed").header.length


# -- bundle: the tar reader, the signed metadata, bundle.json -------------------------


def fuzz_bundle_archive(data: bytes) -> None:
    """The tar as given, then with its header checksums made right: most mutations
    of a header break its checksum, and the member checks lie behind it."""
    for variant in dict.fromkeys((data, with_tar_checksums(data))):
        path = as_file("fuzz.bundle", variant)
        with refusals(BundleError), BundleArchive(path) as archive:
            assert archive.members
            for name, info in archive.members.items():
                assert name.startswith((METADATA_DIR, TARGETS_DIR))
                assert ".." not in name.split("/")
                assert info.isreg()
                assert sum(len(block) for block in archive.stream(name)) == info.size


def with_tar_checksums(data: bytes) -> bytes:
    """`data` with the checksum of each tar header it holds recomputed."""
    out = bytearray(data)
    at = 0
    while at + 512 <= len(out) and any(out[at : at + 512]):
        out[at + 148 : at + 156] = b" " * 8  # the checksum counts its own field as spaces
        out[at + 148 : at + 156] = b"%06o\0 " % sum(out[at : at + 512])
        try:
            size = int(bytes(out[at + 124 : at + 136]).strip(b" \0") or b"0", 8)
        except ValueError:
            break  # a size tarfile reads otherwise (base-256) or not at all
        at += 512 + -(-size // 512) * 512  # the header, then its data in whole blocks
    return bytes(out)


def fuzz_bundle_verify(data: bytes) -> None:
    path = as_file("fuzz.bundle", data)
    with refusals(BundleError), verify_bundle(path, None, _bundle_root()) as verified:
        assert verified.release
        assert verified.model_file in verified.targets


@cache
def _bundle_root() -> bytes:
    return BUNDLE_ROOT.read_bytes()


def fuzz_bundle_manifest(data: bytes) -> None:
    with refusals(ValueError):  # the documented refusal; callers add the file's name
        manifest = parse_manifest(data)
        assert manifest.model_file.startswith("model/")
    with refusals(ConfigError, InputError):  # InputError: larger than a manifest may be
        model_pin(as_file("bundle.json", data))


# -- policy and home config (TOML) ----------------------------------------------------

# Custom detectors run over text like this: non-ASCII (so findings are mapped
# back through the normaliser) and a little of everything the detectors know.
_POLICY_PROBE = (
    "작전명 “한빛” 01O-1234-5678 계좌 110-234-567890 "
    "\uff33\uff25\uff23\uff32\uff25\uff34 대외비\u200b."  # full-width SECRET, a zero-width space
)


def fuzz_policy(data: bytes) -> None:
    path = as_file("policy.toml", data)
    with refusals(PolicyError, InputError):  # InputError: larger than a policy may be
        policy = load_policy(path)
        assert [level.rank for level in policy.levels] == list(range(len(policy.levels)))
        policy.level(policy.default_level)
        assert set(policy.rules) == set(DETECTORS)
        check_text(policy, _POLICY_PROBE)
        check_stream(policy, _POLICY_PROBE, 7)


def fuzz_config(data: bytes) -> None:
    home = scratch() / "home"
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_bytes(data)
    with refusals(ConfigError):
        config = load_home_config(home)
        assert config.language in (None, "en", "ko")
        assert all(isinstance(value, str) and value for value in config.keymap.values())


# -- audit export ---------------------------------------------------------------------


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


# -- DLP: normaliser, detectors, input rules, streamed output guard --------------------


@cache
def dlp_policies() -> tuple[Policy, ...]:
    """The shipped policies, and defense-kr with every detector redacting or allowing."""
    default = load_policy(shipped_policy("default"))
    defense = load_policy(shipped_policy("defense-kr"))

    def every(action: str) -> Policy:
        rule = Rule(action, action, None, action)
        custom = tuple(dataclasses.replace(c, rule=rule) for c in defense.custom)
        return dataclasses.replace(
            defense, rules=dict.fromkeys(DETECTORS, rule), custom=custom, _by_id={}
        )

    return default, defense, every("redact"), every("allow")


def fuzz_dlp(data: bytes) -> None:
    """First byte: the policy (bits 0-1); the rest is the text, normalised and checked."""
    if data:
        check_text(dlp_policies()[data[0] & 3], _text(data[1:]))


def fuzz_dlp_stream(data: bytes) -> None:
    """First byte: the policy (bits 0-1) and the size of the streamed pieces (bits 2-5)."""
    if data:
        check_stream(dlp_policies()[data[0] & 3], _text(data[1:]), 1 + (data[0] >> 2 & 15))


def _text(data: bytes) -> str:
    # surrogateescape: text read from a terminal or file can carry undecodable bytes
    return data.decode("utf-8", "surrogateescape")


def check_text(policy: Policy, text: str) -> None:
    """Normalise, scan and check `text`: every span inside it, nothing raised."""
    norm = normalise(text)
    assert len(norm.digits) == len(norm.text)
    if norm.starts is not None and norm.ends is not None:
        assert len(norm.starts) == len(norm.ends) == len(norm.text)
        assert all(0 <= s < e <= len(text) for s, e in zip(norm.starts, norm.ends, strict=True))
        assert norm.starts == sorted(norm.starts)

    findings = scan(text, policy)
    _check_spans(findings, len(text))

    lowest = policy.lowest
    checked = check_input(policy, text, lowest)
    assert checked.findings == findings
    assert checked.label.rank >= lowest.rank
    _check_redaction(text, checked.text, findings, checked.actions)
    added = check_added(policy, text, lowest)
    assert added.blocked is None
    assert added.label == lowest
    _check_redaction(text, added.text, findings, added.actions)


def check_stream(policy: Policy, text: str, piece: int) -> None:
    """Stream `text` through the output guard in pieces of `piece` characters."""
    guard = OutputGuard(policy, policy.lowest)
    pieces = [text[i : i + piece] for i in range(0, len(text), piece)]
    shown = "".join(guard.feed(part) for part in pieces) + guard.finish()
    _check_spans(guard.findings, len(text), overlapping=True)
    if guard.blocked is None:
        assert len(shown) <= len(text)
        if "redact" not in guard.actions:
            assert shown == text
    else:
        assert "block" in guard.actions


def _check_spans(findings: list[Finding], size: int, *, overlapping: bool = False) -> None:
    end = 0
    for finding in findings:
        assert 0 <= finding.start < finding.end <= size, finding
        assert overlapping or finding.start >= end, "findings overlap"
        end = finding.end


def _check_redaction(text: str, redacted: str, findings: list[Finding], actions: list[str]) -> None:
    """Masks keep separators, drop invisible characters and never lengthen the text."""
    assert len(actions) == len(findings)
    if "redact" not in actions:
        assert redacted == text
        return
    assert len(redacted) <= len(text)
    for finding, action in zip(findings, actions, strict=True):
        if action == "redact":
            masked = mask(text[finding.start : finding.end])
            assert masked in redacted
            assert not any(part.isalnum() for char in masked if char != "*" for part in fold(char))


# -- service: the wire protocol a hostile client speaks -------------------------------


def fuzz_protocol(data: bytes) -> None:
    """Framing (at most 64 KiB a line here), JSON, then the request's fields."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(data[: 256 << 10])
        theirs.shutdown(socket.SHUT_WR)
        reader = LineReader(ours, max_line=64 << 10)
        with refusals(ProtocolError):
            while (line := reader.read()) is not None:
                with refusals(ProtocolError, UsageError):
                    request = parse_request(decode(line))
                    assert request.op in OPS
                    assert set(request.args) <= set(OPS[request.op])


# -- documents: what the service and the parser child make of untrusted bytes ---------

# Small, so that an archive the fuzzer makes cannot take long to inflate.
DOC_ZIP_LIMITS = ZipLimits(entries=64, total_bytes=1 << 20, ratio=200)
_FAMILIES = {"hwpx": "zip", "docx": "zip", "hwp5": "ole", "pdf": "pdf", "text": "text"}


def fuzz_doc_sniff(data: bytes) -> None:
    """The service's look at the leading bytes, the child's sniffing and its ZIP reader."""
    family = None
    with refusals(DocumentError):
        family = sniff_family(data[:4096])
        assert family in ("zip", "ole", "pdf", "text")
    with refusals(DocumentError):
        fmt = sniff(data)
        assert _FAMILIES[fmt] == family  # the service never refuses what the child takes
    with refusals(DocumentError):
        parts = read_zip_parts(data, DOC_ZIP_LIMITS)
        assert len(parts) <= DOC_ZIP_LIMITS.entries
        assert sum(map(len, parts.values())) <= DOC_ZIP_LIMITS.total_bytes
        assert not any(name.endswith("/") for name in parts)


def fuzz_doc_answer(data: bytes) -> None:
    """The parent's reading of a parser child's answer (the JSON after the length).

    Whatever a compromised child sends is refused in one sentence, or is a
    result the service can store: fields in range, text that encodes, chunks.
    """
    with refusals(DocumentError):
        _check_parsed(sandbox._decode(data))


def _check_parsed(parsed: Parsed) -> None:
    assert parsed.format in FORMATS
    assert len(parsed.title) <= sandbox.TITLE_CHARS
    parsed.title.encode()
    assert parsed.pages is None or 0 <= parsed.pages <= sandbox.MOST_PAGES
    for block in parsed.blocks:
        assert block.kind in KINDS
        block.text.encode()
        for place in (block.page, block.section):
            assert place is None or 1 <= place <= sandbox.MOST_PAGES
    for chunk in chunk_document(parsed):
        chunk.text.encode()


TARGETS: dict[str, Callable[[bytes], None]] = {
    "gguf": fuzz_gguf,
    "sealed": fuzz_sealed,
    "bundle_archive": fuzz_bundle_archive,
    "bundle_verify": fuzz_bundle_verify,
    "bundle_manifest": fuzz_bundle_manifest,
    "policy": fuzz_policy,
    "config": fuzz_config,
    "audit_export": fuzz_audit_export,
    "dlp": fuzz_dlp,
    "dlp_stream": fuzz_dlp_stream,
    "protocol": fuzz_protocol,
    "doc_sniff": fuzz_doc_sniff,
    "doc_answer": fuzz_doc_answer,
}
assert TARGETS.keys() == INSTRUMENT.keys()
