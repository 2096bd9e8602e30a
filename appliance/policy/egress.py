"""The egress guard: a tripwire against network use from inside the appliance.

A Python audit hook (PEP 578) refuses socket connect, sendto and sendmsg to
anything but AF_UNIX and loopback, and name lookups of anything but
localhost, raising EgressDenied in the code that tried; the attempt is
reported to a callback (the audit log). It is a tripwire, not a sandbox:
native code (llama.cpp, OpenSSL) and child processes do not pass through
Python's audit hooks. The sandbox is the OS: the systemd unit in installer/
gives the service no network at all (PrivateNetwork=yes,
RestrictAddressFamilies=AF_UNIX, IPAddressDeny=any).

A site's listed GPU servers (`allow`, from config.toml's [[remote]] where the
policy allows remote engines) are the one exception: connections to exactly
their address and port, and lookups of exactly their address (an IP literal,
which no resolver is asked about); the unit's drop-in opens the same and no more.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import sys
from collections.abc import Callable
from typing import Any

Reporter = Callable[[str, str], None]  # (event, target), never raises
_SEND_EVENTS = ("socket.connect", "socket.sendto", "socket.sendmsg")
_LOOKUP_EVENTS = (
    "socket.getaddrinfo",
    "socket.gethostbyname",
    "socket.gethostbyname_ex",
    "socket.gethostbyaddr",
    "socket.getnameinfo",
)
_installed = False
_reporters: list[Reporter] = []
_allowed: set[tuple[str, int]] = set()  # (address, port) of the listed GPU servers


class EgressDenied(PermissionError):
    """Network use the appliance never allows."""


def report_to(reporter: Reporter) -> None:
    """Also tell `reporter` of refused attempts (the audit log, once it is open)."""
    _reporters.append(reporter)


def allow(destinations: list[tuple[str, int]]) -> None:
    """Let this process connect to exactly these (IP address, port) pairs."""
    _allowed.update((str(ipaddress.ip_address(host)), port) for host, port in destinations)


def install_guard(report: Reporter | None = None, *, allow_loopback: bool = True) -> bool:
    """Install the hook in this process (once: audit hooks cannot be removed).

    Returns False if a guard was already installed.
    """
    global _installed
    if report is not None:
        _reporters.append(report)
    if _installed:
        return False
    _installed = True

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if not event.startswith("socket."):
            return  # the hot path: every audited event in the process passes here
        target = _denied_target(event, args, allow_loopback)
        if target is None:
            return
        for reporter in _reporters:
            with contextlib.suppress(Exception):  # the refusal matters more than its record
                reporter(event, target)
        raise EgressDenied(f"network access refused: the appliance never connects out ({target})")

    sys.addaudithook(hook)
    return True


def _denied_target(event: str, args: tuple[Any, ...], allow_loopback: bool) -> str | None:
    """The refused destination as text, or None when the event is allowed."""
    if event in _SEND_EVENTS:
        sock, address = args[0], args[1] if len(args) > 1 else None
        family = getattr(sock, "family", None)
        if family == socket.AF_UNIX or address is None:
            return None  # local sockets; sendmsg on a connected socket was checked at connect
        host = address[0] if isinstance(address, tuple) and address else str(address)
        if allow_loopback and _is_loopback(host):
            return None
        if isinstance(address, tuple) and len(address) >= 2 and (host, address[1]) in _allowed:
            return None
        return f"{event.removeprefix('socket.')} to {host}"
    if event in _LOOKUP_EVENTS:
        host = args[0] if args else None
        if host is None or (allow_loopback and _is_loopback(host)):
            return None
        if isinstance(host, tuple):  # getnameinfo((host, port), flags)
            host = host[0]
        if isinstance(host, str) and any(host == listed for listed, _ in _allowed):
            return None  # an IP literal: parsed, no resolver asked
        return f"name lookup of {host!s}"
    return None


def _is_loopback(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if not isinstance(host, str):
        return False
    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False
