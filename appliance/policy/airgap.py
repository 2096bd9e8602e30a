"""Air-gap attestation: which interfaces are up and which routes lead off the host.

Two namespaces are read. This process's own (/proc/net): interfaces from
/proc/net/dev with their flags, IPv4 routes from /proc/net/route, IPv6 routes
from /proc/net/ipv6_route. And the host's, as PID 1 sees it
(/proc/1/net/...): a service under `PrivateNetwork=yes` sits in an empty
namespace of its own where everything looks air-gapped, so its own view
proves nothing about the host. The host's interface flags cannot be asked
from another namespace; its routes show every configured link (an interface
that is up carries at least its IPv6 link-local route). The host counts as
air-gapped when no interface but loopback is up in this namespace and no
route leaves either namespace; a host namespace that cannot be read counts
as networked (fail closed). The policy's `network.require_airgap` turns a
failed attestation into a refusal to serve.

With GPU servers listed (`Passage`: an address reached on a named interface),
"air-gapped" means no route off the host except to them: their interface may
be up, and a route on it may lead only to them (an on-link network holding a
listed address, a host route to one, IPv6 link-local); a default route, a
route through a gateway to a network, or any route on another interface
still breaks the air gap.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

IFF_UP = 0x1
IFF_LOOPBACK = 0x8
RTF_UP = 0x1
SIOCGIFFLAGS = 0x8913


@dataclass(frozen=True)
class Interface:
    name: str
    up: bool
    loopback: bool


@dataclass(frozen=True)
class Route:
    family: str  # "ipv4" or "ipv6"
    destination: str  # CIDR; "default" for 0.0.0.0/0 and ::/0
    gateway: str | None
    interface: str

    def describe(self) -> str:
        via = f" via {self.gateway}" if self.gateway else ""
        return f"{self.family} route {self.destination}{via} on {self.interface}"


@dataclass(frozen=True)
class Passage:
    """A listed GPU server: the only place a route may lead, on its interface."""

    interface: str
    address: str

    def allows(self, route: Route) -> bool:
        if route.interface != self.interface or route.destination == "default":
            return False
        network = ipaddress.ip_network(route.destination, strict=False)
        if route.family == "ipv6" and network.subnet_of(_LINK_LOCAL):  # type: ignore[arg-type]
            return route.gateway is None
        listed = ipaddress.ip_address(self.address)
        if listed not in network:
            return False
        return route.gateway is None or network.num_addresses == 1


_LINK_LOCAL = ipaddress.ip_network("fe80::/10")


@dataclass
class Attestation:
    interfaces: list[Interface]
    routes: list[Route]  # routes that leave the host (not via loopback)
    reasons: list[str] = field(default_factory=list)
    passages: list[Passage] = field(default_factory=list)  # the listed GPU servers

    @property
    def airgapped(self) -> bool:
        return not self.reasons

    def as_json(self) -> dict[str, Any]:
        return {
            "airgapped": self.airgapped,
            "reasons": self.reasons,
            "interfaces": [asdict(i) for i in self.interfaces],
            "routes": [asdict(r) for r in self.routes],
            "passages": [asdict(p) for p in self.passages],
        }


def attest(
    proc: Path = Path("/proc"),
    flags: Callable[[str], int] | None = None,
    passages: Sequence[Passage] = (),
) -> Attestation:
    """Attest this namespace and the host's (`proc` and `flags` are replaced in tests),
    allowing only what `passages` (the listed GPU servers) need."""
    flags_of = flags or interface_flags
    interfaces = [
        Interface(name, bool(flags_of(name) & IFF_UP), bool(flags_of(name) & IFF_LOOPBACK))
        for name in _interface_names(proc / "net")
    ]
    loopback = {i.name for i in interfaces if i.loopback}
    up = {i.name for i in interfaces if i.up}
    routes = [
        route
        for route in _routes(proc / "net")
        if route.interface not in loopback and route.interface in up
    ]
    result = Attestation(interfaces, routes, passages=list(passages))
    listed = {passage.interface for passage in passages}
    for interface in interfaces:
        if interface.up and not interface.loopback and interface.name not in listed:
            result.reasons.append(f"interface {interface.name} is up")
    for route in routes:
        if not any(passage.allows(route) for passage in passages):
            result.reasons.append(route.describe())
    host = proc / "1" / "net"
    if not _interface_names(host):  # even an empty namespace lists lo
        result.reasons.append("the host's network namespace cannot be read")
        return result
    for route in _routes(host):
        if route.interface != "lo" and route not in routes:
            result.routes.append(route)
            if not any(passage.allows(route) for passage in passages):
                result.reasons.append(f"the host has an {route.describe()}")
    return result


def _routes(net: Path) -> list[Route]:
    return [*_ipv4_routes(net), *_ipv6_routes(net)]


def _read(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except OSError:
        return []


def _interface_names(net: Path) -> list[str]:
    lines = _read(net / "dev")[2:]  # two header lines
    return [line.split(":", 1)[0].strip() for line in lines if ":" in line]


_IFREQ = "16sH22x"  # struct ifreq: the name, then ifr_flags in a 24-byte union


def interface_flags(name: str) -> int:
    """The interface's flags in this process's network namespace (SIOCGIFFLAGS).

    An AF_UNIX socket carries the namespace, so this works where the systemd
    unit allows no other address family. Unknown counts as up (fail closed).
    """
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            request = struct.pack(_IFREQ, name.encode()[:15], 0)
            reply = fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, request)
    except OSError:
        return IFF_UP
    return int(struct.unpack(_IFREQ, reply)[1])


def _ipv4_routes(net: Path) -> list[Route]:
    routes = []
    for line in _read(net / "route")[1:]:
        fields = line.split()
        if len(fields) < 8 or not int(fields[3], 16) & RTF_UP:
            continue
        destination = _ipv4(fields[1])
        prefix = bin(int(fields[7], 16)).count("1")
        gateway = _ipv4(fields[2])
        routes.append(
            Route(
                "ipv4",
                "default" if prefix == 0 else f"{destination}/{prefix}",
                None if gateway == "0.0.0.0" else gateway,
                fields[0],
            )
        )
    return routes


def _ipv4(little_endian_hex: str) -> str:
    return str(ipaddress.IPv4Address(struct.pack("<I", int(little_endian_hex, 16))))


def _ipv6_routes(net: Path) -> list[Route]:
    routes = []
    for line in _read(net / "ipv6_route"):
        fields = line.split()
        if len(fields) < 10 or not int(fields[8], 16) & RTF_UP:
            continue
        destination = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
        prefix = int(fields[1], 16)
        gateway = ipaddress.IPv6Address(bytes.fromhex(fields[4]))
        if destination.is_multicast:
            continue
        routes.append(
            Route(
                "ipv6",
                "default" if prefix == 0 else f"{destination}/{prefix}",
                None if gateway.is_unspecified else str(gateway),
                fields[9],
            )
        )
    return routes
