"""The sealed format: round trips, published vectors, and every attack failing closed."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance import seal
from appliance.errors import CredentialError, InputError, IntegrityError, UsageError
from appliance.seal.header import TAG_SIZE, b64decode, b64encode, parse_header
from appliance.seal.stream import open_segments, read_header, seal_stream, unlock
from tests import sealed_vectors

SEGMENT = 1024
ALICE = seal.Identity.generate()
BOB = seal.Identity.generate()


def seal_bytes(data: bytes, sealers=None, segment_size: int = SEGMENT, content_id="test@1"):
    sink = io.BytesIO()
    seal_stream(
        io.BytesIO(data),
        len(data),
        sink,
        sealers or [ALICE.recipient],
        content_id,
        segment_size=segment_size,
    )
    return sink.getvalue()


def open_bytes(data: bytes, openers=None) -> bytes:
    handle = io.BytesIO(data)
    parsed = read_header(handle, "test.sealed")
    file_key = unlock(parsed, openers or [ALICE], "test.sealed")
    return b"".join(bytes(s) for s in open_segments(handle, parsed, file_key, "test.sealed"))


def segments_of(data: bytes, segment_size: int = SEGMENT) -> tuple[bytes, list[bytes]]:
    size = read_header(io.BytesIO(data), "x").size
    step = segment_size + TAG_SIZE
    body = data[size:]
    return data[:size], [body[i : i + step] for i in range(0, len(body), step)]


# -- round trips -------------------------------------------------------------


@pytest.mark.parametrize(
    "length", [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT, 5 * SEGMENT + 17]
)
def test_round_trip_at_segment_edges(length: int) -> None:
    data = os.urandom(length)
    sealed = seal_bytes(data)
    assert open_bytes(sealed) == data
    expected_segments = max(1, -(-length // SEGMENT))
    assert len(sealed) == len(segments_of(sealed)[0]) + length + TAG_SIZE * expected_segments


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=2000), segment_size=st.integers(min_value=64, max_value=700))
def test_round_trip_property(data: bytes, segment_size: int) -> None:
    assert open_bytes(seal_bytes(data, segment_size=segment_size)) == data


def test_default_segment_size_round_trip() -> None:
    data = os.urandom(seal.DEFAULT_SEGMENT_SIZE + 1)
    assert open_bytes(seal_bytes(data, segment_size=seal.DEFAULT_SEGMENT_SIZE)) == data


def test_each_recipient_opens_and_a_stranger_does_not() -> None:
    sealed = seal_bytes(b"for both", [ALICE.recipient, BOB.recipient])
    assert open_bytes(sealed, [ALICE]) == b"for both"
    assert open_bytes(sealed, [BOB]) == b"for both"
    with pytest.raises(CredentialError):
        open_bytes(sealed, [seal.Identity.generate()])


def test_passphrase_slot_beside_a_recipient() -> None:
    phrase = seal.Passphrase(b"escrow phrase", work_factor=17)
    sealed = seal_bytes(b"payload", [ALICE.recipient, phrase])
    assert open_bytes(sealed, [seal.Passphrase(b"escrow phrase", work_factor=17)]) == b"payload"
    with pytest.raises(CredentialError):
        open_bytes(sealed, [seal.Passphrase(b"wrong phrase", work_factor=17)])


def test_two_sealings_of_the_same_bytes_share_nothing() -> None:
    first, second = seal_bytes(b"same"), seal_bytes(b"same")
    assert first != second
    assert segments_of(first)[1] != segments_of(second)[1]


# -- the published vectors ---------------------------------------------------


def test_vectors_are_what_the_generator_produces(tmp_path: Path) -> None:
    sealed_vectors.write(tmp_path)
    published = sealed_vectors.VECTORS
    names = sorted(p.name for p in published.iterdir())
    assert names == sorted(p.name for p in tmp_path.iterdir())
    for name in names:
        assert (tmp_path / name).read_bytes() == (published / name).read_bytes(), name


def test_every_vector_opens_or_fails_as_published() -> None:
    manifest = tomllib.loads((sealed_vectors.VECTORS / "vectors.toml").read_text())
    keys = {
        "alice": seal.Identity.parse(manifest["alice"]),
        "bob": seal.Identity.parse(manifest["bob"]),
        "passphrase": seal.Passphrase(manifest["passphrase"].encode(), work_factor=17),
    }
    errors = {"integrity": IntegrityError, "credential": CredentialError}
    assert len(manifest["vector"]) >= 15
    for vector in manifest["vector"]:
        data = (sealed_vectors.VECTORS / vector["file"]).read_bytes()
        opener = keys[vector["key"]]
        if vector["expect"] == "ok":
            plain = open_bytes(data, [opener])
            assert plain == sealed_vectors.plaintext(vector["plaintext_length"]), vector["file"]
        else:
            with pytest.raises(errors[vector["expect"]]):
                open_bytes(data, [opener])


# -- attacks -----------------------------------------------------------------

THREE = os.urandom(3 * SEGMENT - 5)


@pytest.fixture(scope="module")
def three() -> bytes:
    return seal_bytes(THREE)


def attack(data: bytes, message: str) -> None:
    with pytest.raises(IntegrityError, match=message):
        open_bytes(data)


def test_truncation_at_a_boundary(three: bytes) -> None:
    head, parts = segments_of(three)
    attack(head + parts[0] + parts[1], "truncated at a segment boundary")
    attack(head, "truncated at a segment boundary")


def test_truncation_inside_a_segment(three: bytes) -> None:
    attack(three[:-1], "truncated inside a segment")
    head, parts = segments_of(three)
    attack(head + parts[0][:100], "truncated inside a segment")


def test_dropped_and_swapped_segments(three: bytes) -> None:
    head, parts = segments_of(three)
    attack(head + parts[0] + parts[2], "fails authentication|truncated")
    attack(head + parts[1] + parts[0] + parts[2], "segment 1 of 3 fails authentication")


def test_appended_bytes_and_segments(three: bytes) -> None:
    _, parts = segments_of(three)
    attack(three + b"\x00", "bytes after its final segment")
    attack(three + parts[2], "bytes after its final segment")


def test_segment_from_another_file(three: bytes) -> None:
    _, other_parts = segments_of(seal_bytes(THREE))
    head, parts = segments_of(three)
    attack(head + parts[0] + other_parts[1] + parts[2], "segment 2 of 3 fails authentication")


@pytest.mark.parametrize("where", ["body", "tag"])
def test_bit_flips_in_the_payload(three: bytes, where: str) -> None:
    head, _ = segments_of(three)
    offset = len(head) + (10 if where == "body" else SEGMENT + 3)
    for bit in (0x01, 0x80):
        flipped = bytearray(three)
        flipped[offset] ^= bit
        attack(bytes(flipped), "fails authentication")


def test_every_header_byte_is_authenticated(three: bytes) -> None:
    """A flip anywhere in the header is refused: by the parser or by the MAC."""
    head, _ = segments_of(three)
    for offset in range(len(head)):
        flipped = bytearray(three)
        flipped[offset] ^= 0x01
        with pytest.raises((IntegrityError, InputError, CredentialError)):
            open_bytes(bytes(flipped))


def test_relabelled_content_id_is_refused(three: bytes) -> None:
    relabelled = three.replace(b"content-id: test@1", b"content-id: test@2")
    attack(relabelled, "header was modified")


def test_expected_content_id_is_enforced(tmp_path: Path) -> None:
    source = tmp_path / "model.bin"
    source.write_bytes(b"release one")
    sealed = tmp_path / "model.sealed"
    seal.seal_file(source, sealed, [ALICE.recipient], "model@1")
    with pytest.raises(IntegrityError, match="holds 'model@1', not the expected 'model@2'"):
        seal.unseal_file(sealed, tmp_path / "out", [ALICE], expect_content_id="model@2")
    assert not (tmp_path / "out").exists()


def test_work_factor_bounds_are_enforced() -> None:
    weak = seal_bytes(b"x", [seal.Passphrase(b"pw", work_factor=17)])
    downgraded = weak.replace(b" 17\n", b" 16\n")
    with pytest.raises(IntegrityError, match="work factor 16"):
        open_bytes(downgraded, [seal.Passphrase(b"pw", work_factor=17)])
    with pytest.raises(UsageError):
        seal.Passphrase(b"pw", work_factor=12)


def test_not_a_sealed_file() -> None:
    with pytest.raises(InputError, match="not a sealed file"):
        parse_header(b"GGUF\x03\x00\x00\x00", "model.gguf")


def test_unknown_suite_is_refused(three: bytes) -> None:
    with pytest.raises(InputError, match="ARIA-256-GCM"):
        parse_header(three.replace(b"AES-256-GCM", b"ARIA-256-GCM"), "x")


def test_base64_is_canonical_only() -> None:
    assert b64decode(b64encode(b"\x00\xff\x10")) == b"\x00\xff\x10"
    for bad in ("AA==", "AB", "A A", "Zm9v\n", "é"):
        with pytest.raises(ValueError, match="base64"):
            b64decode(bad)


# -- keys ---------------------------------------------------------------------


def test_recipient_and_identity_text_round_trip() -> None:
    text = str(ALICE.recipient)
    assert text.startswith("apr1")
    assert seal.Recipient.parse(text.upper()) == ALICE.recipient
    secret = ALICE.secret_text()
    assert seal.Identity.parse(secret.lower()).recipient == ALICE.recipient


def test_mistyped_keys_are_caught_by_the_checksum() -> None:
    text = str(ALICE.recipient)
    typo = text[:10] + ("a" if text[10] != "a" else "b") + text[11:]
    with pytest.raises(UsageError, match="not a valid recipient"):
        seal.Recipient.parse(typo)
    with pytest.raises(UsageError, match="not a valid recipient"):
        seal.Recipient.parse(text[:-1])
    secret = ALICE.secret_text()
    with pytest.raises(UsageError, match="not a valid identity") as caught:
        seal.Identity.parse(secret[:-2] + "AA")
    assert secret[22:] not in str(caught.value)  # a secret is never echoed


def test_identity_file_wrapped_by_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "site.key"
    seal.write_identity(path, ALICE, seal.Passphrase(b"officer", work_factor=17))
    assert path.stat().st_mode & 0o777 == 0o600
    assert b"APPLIANCE-SECRET-KEY" not in path.read_bytes()
    loaded = seal.read_identity(path, lambda: seal.Passphrase(b"officer", work_factor=17))
    assert loaded.recipient == ALICE.recipient
    with pytest.raises(CredentialError, match="wrong passphrase for the identity"):
        seal.read_identity(path, lambda: seal.Passphrase(b"guess", work_factor=17))
    with pytest.raises(UsageError, match="already exists"):
        seal.write_identity(path, BOB, None)


def test_plain_identity_file_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "service.key"
    seal.write_identity(path, BOB, None)

    def never() -> seal.Passphrase:
        raise AssertionError("a plain identity needs no passphrase")

    assert seal.read_identity(path, never).recipient == BOB.recipient
    path.chmod(0o644)
    with pytest.raises(InputError, match="readable by other users"):
        seal.read_identity(path, never)


def test_a_sealed_model_is_not_an_identity(tmp_path: Path) -> None:
    path = tmp_path / "model.sealed"
    path.write_bytes(seal_bytes(b"weights"))
    with pytest.raises(InputError, match="not an identity"):
        seal.read_identity(path, lambda: seal.Passphrase(b"x", work_factor=17))


# -- files and sealed memory --------------------------------------------------


def test_failed_unseal_leaves_nothing(tmp_path: Path, three: bytes) -> None:
    sealed = tmp_path / "cut.sealed"
    sealed.write_bytes(three[:-10])
    with pytest.raises(IntegrityError):
        seal.unseal_file(sealed, tmp_path / "plain", [ALICE])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.sealed"]


def test_load_sealed_gives_a_sealed_memfd(tmp_path: Path) -> None:
    data = os.urandom(3 * SEGMENT + 1)
    source = tmp_path / "data.bin"
    source.write_bytes(data)
    sealed_path = tmp_path / "data.sealed"
    seal.seal_file(source, sealed_path, [ALICE.recipient], "data@1", segment_size=SEGMENT)
    loaded = seal.load_sealed(sealed_path, [ALICE])
    try:
        assert os.readlink(f"/proc/self/fd/{loaded.memory.fd}").startswith("/memfd:")
        with open(loaded.path, "rb") as reader:
            assert reader.read() == data
        with pytest.raises(PermissionError):
            os.pwrite(loaded.memory.fd, b"x", 0)
        with pytest.raises(PermissionError):
            os.ftruncate(loaded.memory.fd, 1)
        with pytest.raises(PermissionError):
            os.ftruncate(loaded.memory.fd, len(data) + 4096)
        assert loaded.report.sealed
        assert loaded.report.non_dumpable
        assert loaded.sha256 == hashlib.sha256(data).hexdigest()
    finally:
        loaded.close()


def test_load_sealed_holds_to_a_pinned_sha256(tmp_path: Path) -> None:
    """A pin (from a signed bundle manifest): the same bytes load as pinned; any
    other plaintext is refused and leaves no memory behind."""
    data = os.urandom(2 * SEGMENT + 7)
    sealed_path = tmp_path / "data.sealed"
    sealed_path.write_bytes(seal_bytes(data))
    digest = hashlib.sha256(data).hexdigest()
    loaded = seal.load_sealed(sealed_path, [ALICE], expect_sha256=digest)
    try:
        assert loaded.pinned
        assert loaded.sha256 == digest
    finally:
        loaded.close()
    unpinned = seal.load_sealed(sealed_path, [ALICE])
    unpinned.close()
    assert not unpinned.pinned
    before = set(os.listdir("/proc/self/fd"))
    other = hashlib.sha256(b"other").hexdigest()
    with pytest.raises(IntegrityError, match="does not decrypt to the sha256 it is pinned to"):
        seal.load_sealed(sealed_path, [ALICE], expect_sha256=other)
    assert set(os.listdir("/proc/self/fd")) <= before


def test_loading_plaintext_hardens_the_process(tmp_path: Path) -> None:
    """Non-dumpable and no core file, in a fresh process (this one may already be)."""
    code = f"""
