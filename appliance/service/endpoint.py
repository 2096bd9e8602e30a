"""Where the service listens, and how a command finds it.

An installed host carries the installer's root-owned marker
(/etc/appliance/service.toml: `socket`, `home`): every command on that host
is a client of the service, whatever APPLIANCE_HOME says, and never falls
back to opening a home itself. Without a marker, a home whose service is
running (HOME/service.sock) is used through it; otherwise the command runs
in-process (development, single-user, tests).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import stat
import struct
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import ConfigError, ServiceError

MARKER = Path("/etc/appliance/service.toml")
SOCKET_NAME = "service.sock"
_MARKER_LIMIT = 4096


@dataclass(frozen=True)
class Marker:
    socket: Path
    home: Path


def read_marker(path: Path = MARKER) -> Marker | None:
    """The installer's marker, or None on a host no installer configured.

    A marker that exists but that root does not own alone is refused rather
    than ignored: falling back to in-process would hand enforcement back to
    the user.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read the service marker {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        folder = os.stat(path.parent)
        if not stat.S_ISREG(info.st_mode) or any(
            entry.st_uid != 0 or entry.st_mode & 0o022 for entry in (info, folder)
        ):
            raise ConfigError(
                f"the service marker {path} or its folder is not root's alone; "
                "reinstall the appliance or remove the marker as root"
            )
        raw = file.read(_MARKER_LIMIT + 1)
    try:
        if len(raw) > _MARKER_LIMIT:
            raise ValueError("too large")
        values = tomllib.loads(raw.decode("utf-8"))
        marker = Marker(Path(values["socket"]), Path(values["home"]))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise ConfigError(f"the service marker {path} is not valid") from None
    if not (marker.socket.is_absolute() and marker.home.is_absolute()):
        raise ConfigError(f"the service marker {path} must name absolute paths")
    return marker


def require_home(installed: Marker, home: Path) -> None:
    """On an installed host the service's home is the only one."""
    if home.resolve() != installed.home.resolve():
        raise ConfigError(f"this host's appliance service serves {installed.home}, not {home}")


def as_home_owner(home: Path, marker: Path = MARKER) -> None:
    """On an installed host, root works on the service's home as the service user.

    Commands that still open the home in their own process (`setup`, `doctor`,
    `models prepare`) would otherwise leave files only root can read (a new
    user database, the audit anchor, a WAL) in a home the service must own.
    Elsewhere, and for any other user, nothing changes.
    """
    installed = read_marker(marker)
    if installed is None or os.geteuid() != 0:
        return
    require_home(installed, home)
    owner = os.stat(installed.home)
    if owner.st_uid == 0:
        return  # not handed over yet: the installer's own run
    try:
        os.setgroups([])
        os.setresgid(owner.st_gid, owner.st_gid, owner.st_gid)
        os.setresuid(owner.st_uid, owner.st_uid, owner.st_uid)
    except OSError as exc:
        raise ConfigError(f"cannot act as the owner of {home}: {exc.strerror}") from None


def home_socket(home: Path) -> Path:
    return home / SOCKET_NAME


def claim(home: Path) -> int:
    """Hold the home for this service alone (released when the process ends, however)."""
    path = home / "service.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ConfigError(f"another appliance service already serves {home}") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())  # for `appliance service stop`
    return fd


def holder(home: Path) -> int | None:
    """The pid of the service that holds `home`, or None when none does."""
    try:
        fd = os.open(home / "service.lock", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:  # held: read who holds it
            text = os.read(fd, 32).decode("ascii", "replace").strip()
            return int(text) if text.isdigit() else None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def find_service(home: Path, marker: Path = MARKER) -> Path | None:
    """The socket a command must use, or None where it runs in-process.

    On a marked host, always the marker's socket, running or not. Elsewhere,
    the home's socket if a service answers on it.
    """
    installed = read_marker(marker)
    if installed is not None:
        return installed.socket
    candidate = home_socket(home)
    try:
        if not stat.S_ISSOCK(os.lstat(candidate).st_mode):
            return None
        connect(candidate, timeout=2.0).close()
    except (OSError, ServiceError):
        return None  # no service, or one that died: the home is this process's
    return candidate


@contextlib.contextmanager
def _short(path: Path) -> Iterator[str]:
    """A name for `path` that fits sockaddr_un (108 bytes): through its folder's fd."""
    if len(os.fsencode(path)) < 100:
        yield str(path)
        return
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{folder}/{path.name}"
    finally:
        os.close(folder)


def connect(path: Path, timeout: float | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    try:
        with _short(path) as name:
            sock.connect(name)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or type(exc).__name__
        if exc.errno in (errno.ENOENT, errno.ECONNREFUSED):
            reason = "it is not running"
        raise ServiceError(f"cannot reach the appliance service at {path}: {reason}") from None
    sock.settimeout(None)
    return sock


def listen(path: Path, backlog: int = 64) -> socket.socket:
    """Bind the service socket (0660: the owner and the group's members may connect).

    A leftover socket of a service that died is replaced; one that answers
    means another service already runs here.
    """
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise ConfigError(f"{path} exists and is not a socket")
        try:
            connect(path, timeout=2.0).close()
        except ServiceError:
            path.unlink()
        else:
            raise ConfigError(f"another appliance service is already listening on {path}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old = os.umask(0o117)  # the socket is never, even for an instant, open to others
    try:
        with _short(path) as name:
            sock.bind(name)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {path}: {exc.strerror}") from None
    finally:
        os.umask(old)
    sock.listen(backlog)
    return sock


@dataclass(frozen=True)
class Peer:
    """The OS identity of a connected client, from the kernel (SO_PEERCRED)."""

    pid: int
    uid: int
    gid: int


def peer_of(sock: socket.socket) -> Peer:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(pid, uid, gid)
