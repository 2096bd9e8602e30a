"""Every harness, one per parser that reads untrusted bytes, shared by atheris and pytest.

Each `fuzz_<target>(data)` feeds `data` to the parser the way the appliance
does (a file on disk where the parser opens a path) and asserts its contract:
for any bytes it either returns a valid result or raises the module's own
documented error (one sentence, a stable exit code). Any other exception, an
assertion failure, a hang or unbounded memory is a bug. DLP functions take
any text and must never raise; their spans must lie inside the text.

The harnesses live in `harness/`, one module per target (targets.HARNESS), so
that a fuzzer imports only its own parser; this module gathers them all.
`run.py` drives one under atheris; `tests/test_fuzz.py` replays the seed
corpora (`corpus/<target>/`) and every past crash (`regressions/<target>/`).
"""

from __future__ import annotations

from collections.abc import Callable

from tests.fuzz.harness.audit_export import (
    AUDIT_KEY,
    AUDIT_PRIVATE_KEY,
    fuzz_audit_export,
    resigned,
)
from tests.fuzz.harness.bundle_archive import fuzz_bundle_archive
from tests.fuzz.harness.bundle_manifest import fuzz_bundle_manifest
from tests.fuzz.harness.bundle_verify import fuzz_bundle_verify
from tests.fuzz.harness.common import BUNDLE_ROOT, CORPUS, REGRESSIONS, derived_key
from tests.fuzz.harness.config import fuzz_config
from tests.fuzz.harness.dlp import fuzz_dlp, fuzz_dlp_stream
from tests.fuzz.harness.doc_answer import fuzz_doc_answer
from tests.fuzz.harness.doc_sniff import fuzz_doc_sniff
from tests.fuzz.harness.gguf import fuzz_gguf
from tests.fuzz.harness.policy import fuzz_policy
from tests.fuzz.harness.protocol import fuzz_protocol
from tests.fuzz.harness.sealed import SEALED_IDENTITY, fuzz_sealed
from tests.fuzz.targets import HARNESS, INSTRUMENT

__all__ = [
    "AUDIT_KEY",
    "AUDIT_PRIVATE_KEY",
    "BUNDLE_ROOT",
    "CORPUS",
    "REGRESSIONS",
    "SEALED_IDENTITY",
    "TARGETS",
    "derived_key",
    "resigned",
]

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
assert TARGETS.keys() == INSTRUMENT.keys() == HARNESS.keys()
# run.py finds each harness as HARNESS says: fuzz_<target> in that module.
assert all((f.__name__, f.__module__) == (f"fuzz_{t}", HARNESS[t]) for t, f in TARGETS.items())
