"""Shared fixtures: the real embedded model, prepared once into a private home."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from appliance import catalog
from appliance.audit import Actor, AuditLog, audit_dir
from appliance.config import EngineSettings, physical_cores
from appliance.engine import Engine
from appliance.seal import Identity
from tests.ggufs import with_chat_template


def _own_cores() -> None:
    """Give each xdist worker its own share of the CPUs (its children inherit it).

    llama.cpp's threads spin at every barrier: two workers each running the engine
    on every core made each wait on threads the other had descheduled. Pinned, an
    engine's threads (one per core it may use: config.physical_cores) never compete.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    count = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    cpus = sorted(os.sched_getaffinity(0))
    if worker and count and 1 < int(count) <= len(cpus):
        os.sched_setaffinity(0, cpus[int(worker.removeprefix("gw")) :: int(count)])


_own_cores()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The bundle's install-upgrade-rollback test (about 4 minutes) first: last, it ran
    alone while the other worker had nothing left."""
    items.sort(key=lambda item: not item.nodeid.startswith("tests/test_bundle.py::"))


# Tests run the real engine on the cores this process may use.
TEST_SETTINGS = EngineSettings(context_length=2048, threads=physical_cores())


@pytest.fixture(scope="session")
def officer() -> Identity:
    """The security officer's identity: audit content is sealed to it."""
    return Identity.generate()


def with_officer(home: Path, officer: Identity) -> Path:
    """Configure `home` so that asks record their content, sealed to `officer`."""
    with AuditLog(audit_dir(home)) as log:
        log.set_officers([officer.recipient], Actor("officer", "officer"))
    return home


@pytest.fixture(scope="session")
def model_home(tmp_path_factory: pytest.TempPathFactory, officer: Identity) -> Path:
    """An appliance home with the default model prepared (verified) in it."""
    home = tmp_path_factory.mktemp("home")
    known = catalog.load_catalog()
    catalog.prepare(known.default_entry, home)
    return with_officer(home, officer)


@pytest.fixture(scope="session")
def model_path(model_home: Path) -> Path:
    known = catalog.load_catalog()
    return catalog.model_path(known.default_entry, model_home)


@pytest.fixture(scope="session")
def templated_model(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model with Gemma's chat template added to its metadata."""
    return with_chat_template(model_path, tmp_path_factory.mktemp("templated") / "chat.gguf")


@pytest.fixture(scope="session")
def engine(model_path: Path):
    with Engine(model_path, TEST_SETTINGS) as loaded:
        yield loaded


# A host with no network: a network namespace of its own, in which the command
# is also PID 1, so the host's namespace (as /proc/1/net shows it) is that one.
AIR_GAPPED = ["unshare", "--net", "--pid", "--fork", "--mount-proc"]


def run_cli(
    *args: str,
    home: Path,
    stdin: str | None = None,
    timeout: float = 300,
    air_gapped: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m appliance` as a user would, in its own process."""
    env = {**os.environ, "APPLIANCE_HOME": str(home)}
    env.pop("APPLIANCE_DEBUG", None)
    prefix = AIR_GAPPED if air_gapped else []
    return subprocess.run(
        [*prefix, sys.executable, "-m", "appliance", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
        start_new_session=True,  # no controlling terminal: nothing may prompt
    )


def assert_one_line_error(result, code: int, fragment: str) -> None:
    """A user-caused failure: one `appliance: ...` line on stderr, the documented code."""
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("appliance: ")
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr


def in_private_mounts(script: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a shell script in a private mount namespace (mounts changed there stay there)."""
    environment = {**os.environ, "APPLIANCE_HOME": str(home), **env}
    environment.pop("APPLIANCE_DEBUG", None)
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
        check=False,
        start_new_session=True,
    )


@pytest.fixture(scope="session")
def staffed_once(tmp_path_factory: pytest.TempPathFactory, officer: Identity) -> Path:
    """One staffed defense-kr home per worker, made by real commands (about 5 s)..."""
    from tests.staff import make_staffed

    return make_staffed(tmp_path_factory.mktemp("staffed"), officer)


@pytest.fixture
def staffed(staffed_once: Path, tmp_path: Path) -> Path:
    """... and a copy of it for each test (accounts, signed state, anchor and all): a
    defense-kr home with an admin, an officer and an operator cleared to 대외비, its
    content sealed."""
    home = tmp_path / "home"
    shutil.copytree(staffed_once, home, symlinks=True)
    return home
