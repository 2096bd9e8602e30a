"""Write the seed corpora under tests/fuzz/corpus/ from real inputs made by the real code.

    python -m tests.fuzz.seeds [TARGET...]

Seeds are small, valid files of each kind (GGUFs from tests/ggufs.py, sealed
files, signed bundles, the shipped policies, an audit export, the DLP
corpus, documents from tests/docfiles.py and a parser child's answers to
them): the fuzzer mutates them into the invalid ones. Keys are the
harnesses' fixed ones, so sealed files open and exports verify; the bundle
seeds are signed under a new trust root, written to tests/fuzz/bundle-root.json.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from gguf import GGUFWriter

from appliance.audit import Actor, AuditLog, Event
from appliance.audit.export import write_export
from appliance.bundle import repository
from appliance.bundle.archive import write_bundle
from appliance.documents import child
from appliance.documents.sandbox import ParseLimits
from appliance.policy import shipped_policy
from appliance.seal import Identity, Passphrase, seal_bytes
from appliance.seal.header import MIN_SEGMENT_SIZE
from appliance.seal.keys import MIN_WORK_FACTOR
from appliance.seal.stream import seal_stream
from tests import dlp_corpus, docfiles
from tests.fuzz.harnesses import (
    AUDIT_PRIVATE_KEY,
    BUNDLE_ROOT,
    CORPUS,
    SEALED_IDENTITY,
    TARGETS,
    derived_key,
)
from tests.ggufs import small_gguf, with_chat_template

# Signed metadata expires; seeds signed "in" 2100 stay valid while they are in use.
BUNDLE_EPOCH = datetime(2100, 1, 1, tzinfo=UTC)
BUNDLE_PASS = "fuzz-signing-pass"

Seeds = dict[str, bytes]


def gguf_seeds(work: Path) -> Seeds:
    tiny = small_gguf(work / "tiny.gguf")
    templated = with_chat_template(tiny, work / "templated.gguf", "{{ messages }}")
    return {
        "tiny.gguf": tiny.read_bytes(),
        "templated.gguf": templated.read_bytes(),
        "hparams.gguf": _hparams_gguf(work / "hparams.gguf").read_bytes(),
    }


def _hparams_gguf(path: Path) -> Path:
    """The hyperparameters llama.cpp asserts on, and a tensor per layer."""
    writer = GGUFWriter(str(path), "llama")
    writer.add_block_count(2)
    writer.add_embedding_length(8)
    writer.add_head_count(2)
    writer.add_head_count_kv(1)
    writer.add_expert_count(4)
    writer.add_expert_used_count(2)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_freq_base(10000.0)
    writer.add_uint32("general.alignment", 64)
    writer.add_tensor("blk.0.attn_norm.weight", np.ones(8, dtype=np.float32))
    writer.add_tensor("blk.1.attn_norm.weight", np.ones(8, dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def sealed_seeds(work: Path) -> Seeds:
    other = Identity(X25519PrivateKey.from_private_bytes(derived_key("other"))).recipient
    segmented = io.BytesIO()
    plain = bytes(range(200))
    recipients = [SEALED_IDENTITY.recipient]
    seal_stream(io.BytesIO(plain), len(plain), segmented, recipients, "multi@1",
                segment_size=MIN_SEGMENT_SIZE)  # fmt: skip
    passphrase = Passphrase(b"fuzz", MIN_WORK_FACTOR)
    return {
        "empty.sealed": seal_bytes(b"", recipients, "empty@1"),
        "short.sealed": seal_bytes(b"weights", [other, SEALED_IDENTITY.recipient], "m@1.0.0"),
        "segments.sealed": segmented.getvalue(),
        "passphrase.sealed": seal_bytes(b"text", [passphrase, SEALED_IDENTITY.recipient], "p@1"),
    }


def bundle_seeds(work: Path) -> Seeds:
    """Two signed releases; the second after a root rotation (a chain of two roots)."""
    keys = work / "keys"
    root = repository.init(keys, BUNDLE_PASS, now=BUNDLE_EPOCH)
    first = _bundle(keys, work / "r1", "1.0.0")
    repository.rotate(keys, BUNDLE_PASS, "root", now=BUNDLE_EPOCH)
    second = _bundle(keys, work / "r2", "1.1.0-rc.1")
    BUNDLE_ROOT.write_bytes(root)
    return {"release.bundle": first, "rotated.bundle": second}


def _bundle(keys: Path, files_dir: Path, release: str) -> bytes:
    files_dir.mkdir()
    weights = b"sealed weights " * 8
    model = {"file": "model/m.sealed", "content_id": "m@1",
             "sha256": hashlib.sha256(weights).hexdigest()}  # fmt: skip
    (files_dir / "bundle.json").write_text(json.dumps({"release": release, "model": model}))
    (files_dir / "m.sealed").write_bytes(weights)
    files = {"bundle.json": files_dir / "bundle.json", "model/m.sealed": files_dir / "m.sealed"}
    signed = repository.sign_release(keys, BUNDLE_PASS, files, timestamp_days=30, now=BUNDLE_EPOCH)
    out = files_dir / "out.bundle"
    write_bundle(out, signed.members(), files)
    return out.read_bytes()


def manifest_seeds(work: Path) -> Seeds:
    model = {"file": "model/gemma3-270m-q4_k_m.sealed", "content_id": "gemma3-270m-q4_k_m@1.0.0",
             "sha256": hashlib.sha256(b"").hexdigest()}  # fmt: skip
    document = {"release": "1.4.0", "model": model, "platform": {"python": "3.11"}}
    return {
        "bundle.json": json.dumps(document, indent=2).encode(),
        "compact.json": json.dumps({**document, "release": "2.0.0+build.7"}).encode(),
    }


def policy_seeds(work: Path) -> Seeds:
    return {f"{name}.toml": shipped_policy(name).read_bytes() for name in ("default", "defense-kr")}


def config_seeds(work: Path) -> Seeds:
    return {
        "model.toml": b'[model]\npath = "models/gemma3-270m-q4_k_m.sealed"\n'
        b'identity = ["keys/site.key"]\nmanifest = "current/bundle.json"\n',
        "ui.toml": b'[ui]\nlanguage = "ko"\ndemo = true\n\n[keys]\ncancel = "f9"\n'
        b'audit = "f5,ctrl+l"\n',
        "identity.toml": b'[model]\npath = "m.gguf"\nidentity = "site.key"\n',
    }


def audit_seeds(work: Path) -> Seeds:
    """Exports of a real log: content sealed to an officer, a prune, both formats."""
    directory = work / "audit"
    directory.mkdir()
    pem = AUDIT_PRIVATE_KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (directory / "device.key").write_bytes(pem)
    officer = Actor("lee", "officer")
    kim = Actor("kim", "operator")
    seeds: Seeds = {}
    with AuditLog(directory) as log:
        log.set_officers([SEALED_IDENTITY.recipient], officer)
        for n in range(3):
            event = Event(kim, "ask", "m@1", label="restricted", details={"n": n})
            log.record(event, {"prompt": f"질문 {n}"}, checkpoint=n == 1)
        for fmt in ("jsonl", "csv"):
            sink = io.BytesIO()
            write_export(log, sink, officer, fmt=fmt)
            seeds[f"export.{fmt}"] = sink.getvalue()
        log.prune(2**62, officer, {"reason": "retention"})
        sink = io.BytesIO()
        write_export(log, sink, officer, since=2)
        seeds["pruned-since.jsonl"] = sink.getvalue()
    return seeds


def dlp_seeds(work: Path) -> Seeds:
    """Real prompts: one of each kind of identifier, evasions, and clean text."""
    texts = [sample.text for sample in dlp_corpus.build(per_detector=1)]
    texts += dlp_corpus.CLEAN_UNICODE
    for evasions in dlp_corpus.EVASIONS.values():
        for kind in dlp_corpus.KINDS[:4]:
            sample = dlp_corpus.evaded(kind, evasions[0])
            if sample is not None:
                texts.append(sample.text)
    # The first byte picks the policy and the streamed piece size (harnesses.fuzz_dlp*).
    return {f"{n:03d}.txt": bytes([n * 37 % 64]) + text.encode() for n, text in enumerate(texts)}


_PARAGRAPHS = ["국방 행정 보고서", "둘째 문단입니다."]
_W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
# python-docx's template parts the parsers never read, cut to a root element: the
# template's two style parts are nearly 800 KiB unpacked, too much for the fuzzer to mutate.
_DOCX_STUBS = {
    "word/styles.xml": f"<w:styles {_W}/>".encode(),
    "word/stylesWithEffects.xml": f"<w:styles {_W}/>".encode(),
    "word/theme/theme1.xml": b'<a:theme xmlns:a="http://schemas.openxmlformats.org/'
    b'drawingml/2006/main" name=""/>',
    "docProps/thumbnail.jpeg": b"",
}


def doc_sniff_seeds(work: Path) -> Seeds:
    """Small real documents of every format (tests/docfiles.py), and files that are refused."""
    table = [["구분", "내용"]]
    docx = docfiles.docx_bytes(_PARAGRAPHS, header="대외비", table=table, footnote="각주")
    with zipfile.ZipFile(io.BytesIO(docx)) as archive:
        parts = {info.filename: archive.read(info) for info in archive.infolist()}
    small = io.BytesIO()
    with zipfile.ZipFile(small, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            archive.writestr(name, _DOCX_STUBS.get(name, data))
    return {
        "report.hwpx": docfiles.hwpx_bytes(_PARAGRAPHS, header="대외비", table=table),
        "report.hwp": docfiles.hwp5_bytes(_PARAGRAPHS, header="대외비"),
        "report.docx": small.getvalue(),
        "report.pdf": docfiles.pdf_bytes([_PARAGRAPHS], header="대외비", title="보고서"),
        "report.txt": "\ufeff# 보고서\n\n국방 행정 보고서\n둘째 줄\n".encode(),
        "report-utf16.txt": "국방 행정 보고서\r\n둘째 줄\r\n".encode("utf-16"),
        "report.xml": docfiles.HWPML,
        "legacy.doc": docfiles.legacy_doc(),
        "hwp3.hwp": docfiles.HWP3,
    }


def doc_answer_seeds(work: Path) -> Seeds:
    """The answers a parser child gives for the documents above, and some it must not give."""
    limits = dataclasses.asdict(ParseLimits())
    seeds = {
        f"{Path(name).stem}-{Path(name).suffix[1:]}.json": child._answer(data, limits)
        for name, data in doc_sniff_seeds(work).items()
    }
    block = {"text": "본문", "kind": "body", "page": 1, "section": None}
    answer = {"format": "pdf", "title": "제목", "pages": 1, "blocks": [block]}
    invalid = {
        "bad-kind.json": {**answer, "blocks": [{**block, "kind": "secret"}]},
        "bad-page.json": {**answer, "blocks": [{**block, "page": 0}]},
        "extra-field.json": {**answer, "pid": 1},
        "odd-code.json": {"error": {"code": "rm -rf", "message": "hi"}},
        "control-message.json": {"error": {"code": "malformed", "message": "\x1b[2J"}},
    }
    seeds.update({name: json.dumps(value).encode() for name, value in invalid.items()})
    return seeds


SEEDS: dict[str, Callable[[Path], Seeds]] = {
    "gguf": gguf_seeds,
    "sealed": sealed_seeds,
    "bundle_archive": bundle_seeds,
    "bundle_verify": bundle_seeds,
    "bundle_manifest": manifest_seeds,
    "policy": policy_seeds,
    "config": config_seeds,
    "audit_export": audit_seeds,
    "dlp": dlp_seeds,
    "dlp_stream": dlp_seeds,
    "doc_sniff": doc_sniff_seeds,
    "doc_answer": doc_answer_seeds,
}


def main(targets: list[str]) -> None:
    assert set(SEEDS) <= set(TARGETS)  # protocol's seeds are written by hand
    targets = targets or list(SEEDS)
    if {"bundle_archive", "bundle_verify"} & set(targets):  # one signed root for both
        targets += ["bundle_archive", "bundle_verify"]
    made: dict[Callable[[Path], Seeds], Seeds] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for target in dict.fromkeys(targets):
            make = SEEDS[target]
            if make not in made:  # the two bundle targets share one signed root
                work = Path(scratch) / target
                work.mkdir()
                made[make] = make(work)
            folder = CORPUS / target
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            for name, data in made[make].items():
                (folder / name).write_bytes(data)
            print(f"{folder}: {len(made[make])} seeds")


if __name__ == "__main__":
    main(sys.argv[1:])
