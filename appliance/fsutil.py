"""Atomic file writes: stage beside the target, fsync, rename, fsync the directory.

A reader sees the old file or the whole new one, never a torn write; a crash
or an error leaves no partial file under the target's name.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from appliance.errors import ConfigError, InputError, UsageError


@contextlib.contextmanager
def atomic_writer(target: Path, *, mode: int = 0o600, replace: bool = True) -> Iterator[BinaryIO]:
    """Yield a file to write; it replaces `target` only if the block succeeds.

    With `replace=False` it never replaces anything: the file takes the name
    only if nothing has it (link, not rename), else UsageError and no trace.
    """
    directory = target.parent
    staging = directory / f".{target.name}.{os.getpid()}.partial"
    try:
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except OSError as exc:
        raise ConfigError(f"cannot write in {directory}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(staging, target)
        else:
            _link_new(staging, target)
        fsync_directory(directory)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging)
        if isinstance(exc, OSError):  # disk full, quota, I/O error: the user's to fix
            raise ConfigError(f"cannot write {target}: {exc.strerror or exc}") from None
        raise


def _link_new(staging: Path, target: Path) -> None:
    try:
        os.link(staging, target)
    except FileExistsError:
        raise UsageError(f"{target} already exists; refusing to overwrite it") from None
    os.unlink(staging)


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_limited(path: Path, limit: int, what: str) -> bytes:
    """A small file the user named (a key, a policy, a checkpoint), read whole.

    One sentence if it is missing or unreadable, not a regular file (a FIFO
    would hang the open, a device never end: O_NONBLOCK and the check on the
    opened file keep both out), or larger than `limit` bytes.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{what} {path} is not a regular file")
        if info.st_size > limit:
            raise InputError(f"{what} {path} is larger than {limit:,} bytes")
        try:
            data = handle.read(limit + 1)
        except OSError as exc:
            raise InputError(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > limit:  # it grew while being read
        raise InputError(f"{what} {path} is larger than {limit:,} bytes")
    return data


def read_private(path: Path, limit: int, what: str) -> bytes:
    """A small secret file the user named (a password, a passphrase), read whole.

    Refused unless it is a regular file only its owner may read or write, as
    identity files are: a secret others can read is no secret. The checks are
    on the opened file, so it cannot be swapped between check and read, and
    O_NONBLOCK keeps a FIFO from hanging the open.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{what} {path} is not a regular file")
        if info.st_mode & 0o077:
            raise InputError(
                f"{what} {path} is readable or writable by other users; "
                f"run 'chmod 600 {path}' first"
            )
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise InputError(f"{what} {path} is larger than {limit:,} bytes")
    return data
