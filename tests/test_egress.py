"""The egress guard refuses network use; air-gap attestation reports the truth.

No test sends a packet off this machine: the guard is proved by denying
loopback too, against a server listening on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from appliance.policy.airgap import IFF_LOOPBACK, IFF_UP, attest
from tests.conftest import AIR_GAPPED, run_cli


def run_guarded(code: str, *, allow_loopback: bool) -> subprocess.CompletedProcess[str]:
    """Run `code` in a child with the guard installed (audit hooks cannot be removed)."""
    prelude = textwrap.dedent(
        f"""
        import socket, sys
        from appliance.policy.egress import EgressDenied, install_guard
        install_guard(lambda event, target: print("reported", event, target, file=sys.stderr),
                      allow_loopback={allow_loopback})
        """
    )
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def server():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    yield listener
    listener.close()


CONNECT = """
client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
client.settimeout(5)
try:
    client.connect(("127.0.0.1", {port}))
    print("connected")
except EgressDenied as exc:
    print("denied:", exc)
"""


def test_a_connect_is_refused_and_the_server_accepts_nothing(server) -> None:
    port = server.getsockname()[1]
    result = run_guarded(CONNECT.format(port=port), allow_loopback=False)
    assert result.stdout.startswith("denied: network access refused"), result.stderr
    assert "reported socket.connect connect to 127.0.0.1" in result.stderr
    readable, _, _ = select.select([server], [], [], 0.5)
    assert readable == []  # no connection ever reached the listening socket


def test_loopback_is_allowed_by_default(server) -> None:
    port = server.getsockname()[1]
    result = run_guarded(CONNECT.format(port=port), allow_loopback=True)
    assert result.stdout.strip() == "connected", result.stderr
    connection, _ = server.accept()
    connection.close()


def test_datagrams_and_name_lookups_are_refused_before_they_happen() -> None:
    code = """
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for attempt in (lambda: udp.sendto(b"x", ("127.0.0.1", 9)),
                    lambda: socket.getaddrinfo("example.invalid", 443),
                    lambda: socket.gethostbyname("example.invalid")):
        try:
            attempt()
            print("allowed")
        except EgressDenied:
            print("denied")
    left, right = socket.socketpair(socket.AF_UNIX)
    left.send(b"ok")
    print(right.recv(2).decode())
    """
    result = run_guarded(code, allow_loopback=False)
    assert result.stdout.split() == ["denied", "denied", "denied", "ok"], result.stderr


# -- attestation --------------------------------------------------------------------------


def _fake_proc(root: Path) -> Path:
    net = root / "net"
    net.mkdir(parents=True)
    (net / "dev").write_text(
        "Inter-|   Receive\n face |bytes\n    lo: 0 0\n  eth0: 0 0\n  wlan0: 0 0\n"
    )
    (net / "route").write_text(
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n"
        "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\n"
        "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n"
        "wlan0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\n"
    )
    (net / "ipv6_route").write_text(
        "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
        "fd000000000000000000000000000001 00000400 00000003 00000000 00000003 eth0\n"
        "00000000000000000000000000000001 80 00000000000000000000000000000000 00 "
        "00000000000000000000000000000000 00000000 00000002 00000000 80200001 lo\n"
    )
    return root


def test_attestation_reads_interfaces_and_routes(tmp_path: Path) -> None:
    flags = {"lo": IFF_UP | IFF_LOOPBACK, "eth0": IFF_UP, "wlan0": 0}
    result = attest(_fake_proc(tmp_path), flags=flags.__getitem__)
    assert not result.airgapped
    assert [(r.family, r.destination, r.gateway, r.interface) for r in result.routes] == [
        ("ipv4", "default", "192.0.2.1", "eth0"),
        ("ipv4", "192.0.2.0/24", None, "eth0"),
        ("ipv6", "default", "fd00::1", "eth0"),
    ]  # wlan0 is down, lo is loopback: neither leads off the host
    assert result.reasons[0] == "interface eth0 is up"


def test_this_host_is_reported_as_the_kernel_sees_it(tmp_path: Path) -> None:
    result = json.loads(run_cli("airgap", "status", "--json", home=tmp_path).stdout)
    routes = json.loads(
        subprocess.run(["ip", "-j", "route", "show", "default"], capture_output=True,
                       text=True, check=True).stdout or "[]"
    )  # fmt: skip
    ours = {(r["gateway"], r["interface"]) for r in result["routes"]
            if r["family"] == "ipv4" and r["destination"] == "default"}  # fmt: skip
    assert ours == {(r.get("gateway"), r["dev"]) for r in routes}
    assert result["airgapped"] is (not result["reasons"])


def test_a_namespace_without_network_is_air_gapped(tmp_path: Path) -> None:
    env = {**os.environ, "APPLIANCE_HOME": str(tmp_path)}
    result = subprocess.run(
        [*AIR_GAPPED, sys.executable, "-m", "appliance", "airgap", "status", "--json"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status == {
        "airgapped": True,
        "reasons": [],
        "interfaces": [{"name": "lo", "up": False, "loopback": True}],
        "routes": [],
        "passages": [],
        "override": None,
    }
