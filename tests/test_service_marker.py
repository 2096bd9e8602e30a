"""A host the installer configured: every command is a client, whatever APPLIANCE_HOME says.

The marker lives in /etc/appliance; each test gives a private mount
namespace its own /etc (a tmpfs) holding the marker it needs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from appliance.audit import AuditLog, audit_dir
from tests.conftest import in_private_mounts
from tests.servicing import serving

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mount namespaces need root")


def with_marker(socket: Path, home: Path, command: str, *, owner: str = "0") -> str:
    """A shell script: /etc replaced by a tmpfs holding only the marker, then `command`."""
    marker = f'socket = "{socket}"\\nhome = "{home}"\\n'
    return (
        "set -e; mount -t tmpfs tmpfs /etc; mkdir -m 755 /etc/appliance; "
        f"printf '{marker}' > /etc/appliance/service.toml; "
        f"chown {owner} /etc/appliance/service.toml; {command}"
    )


def _appliance(*args: str) -> str:
    import shlex
    import sys

    return " ".join(shlex.quote(part) for part in (sys.executable, "-m", "appliance", *args))


def test_a_marked_host_never_falls_back_to_its_own_process(tmp_path: Path) -> None:
    private = tmp_path / "private"  # an empty home: in-process, this is development mode
    script = with_marker(tmp_path / "none.sock", tmp_path / "home", _appliance("ask", "hi"))
    result = in_private_mounts(script, private)
    assert result.returncode == 19, result.stderr
    assert "cannot reach the appliance service" in result.stderr
    assert "it is not running" in result.stderr
    assert not private.exists()  # nothing was opened or made there


def test_a_marker_that_is_not_roots_alone_is_refused(tmp_path: Path) -> None:
    script = with_marker(
        tmp_path / "none.sock", tmp_path / "home", _appliance("ask", "hi"), owner="1000"
    )
    result = in_private_mounts(script, tmp_path / "private")
    assert result.returncode == 7, result.stderr
    assert "is not root's alone" in result.stderr


@pytest.mark.model
def test_a_marked_host_asks_the_service_whatever_the_home(tmp_path: Path, model_path) -> None:
    home, socket = tmp_path / "home", tmp_path / "s.sock"
    with serving(home, model_path, "--socket", str(socket)):
        ask = _appliance("ask", "Say hi.", "--max-tokens", "4", "--seed", "1")
        status = _appliance("service", "status", "--json")
        script = with_marker(socket, home, f"{ask}; {status}")
        result = in_private_mounts(script, tmp_path / "private")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout[result.stdout.index("{") :])["engine"]["backend"]
    assert not (tmp_path / "private").exists()
    with AuditLog(audit_dir(home)) as log:  # the service's home recorded it
        assert [row["seq"] for row in log.events(action="ask")]
