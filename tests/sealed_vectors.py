"""Builds the published test vectors of docs/formats/sealed.md, deterministically.

Run `python -m tests.sealed_vectors` to rewrite docs/formats/sealed-vectors/;
the test suite checks that the files there are exactly what this produces and
that each one opens, or fails, as its manifest entry says.
"""

from __future__ import annotations

import hashlib
import io
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.seal import Identity, Passphrase
from appliance.seal.header import TAG_SIZE, payload_key
from appliance.seal.stream import read_header, seal_stream, segment_nonce

VECTORS = Path(__file__).resolve().parent.parent / "docs" / "formats" / "sealed-vectors"
SEGMENT = 64
# Keys published with the vectors: test keys, never used for anything else.
ALICE = Identity(X25519PrivateKey.from_private_bytes(hashlib.sha256(b"alice").digest()))
BOB = Identity(X25519PrivateKey.from_private_bytes(hashlib.sha256(b"bob").digest()))
PASSPHRASE = b"sealed test vector passphrase"


class Deterministic:
    """SHAKE-256 of a label: the 'random' bytes of one vector, reproducible."""

    def __init__(self, label: str) -> None:
        self.stream = hashlib.shake_256(f"appliance-sealed/v1 vector {label}".encode())
        self.used = 0

    def __call__(self, size: int) -> bytes:
        start, self.used = self.used, self.used + size
        return self.stream.digest(self.used)[start:]


def plaintext(length: int) -> bytes:
    return bytes(i % 251 for i in range(length))


def sealed(label: str, length: int, sealers: list, content_id: str = "vector@1") -> bytes:
    sink = io.BytesIO()
    seal_stream(
        io.BytesIO(plaintext(length)),
        length,
        sink,
        sealers,
        content_id,
        segment_size=SEGMENT,
        random=Deterministic(label),
    )
    return sink.getvalue()


def _split(data: bytes) -> tuple[bytes, list[bytes]]:
    parsed = read_header(io.BytesIO(data), "vector")
    body = data[parsed.size :]
    step = SEGMENT + TAG_SIZE
    return data[: parsed.size], [body[i : i + step] for i in range(0, len(body), step)]


def _without_final_flag() -> bytes:
    """A whole file whose last segment was sealed with the 'not last' flag."""
    data = sealed("no-final-flag", 100, [ALICE.recipient])
    file_key = Deterministic("no-final-flag")(32)  # seal_stream draws the file key first
    parsed = read_header(io.BytesIO(data), "vector")
    aead = AESGCM(payload_key(parsed.header, file_key))
    text = plaintext(100)
    last = aead.encrypt(segment_nonce(1, False), text[SEGMENT:], None)
    return data[: len(data) - len(last)] + last


def build() -> dict[str, tuple[bytes, str, str]]:
    """name -> (file bytes, key to open with, expected outcome)."""
    three = sealed("three-segments", 150, [ALICE.recipient])
    head, parts = _split(three)
    flipped_header = three.replace(b"content-id: vector@1", b"content-id: vector@2")
    body_flip = bytearray(three)
    body_flip[len(head) + 5] ^= 0x01
    tag_flip = bytearray(three)
    tag_flip[len(head) + SEGMENT + TAG_SIZE - 1] ^= 0x80
    return {
        "empty": (sealed("empty", 0, [ALICE.recipient]), "alice", "ok"),
        "one-byte": (sealed("one-byte", 1, [ALICE.recipient]), "alice", "ok"),
        "one-segment": (sealed("one-segment", 64, [ALICE.recipient]), "alice", "ok"),
        "three-segments": (three, "alice", "ok"),
        "two-recipients": (
            sealed("two-recipients", 70, [ALICE.recipient, BOB.recipient]),
            "bob",
            "ok",
        ),
        "passphrase": (
            sealed("passphrase", 70, [Passphrase(PASSPHRASE, work_factor=17)]),
            "passphrase",
            "ok",
        ),
        "wrong-identity": (three, "bob", "credential"),
        "header-modified": (flipped_header, "alice", "integrity"),
        "body-bit-flip": (bytes(body_flip), "alice", "integrity"),
        "tag-bit-flip": (bytes(tag_flip), "alice", "integrity"),
        "truncated-at-boundary": (head + parts[0] + parts[1], "alice", "integrity"),
        "truncated-mid-segment": (head + parts[0] + parts[1][:30], "alice", "integrity"),
        "dropped-segment": (head + parts[0] + parts[2], "alice", "integrity"),
        "swapped-segments": (head + parts[1] + parts[0] + parts[2], "alice", "integrity"),
        "appended-bytes": (three + b"\x00", "alice", "integrity"),
        "appended-segment": (three + parts[2], "alice", "integrity"),
        "no-final-flag": (_without_final_flag(), "alice", "integrity"),
    }


def manifest(vectors: dict[str, tuple[bytes, str, str]]) -> str:
    lines = [
        "# Test vectors for docs/formats/sealed.md. Each file opens with `key`",
        "# (alice, bob: the identities below; passphrase: the passphrase below)",
        "# and either yields the plaintext (byte i = i mod 251) or fails.",
        f'alice = "{ALICE.secret_text()}"',
        f'bob = "{BOB.secret_text()}"',
        f'passphrase = "{PASSPHRASE.decode()}"',
        "",
    ]
    for name, (data, key, outcome) in vectors.items():
        lines += [
            "[[vector]]",
            f'file = "{name}.sealed"',
            f'key = "{key}"',
            f'expect = "{outcome}"',
            f'sha256 = "{hashlib.sha256(data).hexdigest()}"',
        ]
        if outcome == "ok":
            length = read_header(io.BytesIO(data), name).header.length
            lines.append(f"plaintext_length = {length}")
        lines.append("")
    return "\n".join(lines)


def write(directory: Path = VECTORS) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    vectors = build()
    for name, (data, _, _) in vectors.items():
        (directory / f"{name}.sealed").write_bytes(data)
    (directory / "vectors.toml").write_text(manifest(vectors), encoding="utf-8")


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else VECTORS)
