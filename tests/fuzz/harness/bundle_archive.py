"""Bundle: the tar reader."""

from __future__ import annotations

from appliance.bundle.archive import METADATA as METADATA_DIR
from appliance.bundle.archive import TARGETS as TARGETS_DIR
from appliance.bundle.archive import BundleArchive
from appliance.errors import BundleError
from tests.fuzz.harness.common import as_file, refusals


def fuzz_bundle_archive(data: bytes) -> None:
    """The tar as given, then with its header checksums made right: most mutations
    of a header break its checksum, and the member checks lie behind it."""
    for variant in dict.fromkeys((data, with_tar_checksums(data))):
        path = as_file("fuzz.bundle", variant)
        with refusals(BundleError), BundleArchive(path) as archive:
            assert archive.members
            for name, info in archive.members.items():
                assert name.startswith((METADATA_DIR, TARGETS_DIR))
                assert ".." not in name.split("/")
                assert info.isreg()
                assert sum(len(block) for block in archive.stream(name)) == info.size


def with_tar_checksums(data: bytes) -> bytes:
    """`data` with the checksum of each tar header it holds recomputed."""
    out = bytearray(data)
    at = 0
    while at + 512 <= len(out) and any(out[at : at + 512]):
        out[at + 148 : at + 156] = b" " * 8  # the checksum counts its own field as spaces
        out[at + 148 : at + 156] = b"%06o\0 " % sum(out[at : at + 512])
        try:
            size = int(bytes(out[at + 124 : at + 136]).strip(b" \0") or b"0", 8)
        except ValueError:
            break  # a size tarfile reads otherwise (base-256) or not at all
        at += 512 + -(-size // 512) * 512  # the header, then its data in whole blocks
    return bytes(out)