import resource
from pathlib import Path
from appliance import seal
identity = seal.Identity.parse({ALICE.secret_text()!r})
print(seal.is_hardened(), end=" ")
loaded = seal.load_sealed(Path({str(tmp_path / "x.sealed")!r}), [identity])
print(seal.is_hardened(), resource.getrlimit(resource.RLIMIT_CORE))
"""
    (tmp_path / "x.sealed").write_bytes(seal_bytes(b"weights"))
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split(" ", 1) == ["False", "True (0, 0)\n"]


def test_load_sealed_failure_releases_the_memory(tmp_path: Path, three: bytes) -> None:
    sealed = tmp_path / "bad.sealed"
    sealed.write_bytes(three[:-1])
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(IntegrityError):
        seal.load_sealed(sealed, [ALICE])
    assert set(os.listdir("/proc/self/fd")) <= before


def test_seal_refuses_to_overwrite(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.write_bytes(b"x")
    target = tmp_path / "out"
    target.write_bytes(b"keep me")
    with pytest.raises(UsageError, match="already exists"):
        seal.seal_file(source, target, [ALICE.recipient], "x@1")
    assert target.read_bytes() == b"keep me"


def test_memory_report_says_what_held() -> None:
    locked = seal.MemoryReport(True, True, 1234, swap_active=False, non_dumpable=True)
    assert "locked in RAM (VmLck 1,234 kB)" in locked.describe()
    assert locked.warning is None
    unlocked_swap = seal.MemoryReport(True, False, 0, swap_active=True, non_dumpable=True)
    assert "NOT locked" in unlocked_swap.describe()
    assert "may be written to swap" in (unlocked_swap.warning or "")
    locked_swap = seal.MemoryReport(True, True, 1234, swap_active=True, non_dumpable=True)
    assert "encrypted swap" in (locked_swap.warning or "")


def test_sealing_and_unsealing_use_memory_of_a_segment_not_a_file(tmp_path: Path) -> None:
    """Peak RSS grows by a few segments, not by the 96 MiB being processed."""
    code = f"""
import os, resource, sys
from pathlib import Path
from appliance import seal
work = Path({str(tmp_path)!r})
source = work / "big.bin"
with open(source, "wb") as f:
    f.truncate(96 << 20)
identity = seal.Identity.generate()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
seal.seal_file(source, work / "big.sealed", [identity.recipient], "big@1")
seal.unseal_file(work / "big.sealed", work / "back.bin", [identity])
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(grown)
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    grown_kib = int(result.stdout)
    assert grown_kib < 16 * 1024, f"peak RSS grew by {grown_kib} KiB"
    assert (tmp_path / "back.bin").stat().st_size == 96 << 20
