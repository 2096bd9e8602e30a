"""Documents: the service's sniffing of leading bytes, the child's, its ZIP reader."""

from __future__ import annotations

from appliance.documents.formats import ZipLimits, read_zip_parts, sniff, sniff_family
from appliance.errors import DocumentError
from tests.fuzz.harness.common import refusals

# Small, so that an archive the fuzzer makes cannot take long to inflate.
DOC_ZIP_LIMITS = ZipLimits(entries=64, total_bytes=1 << 20, ratio=200)
_FAMILIES = {"hwpx": "zip", "docx": "zip", "hwp5": "ole", "pdf": "pdf", "text": "text"}


def fuzz_doc_sniff(data: bytes) -> None:
    """The service's look at the leading bytes, the child's sniffing and its ZIP reader."""
    family = None
    with refusals(DocumentError):
        family = sniff_family(data[:4096])
        assert family in ("zip", "ole", "pdf", "text")
    with refusals(DocumentError):
        fmt = sniff(data)
        assert _FAMILIES[fmt] == family  # the service never refuses what the child takes
    with refusals(DocumentError):
        parts = read_zip_parts(data, DOC_ZIP_LIMITS)
        assert len(parts) <= DOC_ZIP_LIMITS.entries
        assert sum(map(len, parts.values())) <= DOC_ZIP_LIMITS.total_bytes
        assert not any(name.endswith("/") for name in parts)
