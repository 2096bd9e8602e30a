"""Lightweighting: quantize a GGUF model with llama.cpp's own quantizer.

The source is validated before llama.cpp reads it and the result before it
takes its final name; the output is staged, fsynced and renamed.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from appliance.engine import native
from appliance.engine.gguf import read_gguf
from appliance.engine.imatrix import ImportanceMatrix
from appliance.engine.info import quantization_of
from appliance.errors import UsageError
from appliance.fsutil import fsync_directory

# Output types offered (llama.cpp's LLAMA_FTYPE_MOSTLY_* names).
FILE_TYPES = (
    "Q2_K",
    "Q3_K_M",
    "Q4_K_S",
    "Q4_K_M",
    "Q5_K_S",
    "Q5_K_M",
    "Q6_K",
    "Q8_0",
    "F16",
    "BF16",
)
UNQUANTIZED = ("F32", "F16", "BF16")


@dataclass(frozen=True)
class QuantizeReport:
    source_type: str
    result_type: str
    source_bytes: int
    result_bytes: int
    requantized: bool  # the source was already quantized: quality is lost twice

    def describe(self) -> str:
        ratio = self.result_bytes / self.source_bytes
        return (
            f"{self.source_type} {self.source_bytes:,} bytes -> {self.result_type} "
            f"{self.result_bytes:,} bytes ({ratio:.0%})"
        )


def quantize(
    source: Path, target: Path, file_type: str, imatrix: ImportanceMatrix | None = None
) -> QuantizeReport:
    """Quantize `source` to `file_type` into a new file `target`, guided by an
    importance matrix if one is given."""
    if file_type not in FILE_TYPES:
        raise UsageError(f"unknown quantization '{file_type}' (use {', '.join(FILE_TYPES)})")
    if target.exists():
        raise UsageError(f"{target} already exists")
    source_type = quantization_of(read_gguf(source))
    requantized = source_type not in UNQUANTIZED
    staged = target.with_name(f".{target.name}.partial")
    try:
        entries = imatrix.entries if imatrix else None
        native.quantize(source, staged, file_type, requantize=requantized, imatrix=entries)
        result = read_gguf(staged)
        with open(staged, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(staged, target)
        fsync_directory(target.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            staged.unlink()
    return QuantizeReport(
        source_type,
        quantization_of(result),
        source.stat().st_size,
        target.stat().st_size,
        requantized,
    )
