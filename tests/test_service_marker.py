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
from tests.conftest import assert_one_line_error, in_private_mounts
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


@pytest.mark.model
def test_root_sets_up_an_installed_home_through_its_service(tmp_path: Path, model_path) -> None:
    """The service makes the first accounts in its own home: no file there is root's."""
    home, socket, elsewhere = tmp_path / "home", tmp_path / "s.sock", tmp_path / "private"
    first = password_file(tmp_path, "root1")
    officer = password_file(tmp_path, "lee")
    setup = _appliance(
        *("setup", "--admin", "root1", "--officer", "lee", "--new-password-file", first),
        *("--officer-password-file", officer),
    )
    alone = in_private_mounts(with_marker(tmp_path / "none.sock", home, setup), elsewhere)
    assert_one_line_error(alone, 19, "cannot reach the appliance service")
    assert not home.exists()  # no service, nothing made
    with serving(home, model_path, "--socket", str(socket)):
        made = in_private_mounts(with_marker(socket, home, setup), elsewhere)
        again = in_private_mounts(with_marker(socket, home, setup), elsewhere)
    assert made.returncode == 0, made.stderr
    assert_one_line_error(again, 2, "accounts exist already")
    assert not elsewhere.exists()
    with AuditLog(audit_dir(home)) as log:  # root (the client's peer uid) is who ran it
        added = [json.loads(row["leaf"]) for row in log.events(action="user_add")]
        states = [json.loads(row["leaf"]) for row in log.events(action="state")]
    assert sorted((e["object"], e["details"]["role"]) for e in added) == [
        ("lee", "officer"),
        ("root1", "admin"),
    ]
    assert {(e["user"], e["role"]) for e in added} == {("root", "setup")}
    assert states[-1]["details"]["reason"] == "setup"


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


def test_a_marked_host_prepares_no_model_outside_the_service(tmp_path: Path) -> None:
    private = tmp_path / "private"
    script = with_marker(tmp_path / "none.sock", private, _appliance("models", "prepare"))
    result = in_private_mounts(script, private)
    assert result.returncode == 2, result.stderr
    assert "the model comes with the signed release" in result.stderr
    assert not private.exists()  # nothing was opened or made there


_RAW_SETUP = """
import json, socket
sock = socket.socket(socket.AF_UNIX)
sock.connect({socket!r})
fields = {{"admin": "a1", "admin_password": "x" * 12,
          "officer": "o1", "officer_password": "y" * 12}}
sock.sendall(json.dumps({{"v": 1, "id": 1, "op": "setup", **fields}}).encode() + b"\\n")
for line in sock.makefile("rb"):
    message = json.loads(line)
    if "ok" in message or "error" in message:
        print(json.dumps(message))
        break
"""


@pytest.mark.model
def test_no_other_user_sets_up_a_home_by_hand(tmp_path: Path, model_path) -> None:
    """A peer that may connect (here: the socket's group) but is neither root nor the
    service's own user is refused, and no account is made."""
    base = Path(tempfile.mkdtemp(dir="/tmp"))  # a folder any uid may enter
    try:
        base.chmod(0o755)
        home, socket = tmp_path / "home", base / "s.sock"
        client = base / "setup.py"
        client.write_text(_RAW_SETUP.format(socket=str(socket)))
        client.chmod(0o644)
        as_other = f"setpriv --reuid {SERVICE_UID} --regid 0 --clear-groups"
        script = f"{_python_for_all(base)} {as_other} {sys.executable} {client}"
        with serving(home, model_path, "--socket", str(socket)):
            result = in_private_mounts(script, tmp_path / "private")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["error"]["code"] == "setup_denied"
        with AuditLog(audit_dir(home)) as log:
            assert not list(log.events(action="user_add"))
    finally:
        shutil.rmtree(base, ignore_errors=True)
