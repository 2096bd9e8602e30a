"""The bundle, install and doctor commands: one clear line for each mistake."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from appliance.bundle import repository
from appliance.engine import sha256_file
from appliance.engine.tools import (
    CMAKE_FLAGS,
    NODUMP_PRELOAD,
    SHIPPED_FILES,
    TOOLS,
    llama_cpp_version,
    tools_dir,
)
from tests.conftest import assert_one_line_error, run_cli
from tests.ggufs import small_gguf
from tests.test_bundle_attacks import PASS, release_bundle

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    """A trust root and signing keys, made as `bundle init` makes them (in this process:
    `built` and the refusal below run the command itself), and its passphrase file."""
    (tmp_path / "pass").write_text(PASS + "\n")
    (tmp_path / "pass").chmod(0o600)  # a secret file only its owner may read
    repository.init(tmp_path / "keys", PASS)
    return tmp_path / "keys"


def init_cli(out: Path, passphrase: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(
        *("bundle", "init", "--out", str(out), "--passphrase-file", str(passphrase)), home=home
    )


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
    root = (keys / "root.json").read_bytes()
    again = init_cli(keys, tmp_path / "pass", tmp_path)
    assert_one_line_error(again, 2, "already holds a trust root")
    assert (keys / "root.json").read_bytes() == root


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


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One bundle built by the CLI, once for the module: a tiny model, a stand-in wheel, and
    the binaries `make setup` built (SHIPPED_FILES, from the cache: tools_dir()). Its
    folder holds `out.bundle`, `keys/` and `pass`."""
    base = tmp_path_factory.mktemp("built")
    (base / "pass").write_text(PASS + "\n")
    (base / "pass").chmod(0o600)
    made = init_cli(base / "keys", base / "pass", base)
    assert made.returncode == 0, made.stderr
    assert "fingerprint, to compare out of band: SHA256:" in made.stdout
    args = build_args(base, base / "keys", small_gguf(base / "tiny.gguf"), base / "pass")
    result = run_cli(*args, home=base)
    assert result.returncode == 0, result.stderr
    return base


def test_a_built_bundle_verifies_against_its_root(tmp_path: Path, built: Path) -> None:
    bundle, keys = built / "out.bundle", built / "keys"
    result = run_cli(
        "bundle", "verify", str(bundle), "--trust", str(keys / "root.json"), "--json", home=tmp_path
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["release"] == "1.0.0"
    assert report["metadata_version"] == 1
    # model, wheel, policy, installer, docs, SBOM, manifest, the shipped binaries
    assert report["files"] >= 10 + len(SHIPPED_FILES)
    other = tmp_path / "other"  # another station's root
    repository.init(other, PASS)
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


def test_the_bundle_ships_the_built_binaries_signed_and_in_its_sbom(built: Path) -> None:
    with tarfile.open(built / "out.bundle") as tar:
        sizes = {member.name: member.size for member in tar}

        def read(name: str) -> dict:  # type: ignore[type-arg]
            return json.loads(tar.extractfile(name).read())  # type: ignore[union-attr]

        targets = read("metadata/targets.json")["signed"]["targets"]
        manifest = read("targets/bundle.json")["binaries"]
        sbom = {c["bom-ref"]: c for c in read("targets/sbom.cdx.json")["components"]}
    assert manifest["llama_cpp_python"] == llama_cpp_version()
    assert manifest["cmake_flags"] == list(CMAKE_FLAGS)
    assert sorted(manifest["files"]) == sorted(SHIPPED_FILES)
    assert sorted(p for p in targets if p.startswith("libexec/")) == sorted(
        f"libexec/{name}" for name in SHIPPED_FILES
    )
    for name in SHIPPED_FILES:
        built_file = tools_dir() / name
        path, digest, size = f"libexec/{name}", sha256_file(built_file), built_file.stat().st_size
        assert targets[path] == {"length": size, "hashes": {"sha256": digest}}  # signed
        assert sizes[f"targets/{path}"] == size
        assert manifest["files"][name] == {"file": path, "sha256": digest, "bytes": size}
        component = sbom[path]
        assert component["name"] == name
        assert component["version"] == llama_cpp_version()
        assert component["type"] == ("application" if name in TOOLS else "library")
        assert component["hashes"] == [{"alg": "SHA-256", "content": digest}]
        properties = {p["name"]: p["value"] for p in component.get("properties", [])}
        assert properties["appliance:installed_as"] == f"releases/V/libexec/{name}"
        if name in TOOLS:
            assert properties["appliance:cmake_flags"] == " ".join(CMAKE_FLAGS)


def test_a_tampered_binary_is_refused_at_verify_and_install(tmp_path: Path, built: Path) -> None:
    """One byte of llama-server changed in the bundle: refused before anything is written."""
    tampered = tmp_path / "tampered.bundle"
    shutil.copyfile(built / "out.bundle", tampered)
    with tarfile.open(tampered) as tar:
        offset = tar.getmember("targets/libexec/llama-server").offset_data
    with tampered.open("r+b") as sink:
        sink.seek(offset + 4096)
        byte = sink.read(1)
        sink.seek(offset + 4096)
        sink.write(bytes([byte[0] ^ 0xFF]))
    keys = built / "keys"
    verify = run_cli(
        "bundle", "verify", str(tampered), "--trust", str(keys / "root.json"), home=tmp_path
    )
    assert_one_line_error(verify, 16, "'libexec/llama-server' does not match its signed hash")
    prefix = tmp_path / "prefix"
    install = run_cli(
        *("install", str(tampered), "--prefix", str(prefix)),
        *("--trust", str(keys / "root.json"), "--identity", str(keys / "root.json")),
        home=tmp_path,
    )
    assert_one_line_error(install, 16, "'libexec/llama-server' does not match its signed hash")
    assert sorted(p.name for p in prefix.iterdir()) == [".lock"]


def test_a_build_without_the_shipped_binaries_says_to_run_make_setup(
    tmp_path: Path, keys: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = build_args(tmp_path, keys, small_gguf(tmp_path / "tiny.gguf"), tmp_path / "pass")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))  # nothing built there
    result = run_cli(*args, home=tmp_path)
    assert_one_line_error(result, 7, f"lacks {', '.join(SHIPPED_FILES)}, which every bundle")
    assert "run make setup" in result.stderr
    partial = tmp_path / "tools"  # given with --tools: the tools, but not the preload
    partial.mkdir()
    for name in TOOLS:
        (partial / name).write_bytes(b"\x7fELF")
    result = run_cli(*args, "--tools", str(partial), home=tmp_path)
    assert_one_line_error(result, 7, f"{partial} lacks {NODUMP_PRELOAD}, which every bundle")
    assert "run make setup, or give --tools" in result.stderr
    assert not (tmp_path / "out.bundle").exists()
