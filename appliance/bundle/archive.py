"""The bundle file: one uncompressed tar, metadata first, then the targets.

    metadata/1.root.json ... metadata/N.root.json
    metadata/timestamp.json, metadata/snapshot.json, metadata/targets.json
    targets/<path>                  every file the targets metadata lists

Reading never extracts: `BundleArchive` checks every member header before
any content is read, refusing anything but plain files with clean relative
names under those two folders (no absolute paths, no `..`, no links, devices,
directories or duplicates), and then serves members as streams.
"""

from __future__ import annotations

import io
import os
import posixpath
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Self, cast

from appliance.errors import BundleError
from appliance.fsutil import atomic_writer

METADATA = "metadata/"
TARGETS = "targets/"
MAX_MEMBERS = 10_000
CHUNK = 1 << 20
# PAX and GNU long-name headers: tarfile reads their whole data into memory.
EXTENDED_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                  tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)  # fmt: skip
MAX_EXTENDED = 64 << 10
# tarfile reports most damage as TarError, but some (GNU sparse maps, numbers out
# of range, seeks before the file) as these: on a bundle, each means "damaged".
TAR_FAILURES = (tarfile.TarError, OSError, ValueError, IndexError, OverflowError)

Progress = Callable[[int, int], None]


def write_bundle(
    target: Path,
    metadata: dict[str, bytes],
    files: dict[str, Path],
    progress: Progress | None = None,
) -> None:
    """Write the bundle atomically: metadata members first, then each target, streamed."""
    counter = _Counter(sum(path.stat().st_size for path in files.values()), progress)
    with (
        atomic_writer(target, mode=0o644) as sink,
        tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name, data in metadata.items():
            tar.addfile(_info(METADATA + name, len(data)), io.BytesIO(data))
        for name, path in sorted(files.items()):
            with path.open("rb") as source:
                counter.source = source
                info = _info(TARGETS + name, os.fstat(source.fileno()).st_size)
                tar.addfile(info, cast(IO[bytes], counter))


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0  # reproducible: the metadata carries the times that matter
    info.uname = info.gname = "appliance"
    return info


class _Counter:
    """Reads the current source for tarfile and reports bytes done."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.total = total
        self.done = 0
        self.progress = progress
        self.source: IO[bytes] | None = None

    def read(self, size: int = -1) -> bytes:
        assert self.source is not None
        block = self.source.read(size)
        self.done += len(block)
        if self.progress:
            self.progress(self.done, self.total)
        return block


class _CheckedInfo(tarfile.TarInfo):
    """A member header checked as tarfile reads it, before tarfile acts on it: it
    seeks by a member's size (a negative one lands before the file), reads an
    extended header's size whole (an enormous one fills memory), and follows the
    maps of sparse files, which a bundle never holds."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
        info = super().frombuf(buf, encoding, errors)
        if info.size < 0:
            raise tarfile.HeaderError(f"the member '{info.name}' has a negative size")
        if info.type in EXTENDED_TYPES and info.size > MAX_EXTENDED:
            raise tarfile.HeaderError(f"an extended tar header claims {info.size:,} bytes")
        if info.type == tarfile.GNUTYPE_SPARSE:
            raise tarfile.HeaderError(f"the member '{info.name}' is a sparse file")
        return info


class BundleArchive:
    """A bundle opened for reading: member headers checked, nothing extracted."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._tar = tarfile.open(path, mode="r:", tarinfo=_CheckedInfo)  # noqa: SIM115
        except FileNotFoundError:
            raise BundleError(f"{path} does not exist") from None
        except TAR_FAILURES as exc:
            raise BundleError(f"{path} is not a bundle: {exc}") from None
        try:
            self.members = self._check_members()
        except BaseException:
            self._tar.close()
            raise

    def close(self) -> None:
        self._tar.close()

    def __enter__(self) -> BundleArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_members(self) -> dict[str, tarfile.TarInfo]:
        members: dict[str, tarfile.TarInfo] = {}
        for count, info in enumerate(self._headers(), start=1):
            if count > MAX_MEMBERS:
                raise self._refuse(info.name, f"more than {MAX_MEMBERS} members")
            self._check(info)
            if info.name in members:
                raise self._refuse(info.name, "appears twice")
            members[info.name] = info
        if not any(name.startswith(METADATA) for name in members):
            raise BundleError(f"{self.path} is not a bundle: it has no metadata")
        return members

    def _headers(self) -> Iterator[tarfile.TarInfo]:
        """Each member header as tarfile reads it, its failures reported as ours."""
        headers = iter(self._tar)
        while True:
            try:
                info = next(headers)
            except StopIteration:
                return
            except TAR_FAILURES as exc:
                raise BundleError(f"{self.path} is damaged: {exc}") from None
            yield info

    def _check(self, info: tarfile.TarInfo) -> None:
        name = info.name
        if name.startswith("/") or "\\" in name or "\x00" in name:
            raise self._refuse(name, "has an absolute or unusual path")
        if ".." in name.split("/") or posixpath.normpath(name) != name:
            raise self._refuse(name, "leaves its folder ('..' or an unclean path)")
        if info.issym() or info.islnk():
            raise self._refuse(name, f"is a link (to {info.linkname})")
        if not info.isreg():
            raise self._refuse(name, "is not a plain file (a device, folder or FIFO)")
        if info.size < 0:  # a PAX size: tarfile would seek before the file for the next one
            raise self._refuse(name, "has a negative size")
        if not name.startswith((METADATA, TARGETS)) or name in (METADATA, TARGETS):
            raise self._refuse(name, "is outside the bundle's metadata and targets")

    def _refuse(self, name: str, why: str) -> BundleError:
        return BundleError(f"{self.path} was refused: the member '{name}' {why}")

    def size(self, name: str) -> int | None:
        info = self.members.get(name)
        return None if info is None else info.size

    def target_names(self) -> list[str]:
        return [name.removeprefix(TARGETS) for name in self.members if name.startswith(TARGETS)]

    def stream(self, name: str) -> Iterator[bytes]:
        """The member's bytes in chunks (KeyError if there is no such member)."""
        handle = self._tar.extractfile(self.members[name])
        if handle is None:  # pragma: no cover - only plain files pass _check
            raise BundleError(f"{self.path}: '{name}' cannot be read")
        with handle:
            while block := handle.read(CHUNK):
                yield block
