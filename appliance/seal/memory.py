"""Plaintext that never touches a disk: a sealed memfd, locked in RAM when allowed.

The decrypted model lives in an anonymous in-memory file (memfd). Once full it
is sealed against any further write, shrink or growth, and handed to the
engine as `/proc/self/fd/N`. The process is hardened first (non-dumpable, no
core), so no core dump, same-user ptrace, `/proc/PID/mem` or `/proc/PID/fd`
can copy the weights out. There is no fallback: a host without memfd gets an
error, never a temporary file.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import functools
import mmap
import os
import resource
from dataclasses import dataclass
from types import TracebackType

from appliance.errors import ConfigError, HostSecurityError

PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
MAP_FAILED = ctypes.c_void_p(-1).value
SEALS = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL


@dataclass(frozen=True)
class MemoryReport:
    """What protected the plaintext, for the operator to see."""

    sealed: bool
    locked: bool  # mlock held: the pages cannot be swapped out
    locked_kib: int  # VmLck of this process after locking
    swap_active: bool
    non_dumpable: bool

    def describe(self) -> str:
        if self.locked:
            lock = f"locked in RAM (VmLck {self.locked_kib:,} kB)"
        else:
            lock = "NOT locked in RAM (mlock refused)"
        swap = "swap is on" if self.swap_active else "no swap"
        return f"plaintext only in sealed memory, {lock}, {swap}"

    @property
    def warning(self) -> str | None:
        if not self.swap_active:
            return None
        if not self.locked:
            return (
                "swap is on and the model could not be locked in RAM: decrypted weights "
                "may be written to swap (raise RLIMIT_MEMLOCK, or use encrypted swap)"
            )
        return (
            "swap is on: the weights are locked in RAM, but prompts and answers in "
            "process memory may be swapped out (use encrypted swap)"
        )


def harden_process() -> None:
    """No core dumps, and no other process of this user may read this one's memory
    or open its files through /proc (PR_SET_DUMPABLE 0, RLIMIT_CORE 0).

    Both are per process and the dumpable flag is reset by execve, so every
    process that holds plaintext or prompts calls this itself, before it gets
    them. Raises HostSecurityError when either did not hold: fail closed.
    """
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (OSError, ValueError) as exc:
        raise HostSecurityError(f"cannot turn off core dumps ({exc}); refusing to go on") from None
    _libc().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    if not is_hardened():
        raise HostSecurityError(
            "this process cannot make itself non-dumpable (prctl PR_SET_DUMPABLE refused); "
            "refusing to hold model weights or prompts in it"
        )


def is_hardened() -> bool:
    """Whether this process is non-dumpable and can write no core file."""
    dumpable = _libc().prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)
    return dumpable == 0 and resource.getrlimit(resource.RLIMIT_CORE) == (0, 0)


class SealedMemory:
    """An anonymous in-RAM file of `size` bytes: filled by `append`, then `seal`ed."""

    def __init__(self, size: int, name: str = "appliance-model") -> None:
        memfd_create = getattr(os, "memfd_create", None)
        if memfd_create is None:
            raise HostSecurityError("this host has no memfd_create; sealed models cannot load")
        try:
            self.fd: int = memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        except OSError as exc:
            raise HostSecurityError(
                f"memfd_create failed ({exc.strerror}); refusing to put plaintext on disk"
            ) from None
        self.size = size
        self.written = 0
        self._view: int | None = None  # address of the read-only, locked mapping
        self._locked = False
        try:
            if size:
                os.posix_fallocate(self.fd, 0, size)  # fail now, not mid-way, when RAM is short
        except OSError as exc:
            self.close()
            if exc.errno in (errno.ENOSPC, errno.ENOMEM, errno.EFBIG):
                raise ConfigError(f"not enough memory for the {size:,}-byte model") from None
            raise

    @property
    def path(self) -> str:
        return f"/proc/self/fd/{self.fd}"

    def append(self, data: memoryview) -> None:
        """Add the next bytes (before `seal`)."""
        if self.written + len(data) > self.size:
            raise ValueError("more bytes than the sealed memory was made for")
        while data:
            done = os.pwrite(self.fd, data, self.written)
            self.written += done
            data = data[done:]

    def seal(self, *, lock: bool = True) -> MemoryReport:
        """Drop write access for good; map read-only and try to lock it in RAM."""
        if self.written != self.size:
            raise ValueError("sealed memory is not full")
        fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, SEALS)
        if self.size and lock:
            self._locked = self._map_locked()
        return MemoryReport(
            sealed=fcntl.fcntl(self.fd, fcntl.F_GET_SEALS) & SEALS == SEALS,
            locked=self._locked,
            locked_kib=_vm_locked_kib(),
            swap_active=swap_active(),
            non_dumpable=is_hardened(),
        )

    def _map_locked(self) -> bool:
        """Keep a read-only mapping for the memfd's life and mlock it: while it
        stands, none of the plaintext pages can be swapped out."""
        libc = _libc()
        address = libc.mmap(None, self.size, mmap.PROT_READ, mmap.MAP_SHARED, self.fd, 0)
        if address in (None, MAP_FAILED):
            return False
        self._view = address
        return bool(libc.mlock(ctypes.c_void_p(address), ctypes.c_size_t(self.size)) == 0)

    def close(self) -> None:
        if self._view is not None:
            _libc().munmap(ctypes.c_void_p(self._view), ctypes.c_size_t(self.size))  # ends mlock
            self._view = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> SealedMemory:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def swap_active() -> bool:
    try:
        with open("/proc/swaps", encoding="ascii") as swaps:
            return len(swaps.read().splitlines()) > 1
    except OSError:
        return True  # unknown: assume the worst


def _vm_locked_kib() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmLck:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    return libc
