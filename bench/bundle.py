"""Bundle build and install times for the default model, and the bundle's size.

Builds a signed bundle of the embedded model (sealed) with the prepared
wheelhouse, then installs it with installer/install.sh into a temporary prefix
(with no network where `unshare -n` works). Side by side, in the same run:
the floor of any offline install, a bare `python -m venv` plus `pip install
--no-index` of the same wheels. Last line: `install_seconds: <value>`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PASS = "bench-signing-pass"


def run(*command: str, cwd: Path | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "APPLIANCE_HOME"}
    result = subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, check=False)
    if result.returncode != 0:
        sys.exit(f"bench/bundle.py: {' '.join(command[:3])} failed: {result.stderr.strip()[-300:]}")
    return result.stdout


def offline() -> list[str]:
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False)
    return ["unshare", "-n"] if probe.returncode == 0 else []


def main() -> None:
    from appliance import catalog

    appliance = [sys.executable, "-m", "appliance"]
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        model = catalog.prepare(catalog.load_catalog().default_entry, base / "home")
        (base / "pass").write_text(PASS)
        (base / "pass").chmod(0o600)
        run(
            *appliance,
            "bundle",
            "init",
            "--out",
            str(base / "keys"),
            "--passphrase-file",
            str(base / "pass"),
        )
        (base / "host").mkdir()
        site = base / "host" / "site.key"
        recipient = run(*appliance, "keys", "generate", "--out", str(site), "--no-passphrase")
        wheels = ROOT / ".wheelhouse"  # the build adds the appliance's own wheel
        bundle = base / "appliance.bundle"

        start = time.perf_counter()
        run(
            *appliance,
            "bundle",
            "build",
            "--model",
            str(model),
            "--policy",
            str(ROOT / "policies/default.toml"),
            "--recipient",
            recipient.strip().splitlines()[-1],
            "--signing-key",
            str(base / "keys/release.key"),
            "--version",
            "1.0.0",
            "--out",
            str(bundle),
            "--wheelhouse",
            str(wheels),
            "--passphrase-file",
            str(base / "pass"),
        )
        build_seconds = time.perf_counter() - start

        start = time.perf_counter()
        run(
            *offline(),
            str(ROOT / "installer/install.sh"),
            str(bundle),
            "--prefix",
            str(base / "prefix"),
            "--trust",
            str(base / "keys/root.json"),
            "--identity",
            str(site),
        )
        install_seconds = time.perf_counter() - start

        start = time.perf_counter()
        run(sys.executable, "-m", "venv", str(base / "floor"))
        run(
            str(base / "floor/bin/python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-index",
            "--find-links",
            str(base / "prefix/releases/1.0.0/wheels"),  # the bundle's, the appliance's included
            "appliance",
        )
        floor_seconds = time.perf_counter() - start

        model_bytes = model.stat().st_size
        released = base / "prefix/releases/1.0.0/wheels"
        wheel_bytes = sum(w.stat().st_size for w in released.glob("*.whl"))
        size = bundle.stat().st_size
    print(f"bundle: {size:,} bytes; inputs: model {model_bytes:,} + wheels {wheel_bytes:,}")
    print(f"  size / inputs: {size / (model_bytes + wheel_bytes):.3f}")
    print(f"build: {build_seconds:.1f} s (seal, SBOM, sign, write)")
    print(f"install: {install_seconds:.1f} s (verify, bootstrap venv, release venv, doctor)")
    print(f"  floor, one venv + pip install --no-index of the same wheels: {floor_seconds:.1f} s")
    print(f"  install / floor: {install_seconds / floor_seconds:.2f}")
    print(f"install_seconds: {install_seconds:.1f}")


if __name__ == "__main__":
    main()
