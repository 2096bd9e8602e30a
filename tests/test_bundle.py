"""A real bundle, end to end: quantize, seal, sign, install with no network, serve,
upgrade (once killed midway), roll back; every step in the host's audit log."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import tarfile
import time
from functools import cache
from pathlib import Path

import pytest

from appliance import catalog, seal
from appliance.audit import AuditLog
from appliance.cli.generate import sealed_is_pinned
from appliance.cli.passphrase import openers
from appliance.engine import read_gguf, sha256_file
from appliance.engine.info import quantization_of
from appliance.engine.quantize import quantize
from appliance.engine.tools import SHIPPED_FILES, tools_dir
from tests.conftest import AIR_GAPPED, run_cli

ROOT = Path(__file__).resolve().parent.parent
WHEELHOUSE = ROOT / ".wheelhouse"
PASS = "signing-pass-1"


@cache
def offline() -> list[str]:
    """Run a command on an air-gapped host where the kernel lets us: a network namespace
    of its own in which it is PID 1, so the host's namespace is that one too."""
    probe = subprocess.run([*AIR_GAPPED, "true"], capture_output=True, check=False)
    return AIR_GAPPED if probe.returncode == 0 else []


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory, model_path: Path) -> dict[str, Path]:
    """The build station: signing keys, the host's site recipient, an F16 model, wheels
    (the prepared wheelhouse; the build adds the appliance's own wheel from this checkout)."""
    base = tmp_path_factory.mktemp("station")
    (base / "pass").write_text(PASS + "\n")
    (base / "pass").chmod(0o600)  # a secret file only its owner may read
    init = run_cli(
        "bundle",
        "init",
        "--out",
        str(base / "keys"),
        "--passphrase-file",
        str(base / "pass"),
        home=base,
    )
    assert init.returncode == 0, init.stderr
    (base / "host").mkdir()
    site = base / "host" / "site.key"  # made on the host; only the recipient travels
    made = run_cli("keys", "generate", "--out", str(site), "--no-passphrase", home=base)
    assert made.returncode == 0, made.stderr
    (base / "site.pub").write_text(made.stdout.strip().splitlines()[-1])
    f16 = base / "gemma-f16.gguf"  # a full-precision source, made from the embedded model
    quantize(model_path, f16, "F16")
    assert quantization_of(read_gguf(f16)) == "F16"
    assert (WHEELHOUSE / ".ready").exists(), "the wheelhouse is missing: run 'make wheelhouse'"
    return {"base": base, "f16": f16, "q4": model_path, "wheels": WHEELHOUSE, "site": site}


def build(
    station: dict[str, Path], release: str, model: Path, *extra: str, policy: str = "default"
) -> Path:
    base = station["base"]
    out = base / f"appliance-{release}.bundle"
    result = run_cli(
        "bundle",
        "build",
        "--model",
        str(model),
        "--policy",
        str(ROOT / f"policies/{policy}.toml"),
        "--recipient",
        (base / "site.pub").read_text(),
        "--signing-key",
        str(base / "keys/release.key"),
        "--version",
        release,
        "--out",
        str(out),
        "--wheelhouse",
        str(station["wheels"]),
        "--passphrase-file",
        str(base / "pass"),
        *extra,
        home=base,
    )
    assert result.returncode == 0, result.stderr
    return out


