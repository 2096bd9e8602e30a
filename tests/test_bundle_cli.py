"""The bundle, install and doctor commands: one clear line for each mistake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import assert_one_line_error, run_cli
from tests.ggufs import small_gguf
from tests.test_bundle_attacks import PASS, release_bundle

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    (tmp_path / "pass").write_text(PASS + "\n")
    (tmp_path / "pass").chmod(0o600)  # a secret file only its owner may read
    made = run_cli(
        "bundle",
        "init",
        "--out",
        str(tmp_path / "keys"),
        "--passphrase-file",
        str(tmp_path / "pass"),
        home=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    assert "fingerprint, to compare out of band: SHA256:" in made.stdout
    return tmp_path / "keys"


def build_args(tmp_path: Path, keys: Path, model: Path, passphrase: Path) -> list[str]:
    (tmp_path / "wheels").mkdir(exist_ok=True)
    (tmp_path / "wheels" / "appliance-0.1.0-py3-none-any.whl").write_bytes(b"not used")
    return [
        "bundle",
        "build",
        "--model",
        str(model),
        "--policy",
        str(ROOT / "policies/default.toml"),
        "--recipient",
        "apr1c25talirlzxp54dape7gezmdkorlkgfog6r4udjry7ga2fu2ozozaawbxu",
        "--signing-key",
        str(keys / "release.key"),
        "--version",
        "1.0.0",
        "--out",
        str(tmp_path / "out.bundle"),
        "--wheelhouse",
        str(tmp_path / "wheels"),
        "--passphrase-file",
        str(passphrase),
    ]


def test_init_refuses_to_replace_a_trust_root(tmp_path: Path, keys: Path) -> None:
    again = run_cli(
        "bundle",
        "init",
        "--out",
        str(keys),
        "--passphrase-file",
        str(tmp_path / "pass"),
        home=tmp_path,
    )
    assert_one_line_error(again, 2, "already holds a trust root")


def test_a_model_that_is_not_gguf_is_refused_before_llama_cpp(tmp_path: Path, keys: Path) -> None:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"PK\x03\x04 not a model")
    args = build_args(tmp_path, keys, model, tmp_path / "pass")
    result = run_cli(*args, "--quantize", "Q4_K_M", home=tmp_path)
    assert_one_line_error(result, 4, "model.gguf")
    assert not (tmp_path / "out.bundle").exists()


def test_a_wrong_passphrase_fails_before_any_work(tmp_path: Path, keys: Path) -> None:
    (tmp_path / "wrong").write_text("not the passphrase\n")
    (tmp_path / "wrong").chmod(0o600)
    args = build_args(tmp_path, keys, small_gguf(tmp_path / "tiny.gguf"), tmp_path / "wrong")
    result = run_cli(*args, home=tmp_path)
    assert_one_line_error(result, 9, "wrong passphrase")
    assert not (tmp_path / "out.bundle").exists()


def test_a_built_bundle_verifies_against_its_root(tmp_path: Path, keys: Path) -> None:
    args = build_args(tmp_path, keys, small_gguf(tmp_path / "tiny.gguf"), tmp_path / "pass")
    built = run_cli(*args, home=tmp_path)
    assert built.returncode == 0, built.stderr
    bundle = tmp_path / "out.bundle"
    result = run_cli(
        "bundle", "verify", str(bundle), "--trust", str(keys / "root.json"), "--json", home=tmp_path
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["release"] == "1.0.0"
    assert report["metadata_version"] == 1
    assert report["files"] >= 10  # model, wheel, policy, installer, docs, SBOM, manifest
    other = tmp_path / "other"
    run_cli(
        "bundle",
        "init",
        "--out",
        str(other),
        "--passphrase-file",
        str(tmp_path / "pass"),
        home=tmp_path,
    )
    wrong = run_cli(
        "bundle", "verify", str(bundle), "--trust", str(other / "root.json"), home=tmp_path
    )
    assert_one_line_error(wrong, 16, "not signed by keys this host trusts")


def test_a_first_install_needs_a_pinned_root(tmp_path: Path, keys: Path) -> None:
    bundle = release_bundle(keys, tmp_path / "r1.bundle", "1.0.0")
    result = run_cli(
        "install",
        str(bundle),
        "--prefix",
        str(tmp_path / "prefix"),
        "--identity",
        str(keys / "root.json"),
        home=tmp_path,
    )
    assert_one_line_error(result, 16, "pin the root with --trust root.json")
    upgrade = run_cli("upgrade", str(bundle), "--prefix", str(tmp_path / "prefix"), home=tmp_path)
    assert_one_line_error(upgrade, 2, "nothing is installed")


def test_status_and_rollback_of_an_empty_prefix(tmp_path: Path) -> None:
    status = run_cli("status", "--prefix", str(tmp_path / "p"), "--json", home=tmp_path)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["current"] is None
    rollback = run_cli("rollback", "--prefix", str(tmp_path / "p"), home=tmp_path)
    assert_one_line_error(rollback, 2, "nothing is installed")


def test_doctor_fails_when_the_site_identity_is_gone(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(
        '[model]\npath = "models/m.sealed"\nidentity = ["keys/site.key"]\n'
    )
    result = run_cli("doctor", "--json", home=home)
    assert result.returncode == 17
    report = json.loads(result.stdout)
    checks = {check["name"]: check for check in report["checks"]}
    assert report["ok"] is False
    assert checks["model"]["ok"] is False
    assert checks["policy"]["ok"] is True
    assert checks["audit"]["ok"] is True
    assert result.stderr.strip() == "appliance: appliance doctor: model failed"


def test_a_missing_site_identity_is_reported_before_any_work(tmp_path: Path, keys: Path) -> None:
    bundle = release_bundle(keys, tmp_path / "r1.bundle", "1.0.0")
    prefix = tmp_path / "prefix"
    result = run_cli(
        "install",
        str(bundle),
        "--prefix",
        str(prefix),
        "--trust",
        str(keys / "root.json"),
        "--identity",
        str(tmp_path / "no.key"),
        home=tmp_path,
    )
    assert_one_line_error(result, 2, "no.key does not exist")
    assert sorted(p.name for p in prefix.iterdir()) == [".lock"]
