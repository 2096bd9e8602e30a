"""The site's GPU servers on the closed network: `[[remote]]` in the home's config.toml.

Site values, not policy: each site lists its own servers, their addresses, the
certificates that prove them and the interface they are reached on. Being in
config.toml, they are part of the home's signed state: a change is refused
until an officer accepts it (`appliance audit state --accept`), and that
acceptance is audited. The policy says whether any remote engine may be used
and up to which label ([remote], policy/remote.py).

Hosts are IP addresses, never names: a name would need a resolver, which is
traffic the appliance does not make; the certificate's name is `server_name`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

MAX_REMOTES = 16
_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_DNS = re.compile(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+")
_INTERFACE = re.compile(r"[A-Za-z0-9._-]{1,15}")
_MODEL = re.compile(r"[\x21-\x7e]{1,128}")
REQUIRED = {"name", "host", "port", "certificate", "key", "model", "max_level"}
OPTIONAL = {"server_name", "ca", "ca_sha256", "fingerprint", "interface"}

Fail = Callable[[str, str], Exception]


def read_remotes(home: Path, raw: Any, fail: Fail) -> Iterator[dict[str, Any]]:
    """Each [[remote]] table checked and with its files made absolute (relative to
    the home); the level is checked against the policy where both are known."""
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise fail("remote", "must be [[remote]] tables")
    if len(raw) > MAX_REMOTES:
        raise fail("remote", f"at most {MAX_REMOTES} servers")
    names: set[str] = set()
    for index, table in enumerate(raw):
        key = f"remote[{index}]"
        for name in table:
            if name not in REQUIRED | OPTIONAL:
                raise fail(f"{key}.{name}", "unknown key")
        for name in sorted(REQUIRED - set(table)):
            raise fail(f"{key}.{name}", "missing")
        entry = _entry(home, table, key, fail)
        if entry["name"] in names:
            raise fail(f"{key}.name", f"'{entry['name']}' is listed twice")
        names.add(entry["name"])
        yield entry


def _entry(home: Path, table: dict[str, Any], key: str, fail: Fail) -> dict[str, Any]:
    def text(name: str, pattern: re.Pattern[str], what: str) -> str:
        value = table[name]
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise fail(f"{key}.{name}", f"must be {what}")
        return value

    def path(name: str) -> Path:
        value = table[name]
        if not isinstance(value, str) or not value or "\x00" in value:
            raise fail(f"{key}.{name}", "must be a file (relative to the home, or absolute)")
        return home / value

    host = table["host"]
    try:
        address = ipaddress.ip_address(host if isinstance(host, str) else "")
    except ValueError:
        raise fail(f"{key}.host", "must be an IP address (names need a resolver)") from None
    port = table["port"]
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise fail(f"{key}.port", "must be a port number from 1 to 65535")
    entry: dict[str, Any] = {
        "name": text("name", _NAME, "lower-case letters, digits and -"),
        "host": str(address),
        "port": port,
        "server_name": str(address),
        "ca": None,
        "ca_sha256": None,
        "fingerprint": None,
        "certificate": path("certificate"),
        "key": path("key"),
        "model": text("model", _MODEL, "the model id the server answers to"),
        "max_level": text("max_level", _NAME, "a level id of the policy"),
        "interface": None,
    }
    if "server_name" in table:
        entry["server_name"] = text("server_name", _DNS, "the name its certificate carries")
    if "ca" in table:
        entry["ca"] = path("ca")
        if "ca_sha256" not in table:
            raise fail(f"{key}.ca_sha256", "missing: the CA file is pinned by its sha256")
    if "ca_sha256" in table:
        entry["ca_sha256"] = text("ca_sha256", _HEX64, "64 lower-case hex digits")
    if "fingerprint" in table:
        entry["fingerprint"] = text("fingerprint", _HEX64, "64 lower-case hex digits")
    if entry["ca"] is None and entry["fingerprint"] is None:
        raise fail(key, "give ca (with ca_sha256) or the server certificate's fingerprint")
    if "interface" in table:
        entry["interface"] = text("interface", _INTERFACE, "a network interface name")
    return entry


DROPIN = Path("/etc/systemd/system/appliance.service.d/remote-engines.conf")


def render_dropin(remotes: tuple[dict[str, Any], ...]) -> str:
    """The unit's drop-in for the listed servers: the unit keeps the host's network
    namespace (to reach them), may make IP sockets, and the kernel passes packets to
    and from their addresses only (IPAddressAllow= over the unit's IPAddressDeny=any).
    With none listed, nothing: the unit's own settings stand."""
    if not remotes:
        return ""
    addresses = " ".join(
        sorted({f"{r['host']}/{32 if ':' not in r['host'] else 128}" for r in remotes})
    )
    return (
        "# Generated by `appliance engines unit` from [[remote]] in the home's config.toml;\n"
        "# `appliance doctor` checks that it matches. Do not edit: change config.toml.\n"
        "[Service]\n"
        "# The listed GPU servers are on the host's network: keep its namespace.\n"
        "PrivateNetwork=no\n"
        "# IP sockets, to reach them (UNIX sockets as before).\n"
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n"
        "# The kernel passes packets of the service to and from these addresses only.\n"
        "IPAddressDeny=any\n"
        f"IPAddressAllow={addresses}\n"
    )