def host_run(prefix: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("APPLIANCE_HOME", "APPLIANCE_DEBUG")}
    return subprocess.run(
        [*offline(), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
        start_new_session=True,
    )


@pytest.mark.model
def test_a_quantized_bundle_installs_serves_upgrades_and_rolls_back(station) -> None:
    # One shipped text keeps the measurement short; the default measures both.
    first = build(
        station, "1.0.0", station["f16"], "--quantize", "Q4_K_M", "--report-text", "en-admin"
    )
    manifest = _manifest(first)
    assert manifest["model"]["report"] == "model/gemma-3-270m-q4_k_m.report.json"
    assert manifest["model"]["source"]["type"] == "F16"
    assert manifest["model"]["quantized"]["to"] == "Q4_K_M"
    assert manifest["model"]["quantized"]["bytes"] < manifest["model"]["source"]["bytes"] / 2
    # Re-quantized from F16, the bytes are not the catalogued model's: the model is named
    # from its metadata and the release, and its sha256 is pinned by the signed manifest.
    assert manifest["model"]["content_id"] == "gemma-3-270m-q4_k_m@1.0.0"
    assert manifest["model"]["sha256"] != catalog.load_catalog().default_entry.sha256

    prefix = station["base"] / "prefix"
    keys = station["base"] / "keys"
    install = host_run(
        prefix,
        str(ROOT / "installer/install.sh"),
        str(first),
        "--prefix",
        str(prefix),
        "--trust",
        str(keys / "root.json"),
        "--identity",
        str(station["site"]),
        "--no-service",  # as root it would create a system user and enable a unit here
    )
    assert install.returncode == 0, install.stderr
    assert "install: release 1.0.0 is current; doctor passed." in install.stdout
    config = (prefix / "home" / "config.toml").read_text()
    assert f"manifest = {json.dumps(str(prefix / 'current' / 'bundle.json'))}" in config
    appliance = str(prefix / "bin/appliance")
    doctor = host_run(prefix, appliance, "doctor", "--json")
    assert doctor.returncode == 0, doctor.stderr
    assert {c["name"]: c["ok"] for c in json.loads(doctor.stdout)["checks"]} == {
        "policy": True,
        "airgap": True if offline() else None,
        "model": True,
        "audit": True,
        "state": True,
        "backup": None,  # a new host was never backed up: a warning, not a failure
        "binaries": True,
        "documents": True,  # no store yet, and the log adds no document
    }
    libexec = prefix / "releases" / "1.0.0" / "libexec"  # the release runs its own binaries
    for name in SHIPPED_FILES:
        assert stat.S_IMODE((libexec / name).lstat().st_mode) == 0o755
        assert sha256_file(libexec / name) == sha256_file(tools_dir() / name)
    served = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}["model"]
    assert served["report"]["quantized"]["sha256"] == manifest["model"]["sha256"]
    assert served["report"]["texts"][0]["name"] == "en-admin"
    answer = host_run(
        prefix, appliance, "ask", "The capital of France is", "--max-tokens", "8", "--seed", "1"
    )
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip()
    assert "gemma-3-270m-q4_k_m@1.0.0" in answer.stderr  # the sealed model of the release

    second = build_plain(station, "2.0.0")
    entry = catalog.load_catalog().default_entry  # the bundle and the catalogue agree
    assert _manifest(second)["model"]["content_id"] == entry.content_id
    assert _manifest(second)["model"]["sha256"] == entry.sha256
    trusted_before = (prefix / "trust" / "timestamp.json").read_bytes()
    killed = subprocess.Popen(
        [appliance, "upgrade", str(second), "--prefix", str(prefix)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not (prefix / "releases/2.0.0/model").exists():
        assert time.monotonic() < deadline, "the upgrade never reached the model"
        assert killed.poll() is None, "the upgrade ended before it could be killed"
        time.sleep(0.01)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    assert (prefix / "current").readlink() == Path("releases/1.0.0")
    assert (prefix / "trust" / "timestamp.json").read_bytes() == trusted_before
    assert host_run(prefix, appliance, "doctor").returncode == 0  # still serving 1.0.0

    not_yet = host_run(prefix, appliance, "upgrade", str(second))  # defense-kr needs an officer
    assert not_yet.returncode == 17
    assert "doctor failed" in not_yet.stderr
    assert "rollback" in not_yet.stderr
    assert host_run(prefix, appliance, "rollback").returncode == 0
    officer = host_run(prefix, appliance, "audit", "officer", "--identity", str(station["site"]))
    assert officer.returncode == 0, officer.stderr  # (any identity the officer holds serves)

    upgrade = host_run(prefix, appliance, "upgrade", str(second))
    assert upgrade.returncode == 0, upgrade.stderr
    assert "upgrade: release 2.0.0 is current (was 1.0.0)" in upgrade.stdout
    installed = seal.load_sealed(
        prefix / "current" / "model.sealed", openers([station["site"]], None)
    )
    try:  # recognised as the catalogued model: served without the probe
        assert installed.header.content_id == entry.content_id
        assert sealed_is_pinned(installed)
    finally:
        installed.close()
    status = json.loads(host_run(prefix, appliance, "status", "--json").stdout)
    assert status["current"] == "2.0.0"
    assert status["installed"] == ["1.0.0", "2.0.0"]
    assert status["trusted_metadata"]["timestamp"]["version"] == 2
    assert 'name = "defense-kr"' in (prefix / "home/policy.toml").read_text()
    refused = host_run(prefix, appliance, "ask", "Hello", "--max-tokens", "4")
    assert refused.returncode == 14  # defense-kr: no accounts, no development mode

    rollback = host_run(prefix, appliance, "rollback")
    assert rollback.returncode == 0, rollback.stderr
    assert (prefix / "current").readlink() == Path("releases/1.0.0")
    assert 'name = "default"' in (prefix / "home/policy.toml").read_text()
    again = host_run(prefix, appliance, "ask", "Hello", "--max-tokens", "4", "--seed", "1")
    assert again.returncode == 0
    assert "gemma-3-270m-q4_k_m@1.0.0" in again.stderr

    older = host_run(prefix, appliance, "upgrade", str(first))  # TUF: 1.0.0's metadata is old
    assert older.returncode == 16
    assert "a rollback" in older.stderr

    with AuditLog(prefix / "home" / "audit") as log:
        leaves = [json.loads(row["leaf"]) for row in log.events()]
    releases = [
        (e["action"], e["object"], e["outcome"])
        for e in leaves
        if e["action"] in ("install", "upgrade", "rollback")
    ]
    assert releases == [
        ("install", "release 1.0.0", "ok"),
        ("upgrade", "release 2.0.0", "failed"),  # the doctor found no officer key
        ("rollback", "release 1.0.0", "ok"),
        ("upgrade", "release 2.0.0", "ok"),
        ("rollback", "release 1.0.0", "ok"),
    ]

    # 1.0.0's model is served because it decrypts to the sha256 its signed manifest pins;
    # against another pin it is refused.
    pinned = prefix / "releases" / "1.0.0" / "bundle.json"
    document = json.loads(pinned.read_text())
    document["model"]["sha256"] = "0" * 64
    pinned.write_text(json.dumps(document))
    mismatch = host_run(prefix, appliance, "ask", "Hello", "--max-tokens", "4")
    assert mismatch.returncode == 6, mismatch.stderr
    assert "does not decrypt to the sha256 it is pinned to" in mismatch.stderr


def build_plain(station: dict[str, Path], release: str) -> Path:
    """A second release from a model already in Q4_K_M (nothing to quantize), under the
    defense-kr policy."""
    return build(station, release, station["q4"], policy="defense-kr")


def _manifest(bundle: Path) -> dict:
    with tarfile.open(bundle) as tar:
        return json.loads(tar.extractfile("targets/bundle.json").read())  # type: ignore[union-attr]
