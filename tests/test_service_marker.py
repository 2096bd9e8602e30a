"""A host the installer configured: every command is a client, whatever APPLIANCE_HOME says.

The marker lives in /etc/appliance; each test gives a private mount
namespace its own /etc (a tmpfs) holding the marker it needs.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from appliance.audit import AuditLog, audit_dir
from tests.conftest import in_private_mounts
from tests.servicing import serving
from tests.staff import password_file

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mount namespaces need root")

SERVICE_UID = 61234  # the service user of an installed host (no passwd entry needed)


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


def test_root_sets_up_an_installed_home_as_its_owner(tmp_path: Path) -> None:
    """Files root makes in the service's home would be unreadable to the service."""
    base = Path(tempfile.mkdtemp(dir="/tmp"))  # a folder the service uid may enter
    try:
        base.chmod(0o755)
        home = base / "home"
        home.mkdir(mode=0o700)
        os.chown(home, SERVICE_UID, SERVICE_UID)
        first = password_file(tmp_path, "root1")  # root's own files: read before the switch
        officer = password_file(tmp_path, "lee")
        setup = _appliance(
            *("setup", "--admin", "root1", "--officer", "lee", "--new-password-file", first),
            *("--officer-password-file", officer),
        )
        script = with_marker(base / "none.sock", home, f"{_python_for_all(base)} {setup}")
        result = in_private_mounts(script, home)
        assert result.returncode == 0, result.stderr
        made = [home / "identity" / "users.db", home / "audit" / "log.db", home / "policy.toml"]
        assert {path.stat().st_uid for path in made} == {SERVICE_UID}
        with AuditLog(audit_dir(home)) as log:  # and root is named as who ran it
            added = [json.loads(row["leaf"]) for row in log.events(action="user_add")]
        assert {event["user"] for event in added} == {"uid0"}  # no /etc/passwd in there
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _python_for_all(base: Path) -> str:
    """Shell commands that let any uid run this Python, as on an installed host.

    Where the interpreter lives in a folder others may not enter (a root-only
    home), the namespace covers that folder with an open tmpfs and mounts the
    interpreter's tree back inside it.
    """
    prefix = Path(sys.base_prefix)
    closed = next((p for p in reversed(prefix.parents) if not os.stat(p).st_mode & 0o001), None)
    if closed is None:
        return ""
    child = closed / prefix.relative_to(closed).parts[0]
    aside = base / "python"
    return (
        f"mkdir -p {aside} && mount --bind {child} {aside} && "
        f"mount -t tmpfs -o mode=0755 tmpfs {closed} && mkdir {child} && "
        f"mount --bind {aside} {child} &&"
    )


def test_on_a_marked_host_only_root_runs_the_doctor_in_its_own_process(tmp_path: Path) -> None:
    """Anyone else asks the service (here: none answers, so nothing is checked)."""
    base = Path(tempfile.mkdtemp(dir="/tmp"))  # a folder any uid may enter
    try:
        base.chmod(0o755)
        as_other = f"setpriv --reuid {SERVICE_UID} --regid {SERVICE_UID} --clear-groups"
        doctor = f"{_python_for_all(base)} {as_other} {_appliance('doctor')}"
        script = with_marker(base / "none.sock", base / "home", doctor)
        result = in_private_mounts(script, base / "home")
        assert result.returncode == 19, result.stderr
        assert "cannot reach the appliance service" in result.stderr
        assert not (base / "home").exists()  # nothing was opened or made there
    finally:
        shutil.rmtree(base, ignore_errors=True)
