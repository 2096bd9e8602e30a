"""Importance matrices made by llama.cpp's `llama-imatrix`, for the quantizer.

The file is a GGUF holding, for each weight, `<name>.in_sum2` (the summed
squares of its inputs, one row per expert) and `<name>.counts` (how many
tokens each row saw). llama.cpp's quantize tool divides each row by its count,
or uses 1 where nothing was seen; so does `read_imatrix`. The file records the
calibration text under `imatrix.datasets`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from appliance.errors import InputError, ModelFormatError

if TYPE_CHECKING:
    from gguf import GGUFReader

IN_SUM2 = ".in_sum2"
COUNTS = ".counts"


@dataclass(frozen=True)
class ImportanceMatrix:
    path: Path
    entries: dict[str, np.ndarray]  # tensor name -> normalised float32 values
    datasets: list[str]  # the calibration texts it was computed on
    chunks: int


def read_imatrix(path: Path) -> ImportanceMatrix:
    if not path.is_file():
        raise InputError(f"{path} is not a readable file")
    from gguf import GGUFReader  # 0.1 s to import: only when a matrix is read

    try:
        reader = GGUFReader(path)
    except (ValueError, OSError, IndexError) as exc:
        raise ModelFormatError(
            f"{path} is not a GGUF importance matrix (llama-imatrix's default output): {exc}"
        ) from None
    tensors = {tensor.name: tensor for tensor in reader.tensors}
    entries: dict[str, np.ndarray] = {}
    for name, tensor in tensors.items():
        if not name.endswith(IN_SUM2):
            continue
        weight = name.removesuffix(IN_SUM2)
        counts = tensors.get(weight + COUNTS)
        if counts is None or tensor.tensor_type.name != "F32" or counts.tensor_type.name != "F32":
            raise ModelFormatError(f"{path}: {weight} lacks float32 sums and counts")
        sums = np.asarray(tensor.data, dtype=np.float32).reshape(-1)
        rows = np.asarray(counts.data, dtype=np.float32).reshape(-1)
        if rows.size == 0 or sums.size % rows.size:
            raise ModelFormatError(f"{path}: {weight} has {rows.size} counts for {sums.size} sums")
        per_row = sums.reshape(rows.size, -1)
        seen = np.rint(rows)[:, None]
        values = np.where(seen > 0, per_row / np.maximum(seen, 1), 1.0).astype(np.float32)
        if not np.isfinite(values).all():
            raise ModelFormatError(f"{path}: {weight} has values that are not finite")
        entries[weight] = np.ascontiguousarray(values.reshape(-1))
    if not entries:
        raise ModelFormatError(f"{path} holds no importance data (.in_sum2 tensors)")
    return ImportanceMatrix(path, entries, _strings(reader, "imatrix.datasets"), _chunks(reader))


def _strings(reader: GGUFReader, key: str) -> list[str]:
    field = reader.get_field(key)
    if field is None:
        return []
    return [bytes(field.parts[index]).decode("utf-8", "replace") for index in field.data]


def _chunks(reader: GGUFReader) -> int:
    field = reader.get_field("imatrix.chunk_count")
    return int(field.parts[field.data[0]][0]) if field is not None and field.data else 0
