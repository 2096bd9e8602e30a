"""The site's GPU servers: listed in config.toml, allowed by the policy, and the only
way off the host that the air-gap check, the egress guard and the unit's drop-in
leave open."""

from __future__ import annotations

import re
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.config import load_home_config
from appliance.errors import ConfigError, PolicyError
from appliance.policy import load_policy
from appliance.policy.airgap import IFF_LOOPBACK, IFF_UP, Passage, attest
from appliance.remote_site import render_dropin
from tests.conftest import run_cli
from tests.staff import DEFENSE

SERVER = """
[[remote]]
name = "gpu-a"
host = "10.20.0.5"
port = 8443
server_name = "gpu-a.mil.local"
ca = "remote/ca.pem"
ca_sha256 = "{digest}"
certificate = "remote/client.pem"
key = "remote/client.key"
model = "national-model"
max_level = "restricted"
interface = "eth1"
"""
DIGEST = "ab" * 32


def test_a_listed_server_is_read_with_its_files_in_the_home(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(SERVER.format(digest=DIGEST))
    (remote,) = load_home_config(tmp_path).remotes
    assert remote["host"] == "10.20.0.5"
    assert remote["server_name"] == "gpu-a.mil.local"
    assert remote["ca"] == tmp_path / "remote/ca.pem"
    assert remote["key"] == tmp_path / "remote/client.key"
    assert remote["fingerprint"] is None


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (('host = "10.20.0.5"', 'host = "gpu-a.mil.local"'), "remote[0].host: must be an IP"),
        (("port = 8443", "port = 0"), "remote[0].port"),
        (('ca_sha256 = "' + DIGEST + '"\n', ""), "remote[0].ca_sha256: missing"),
        (('ca = "remote/ca.pem"\nca_sha256 = "' + DIGEST + '"\n', ""), "give ca"),
        (('model = "national-model"', 'model = "a b"'), "remote[0].model"),
        (('interface = "eth1"', 'interface = "eth1; rm"'), "remote[0].interface"),
        (('name = "gpu-a"', 'name = "GPU A"'), "remote[0].name"),
        (('max_level = "restricted"\n', ""), "remote[0].max_level: missing"),
        (('interface = "eth1"', 'interface = "eth1"\nurl = "http://x"'), "remote[0].url"),
    ],
)
def test_a_malformed_server_is_refused_naming_the_key(
    tmp_path: Path, edit: tuple[str, str], fragment: str
) -> None:
    text = SERVER.format(digest=DIGEST)
    assert edit[0] in text
    (tmp_path / "config.toml").write_text(text.replace(*edit))
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        load_home_config(tmp_path)


def test_a_server_listed_twice_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(SERVER.format(digest=DIGEST) * 2)
    with pytest.raises(ConfigError, match="listed twice"):
        load_home_config(tmp_path)


def _policy(tmp_path: Path, table: str):
    path = tmp_path / "policy.toml"
    path.write_text(DEFENSE.read_text(encoding="utf-8") + table, encoding="utf-8")
    return load_policy(path)


def test_the_policy_fails_closed_where_it_is_silent(tmp_path: Path) -> None:
    silent = _policy(tmp_path, "")
    assert silent.remote_level() is None  # no remote engine unless allowed
    allowed = _policy(tmp_path, "\n[remote]\nallowed = true\n")
    assert allowed.remote_level() == allowed.lowest  # the lowest level only
    assert allowed.remote.above == "refuse"
    wider = _policy(tmp_path, '\n[remote]\nallowed = true\nmax_level = "restricted"\n')
    assert wider.remote_level() == wider.level("restricted")


@pytest.mark.parametrize(
    ("table", "fragment"),
    [
        ("allowed = 1", "remote.allowed: must be bool"),
        ('max_level = "top"', "remote.max_level: no level 'top'"),
        ('above = "cloud"', "remote.above: must be one of refuse, local"),
        ("endpoints = []", "remote.endpoints: unknown key"),
    ],
)
def test_invalid_remote_rules_are_refused(tmp_path: Path, table: str, fragment: str) -> None:
    with pytest.raises(PolicyError, match=re.escape(fragment)):
        _policy(tmp_path, f"\n[remote]\n{table}\n")


