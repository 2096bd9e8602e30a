"""Which sealed models skip the probe: those whose plaintext sha256 is pinned.

A pin comes from the catalogue (the content id names a catalogued model) or
from the signed manifest of the installed release that the home's config.toml
names. Each case runs `appliance ask` on a home as the installer lays it out,
and watches /proc for a probe child while it runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance import catalog, seal
from appliance.policy import HOME_POLICY, shipped_policy
from tests.conftest import assert_one_line_error
from tests.test_probe_hardening import UNLISTED, probe_children

pytestmark = pytest.mark.model

ASK = ["ask", "--max-tokens", "2", "--temperature", "0", "The sky is"]


@pytest.fixture(scope="module")
def sealed(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The embedded model sealed twice to one site key: under a content id the
    catalogue does not know, and under the catalogue's own."""
    base = tmp_path_factory.mktemp("pinning")
    identity = seal.Identity.generate()
    seal.write_identity(base / "site.key", identity, None)
    seal.seal_file(model_path, base / "unlisted.sealed", [identity.recipient], UNLISTED)
    listed = catalog.load_catalog().default_entry.content_id
    seal.seal_file(model_path, base / "listed.sealed", [identity.recipient], listed)
    return {"base": base, "key": base / "site.key"}


def home_for(tmp_path: Path, sealed: dict[str, Path], model: str, sha256: str | None) -> Path:
    """A home whose config names a sealed model, its key and (if any) a release manifest,
    with the shipped default policy as its policy.toml (the installer links one in; a home
    with an installed release has to have one)."""
    home = tmp_path / "home"
    home.mkdir()
    (home / HOME_POLICY).write_bytes(shipped_policy("default").read_bytes())
    lines = ["[model]", f"path = {json.dumps(str(sealed['base'] / model))}"]
    if sha256 is not None:
        manifest = {
            "release": "1.0.0",
            "model": {"file": f"model/{model}", "content_id": UNLISTED, "sha256": sha256},
        }
        (home / "bundle.json").write_text(json.dumps(manifest))
        lines.append('manifest = "bundle.json"')
    lines.append(f"identity = [{json.dumps(str(sealed['key']))}]")
    (home / "config.toml").write_text("\n".join(lines) + "\n")
    return home


def ask_watching_for_probes(home: Path) -> tuple[subprocess.CompletedProcess[str], int]:
    env = {**os.environ, "APPLIANCE_HOME": str(home)}
    env.pop("APPLIANCE_DEBUG", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "appliance", *ASK],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    seen: set[int] = set()
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        seen.update(probe_children(process.pid))
        time.sleep(0.005)
    stdout, stderr = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), len(seen)


def test_an_unpinned_sealed_model_is_probed(tmp_path: Path, sealed: dict[str, Path]) -> None:
    result, probes = ask_watching_for_probes(home_for(tmp_path, sealed, "unlisted.sealed", None))
    assert result.returncode == 0, result.stderr
    assert probes == 1  # the control: the watcher does see a probe


def test_a_model_pinned_by_its_release_manifest_is_not_probed(
    tmp_path: Path, sealed: dict[str, Path]
) -> None:
    digest = catalog.load_catalog().default_entry.sha256  # the embedded model's bytes
    result, probes = ask_watching_for_probes(home_for(tmp_path, sealed, "unlisted.sealed", digest))
    assert result.returncode == 0, result.stderr
    assert UNLISTED in result.stderr
    assert probes == 0


def test_a_model_that_is_not_what_its_manifest_pins_is_refused(
    tmp_path: Path, sealed: dict[str, Path]
) -> None:
    other = hashlib.sha256(b"another model").hexdigest()
    result, probes = ask_watching_for_probes(home_for(tmp_path, sealed, "unlisted.sealed", other))
    assert_one_line_error(result, 6, "does not decrypt to the sha256 it is pinned to")
    assert probes == 0


def test_a_catalogued_sealed_model_is_not_probed(tmp_path: Path, sealed: dict[str, Path]) -> None:
    result, probes = ask_watching_for_probes(home_for(tmp_path, sealed, "listed.sealed", None))
    assert result.returncode == 0, result.stderr
    assert catalog.load_catalog().default_entry.content_id in result.stderr
    assert probes == 0
