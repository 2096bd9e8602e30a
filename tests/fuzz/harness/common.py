"""What every harness shares: the seed folders, fixed keys, the refusal contract, scratch files."""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from appliance.errors import ApplianceError, DocumentError

FUZZ_DIR = Path(__file__).resolve().parent.parent
CORPUS = FUZZ_DIR / "corpus"
REGRESSIONS = FUZZ_DIR / "regressions"
# The trusted root the bundle seeds were signed under (made with them by seeds.py).
BUNDLE_ROOT = FUZZ_DIR / "bundle-root.json"


def derived_key(label: str) -> bytes:
    """Fixed key material, so that committed seeds open under the harness's keys."""
    return hashlib.sha256(b"appliance fuzz " + label.encode()).digest()


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
        from appliance.documents import sandbox  # only the document targets raise these

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