def _proc(root: Path, routes: str, ipv6: str = "") -> Path:
    for net in (root / "net", root / "1" / "net"):
        net.mkdir(parents=True)
        (net / "dev").write_text("Inter-|\n face |\n    lo: 0 0\n  eth1: 0 0\n")
        (net / "route").write_text(
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n" + routes
        )
        (net / "ipv6_route").write_text(ipv6)
    return root


FLAGS = {"lo": IFF_UP | IFF_LOOPBACK, "eth1": IFF_UP}
ON_LINK = "eth1\t000014AC\t00000000\t0001\t0\t0\t0\t00FFFFFF\n"  # 172.20.0.0/24, no gateway
DEFAULT = "eth1\t00000000\t010014AC\t0003\t0\t0\t0\t00000000\n"  # default via 172.20.0.1
LINK_LOCAL = (
    "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 "
    "00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth1\n"
)


def test_only_the_way_to_a_listed_server_keeps_the_air_gap(tmp_path: Path) -> None:
    server = Passage("eth1", "172.20.0.5")
    flags = FLAGS.__getitem__
    alone = attest(_proc(tmp_path / "a", ON_LINK, LINK_LOCAL), flags, [server])
    assert alone.airgapped, alone.reasons
    assert alone.as_json()["passages"] == [{"interface": "eth1", "address": "172.20.0.5"}]
    unlisted = attest(_proc(tmp_path / "b", ON_LINK, LINK_LOCAL), flags)
    assert "interface eth1 is up" in unlisted.reasons
    elsewhere = attest(_proc(tmp_path / "c", ON_LINK), flags, [Passage("eth1", "10.9.9.9")])
    assert "ipv4 route 172.20.0.0/24 on eth1" in elsewhere.reasons
    default = attest(_proc(tmp_path / "d", ON_LINK + DEFAULT), flags, [server])
    assert "ipv4 route default via 172.20.0.1 on eth1" in default.reasons
    other_interface = attest(_proc(tmp_path / "e", ON_LINK), flags, [Passage("eth2", "172.20.0.5")])
    assert "interface eth1 is up" in other_interface.reasons


GUARDED = """
import socket, sys
from appliance.policy.egress import EgressDenied, allow, install_guard
install_guard(allow_loopback=False)
allow([("127.0.0.1", {port})])
for port in ({port}, {port} + 1):
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.settimeout(5)
    try:
        client.connect(("127.0.0.1", port))
        print("connected", port == {port})
    except EgressDenied:
        print("denied", port == {port})
    except OSError:
        print("refused by the host", port == {port})
    finally:
        client.close()
try:
    socket.getaddrinfo("gpu-a.mil.local", 443)
except EgressDenied:
    print("lookup denied")
"""


def test_the_egress_guard_lets_through_exactly_the_listed_address_and_port() -> None:
    import socket

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(2)
    port = listener.getsockname()[1]
    try:
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(GUARDED.format(port=port))],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        listener.close()
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["connected True", "denied False", "lookup denied"]


def test_the_drop_in_opens_the_listed_addresses_only(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(SERVER.format(digest=DIGEST))
    remotes = load_home_config(tmp_path).remotes
    text = render_dropin(remotes)
    settings = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert settings == [
        "[Service]",
        "PrivateNetwork=no",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "IPAddressDeny=any",
        "IPAddressAllow=10.20.0.5/32",
    ]
    assert render_dropin(()) == ""
    shown = run_cli("engines", "unit", home=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == text


def test_engines_cert_makes_a_private_key_and_a_client_request(tmp_path: Path) -> None:
    made = run_cli("engines", "cert", "--name", "appliance-01", "--out", str(tmp_path / "tls"),
                   home=tmp_path)  # fmt: skip
    assert made.returncode == 0, made.stderr
    key = tmp_path / "tls" / "client.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "PRIVATE KEY" not in made.stdout + made.stderr
    request = x509.load_pem_x509_csr((tmp_path / "tls" / "client.csr").read_bytes())
    assert request.is_signature_valid
    usage = request.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usage
    again = run_cli("engines", "cert", "--name", "x", "--out", str(tmp_path / "tls"), home=tmp_path)
    assert again.returncode == 2
    assert "already exists" in again.stderr
