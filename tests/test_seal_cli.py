"""Sealed models end to end: keys, seal, inspect, unseal and ask, as a user runs them."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import pytest

from appliance import seal
from appliance.audit import audit_dir
from appliance.errors import HostSecurityError
from appliance.seal.header import TAG_SIZE, parse_header
from tests.conftest import assert_one_line_error, in_private_mounts, run_cli

pytestmark = pytest.mark.model

ASK = ["ask", "--max-tokens", "12", "--temperature", "0", "--seed", "7", "The sky is"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, seal.Identity]:
    """An unwrapped service identity (no scrypt cost per test)."""
    directory = tmp_path_factory.mktemp("keys")
    identity = seal.Identity.generate()
    path = directory / "site.key"
    seal.write_identity(path, identity, None)
    return path, identity


@pytest.fixture(scope="module")
def sealed_model(model_path: Path, model_home: Path, site, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sealed") / "default.sealed"
    result = run_cli(
        "seal", str(model_path), str(out), "--recipient", str(site[1].recipient), home=model_home
    )
    assert result.returncode == 0, result.stderr
    assert "gemma3-270m-q4_k_m@1.0.0" in result.stdout
    return out


def copy_with(source: Path, target: Path, edit) -> Path:
    data = bytearray(source.read_bytes())
    target.write_bytes(edit(data))
    return target


def test_keys_generate_wraps_the_identity(tmp_path: Path, model_home: Path) -> None:
    passphrase = tmp_path / "pass"
    passphrase.write_text("correct horse battery\n")
    passphrase.chmod(0o600)  # a secret file only its owner may read
    key = tmp_path / "officer.key"
    result = run_cli(
        "keys",
        "generate",
        "--out",
        str(key),
        "--passphrase-file",
        str(passphrase),
        home=model_home,
    )
    assert result.returncode == 0, result.stderr
    recipient = seal.Recipient.parse(result.stdout.strip().splitlines()[-1])
    assert key.stat().st_mode & 0o777 == 0o600
    assert b"APPLIANCE-SECRET-KEY" not in key.read_bytes()
    assert "correct horse" not in result.stdout + result.stderr
    identity = seal.read_identity(key, lambda: seal.Passphrase(b"correct horse battery"))
    assert identity.recipient == recipient
    again = run_cli("keys", "generate", "--out", str(key), "--no-passphrase", home=model_home)
    assert_one_line_error(again, 2, "already exists")


def test_passphrase_is_never_read_without_a_terminal(tmp_path: Path, model_home: Path) -> None:
    result = run_cli("keys", "generate", "--out", str(tmp_path / "k"), home=model_home)
    assert_one_line_error(result, 2, "no terminal")
    assert not (tmp_path / "k").exists()


def test_seal_inspect_reads_the_header_without_a_key(sealed_model: Path, model_home) -> None:
    result = run_cli("seal", "inspect", str(sealed_model), "--json", home=model_home)
    assert result.returncode == 0, result.stderr
    fields = json.loads(result.stdout)
    assert fields["content_id"] == "gemma3-270m-q4_k_m@1.0.0"
    assert fields["suite"] == "AES-256-GCM"
    assert fields["segment_size"] == seal.DEFAULT_SEGMENT_SIZE
    assert fields["key_slots"] == ["X25519"]
    assert fields["size_consistent"] is True
    text = run_cli("seal", "inspect", str(sealed_model), home=model_home)
    assert "gemma3-270m-q4_k_m@1.0.0" in text.stdout


def test_sealed_model_answers_like_the_plain_one(sealed_model: Path, site, model_home) -> None:
    plain = run_cli(*ASK, home=model_home)
    sealed = run_cli(
        *ASK, "--model", str(sealed_model), "--identity", str(site[0]), home=model_home
    )
    assert plain.returncode == 0, plain.stderr
    assert sealed.returncode == 0, sealed.stderr
    assert sealed.stdout == plain.stdout
    assert sealed.stdout.strip()
    assert "plaintext only in sealed memory" in sealed.stderr


def test_sealed_load_writes_no_plaintext_to_any_disk(
    sealed_model: Path, site, model_home: Path, tmp_path: Path
) -> None:
    """Every mount read-only but the audit log's directory (a private mount
    namespace; the log holds only metadata and officer-sealed text): the
    answer still comes."""
    command = [sys.executable, "-m", "appliance", *ASK, "--model", str(sealed_model)]
    command += ["--identity", str(site[0])]
    targets = [tmp_path, model_home, sealed_model.parent, Path("/tmp"), Path("/dev/shm")]
    log_dir = shlex.quote(str(audit_dir(model_home)))
    script = "\n".join(
        [
            "set -e",
            f"mount --bind {log_dir} {log_dir}",
            "for m in $(awk '{print $2}' /proc/self/mounts | sort -u); do",
            '  mount -o remount,bind,ro "$m" 2>/dev/null || true',
            "done",
            f"mount -o remount,bind,rw {log_dir}",
            *(f"! touch {shlex.quote(str(t / 'probe'))} 2>/dev/null" for t in targets),
            "echo read-only >&2",
            f"exec {shlex.join(command)}",
        ]
    )
    result = in_private_mounts(script, model_home, TMPDIR=str(tmp_path))
    assert result.stderr.startswith("read-only"), result.stderr
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert "plaintext only in sealed memory" in result.stderr


def test_unseal_recovers_the_exact_model(sealed_model, site, model_path, model_home, tmp_path):
    out = tmp_path / "recovered.gguf"
    result = run_cli(
        "unseal", str(sealed_model), str(out), "--identity", str(site[0]), home=model_home
    )
    assert result.returncode == 0, result.stderr
    assert "holds the plaintext" in result.stderr
    assert out.read_bytes() == model_path.read_bytes()
    assert out.stat().st_mode & 0o777 == 0o600
    again = run_cli(
        "unseal", str(sealed_model), str(out), "--identity", str(site[0]), home=model_home
    )
    assert_one_line_error(again, 2, "refusing to overwrite")


def _flip(offset_from_end: int):
    def edit(data: bytearray) -> bytes:
        data[-offset_from_end] ^= 0x01
        return bytes(data)

    return edit


def _drop_last_segment(data: bytearray) -> bytes:
    header = parse_header(bytes(data[:65536]), "x").header
    last = header.length - (header.segment_count - 1) * header.segment_size + TAG_SIZE
    return bytes(data[:-last])


ATTACKS = {
    "truncated-at-boundary": (_drop_last_segment, 6, "truncated at a segment boundary"),
    "truncated-mid-segment": (lambda d: bytes(d[:-5000]), 6, "truncated inside a segment"),
    "appended-bytes": (lambda d: bytes(d) + b"\0", 6, "bytes after its final segment"),
    "body-bit-flip": (_flip(500_000), 6, "fails authentication"),
    "tag-bit-flip": (_flip(1), 6, "fails authentication"),
    "header-bit-flip": (
        lambda d: bytes(d).replace(b"segment-size: 1048576", b"segment-size: 1048577"),
        6,
        "header was modified",
    ),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attacks_fail_closed_and_write_nothing(name, sealed_model, site, model_home, tmp_path):
    edit, code, message = ATTACKS[name]
    attacked = copy_with(sealed_model, tmp_path / "attacked.sealed", edit)
    out = tmp_path / "out.gguf"
    result = run_cli("unseal", str(attacked), str(out), "--identity", str(site[0]), home=model_home)
    assert_one_line_error(result, code, message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attacked.sealed"]


def test_ask_refuses_a_tampered_sealed_model(sealed_model, site, model_home, tmp_path):
    attacked = copy_with(sealed_model, tmp_path / "x.sealed", _flip(300_000))
    result = run_cli(*ASK, "--model", str(attacked), "--identity", str(site[0]), home=model_home)
    assert_one_line_error(result, 6, "fails authentication")
    assert result.stdout == ""


def test_wrong_identity_and_passphrase(sealed_model, model_home, tmp_path) -> None:
    stranger = tmp_path / "stranger.key"
    seal.write_identity(stranger, seal.Identity.generate(), None)
    result = run_cli(
        *ASK, "--model", str(sealed_model), "--identity", str(stranger), home=model_home
    )
    assert_one_line_error(result, 9, "none of the given identities")
    wrapped = tmp_path / "wrapped.key"
    seal.write_identity(
        wrapped, seal.Identity.generate(), seal.Passphrase(b"right", work_factor=17)
    )
    wrong = tmp_path / "wrong"
    wrong.write_text("wrong\n")
    wrong.chmod(0o600)
    result = run_cli(
        *ASK,
        "--model",
        str(sealed_model),
        "--identity",
        str(wrapped),
        "--passphrase-file",
        str(wrong),
        home=model_home,
    )
    assert_one_line_error(result, 9, "wrong passphrase for the identity")


def test_content_id_mismatch_is_refused(sealed_model, site, model_home) -> None:
    result = run_cli(
        *ASK,
        "--model",
        str(sealed_model),
        "--identity",
        str(site[0]),
        "--content-id",
        "gemma3-270m-q4_k_m@0.9.0",
        home=model_home,
    )
    assert_one_line_error(result, 6, "not the expected 'gemma3-270m-q4_k_m@0.9.0'")


def test_a_sealed_file_claiming_a_catalog_model_must_be_it(site, model_home, tmp_path) -> None:
    """Anyone with a recipient can seal: a false catalog claim is caught by the pin."""
    impostor = tmp_path / "impostor.gguf"
    impostor.write_bytes(b"GGUF not the model")
    sealed = tmp_path / "impostor.sealed"
    seal.seal_file(impostor, sealed, [site[1].recipient], "gemma3-270m-q4_k_m@1.0.0")
    result = run_cli(*ASK, "--model", str(sealed), "--identity", str(site[0]), home=model_home)
    assert_one_line_error(result, 6, "differ from the catalog's pinned sha256")


def test_identity_options_need_a_sealed_model(site, model_home) -> None:
    result = run_cli(*ASK, "--identity", str(site[0]), home=model_home)
    assert_one_line_error(result, 2, "sealed models only")


def test_no_memfd_means_no_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "memfd_create")
    with pytest.raises(HostSecurityError, match="memfd"):
        seal.SealedMemory(10)
