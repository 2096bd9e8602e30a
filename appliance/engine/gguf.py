"""Validate and describe a GGUF file before llama.cpp ever sees it.

llama.cpp trusts its input more than an appliance can: a truncated or hostile
file must end in one clear error, never in an abort of the native library. This
reader checks everything llama.cpp's own loader relies on (header, every
metadata value, every tensor's shape, type and data range) and keeps the
metadata an operator needs to know what they are running.

Large arrays (the vocabulary) are walked but not kept: only their element type
and length are recorded, so validation stays fast and small in memory.
"""

from __future__ import annotations

import mmap
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.errors import InputError, ModelFormatError

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_TENSOR_NAME = 63  # GGML_MAX_NAME minus the terminating NUL
MAX_STRING = 1 << 30  # GGUF_MAX_STRING_LENGTH in llama.cpp
MAX_ARRAY = 1 << 30  # GGUF_MAX_ARRAY_ELEMENTS in llama.cpp
SMALL_ARRAY = 64  # arrays up to this length are kept in the metadata

# GGUF value types: id -> (name, struct format or None for string/array).
_STRING, _ARRAY = 8, 9
_SCALARS: dict[int, tuple[str, str]] = {
    0: ("uint8", "<B"),
    1: ("int8", "<b"),
    2: ("uint16", "<H"),
    3: ("int16", "<h"),
    4: ("uint32", "<I"),
    5: ("int32", "<i"),
    6: ("float32", "<f"),
    7: ("bool", "<?"),
    10: ("uint64", "<Q"),
    11: ("int64", "<q"),
    12: ("float64", "<d"),
}
_TYPE_NAMES = {**{k: v[0] for k, v in _SCALARS.items()}, _STRING: "string", _ARRAY: "array"}

# Keys llama.cpp reads with a fixed type; a wrong type there must stop here.
_EXPECTED_TYPES: dict[str, tuple[int, int | None]] = {
    "general.architecture": (_STRING, None),
    "general.alignment": (4, None),
    "general.file_type": (4, None),
    "tokenizer.ggml.model": (_STRING, None),
    "tokenizer.ggml.tokens": (_ARRAY, _STRING),
    "tokenizer.ggml.merges": (_ARRAY, _STRING),
    "tokenizer.ggml.token_type": (_ARRAY, 5),
    "tokenizer.chat_template": (_STRING, None),
    # LoRA adapters (llama-adapter.cpp reads these with gguf_get_val_str/_f32).
    "general.type": (_STRING, None),
    "adapter.type": (_STRING, None),
    "adapter.lora.alpha": (6, None),
    "adapter.alora.invocation_tokens": (_ARRAY, 4),
}


@dataclass(frozen=True)
class ArraySummary:
    """A metadata array too long to keep: its element type and length."""

    item_type: str
    length: int


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    ggml_type: str
    offset: int  # relative to the start of the data section
    nbytes: int

    @property
    def elements(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count


@dataclass(frozen=True)
class GGUFFile:
    """The validated structure of a GGUF file."""

    path: Path
    version: int
    file_size: int
    alignment: int
    tensor_info_offset: int  # where the metadata ends and tensor infos begin
    data_offset: int
    metadata: dict[str, Any]
    tensors: tuple[TensorInfo, ...]

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)


def read_gguf(path: str | os.PathLike[str]) -> GGUFFile:
    """Parse and validate `path` (a file or /proc/self/fd/N).

    Raises InputError when the path cannot be read as a regular file and
    ModelFormatError when its contents are not a GGUF llama.cpp can load.
    """
    path = Path(path)
    with open_regular_file(path) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            raise ModelFormatError(f"{path} is empty, not a GGUF model")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
            return _Parser(path, view, size).parse()


def open_regular_file(path: Path) -> Any:
    """Open a regular file for reading, with one clear sentence if it is not one."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{path} does not exist") from None
    except PermissionError:
        raise InputError(f"{path} cannot be read: permission denied") from None
    except OSError as exc:
        raise InputError(f"{path} cannot be read: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"{path} is a directory, not a model file")
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{path} is not a regular file")
    try:
        return open(path, "rb")
    except PermissionError:
        raise InputError(f"{path} cannot be read: permission denied") from None
    except OSError as exc:
        raise InputError(f"{path} cannot be read: {exc.strerror}") from None


class _Parser:
    def __init__(self, path: Path, view: mmap.mmap, size: int) -> None:
        self.path = path
        self.view = view
        self.size = size
        self.pos = 0

    # -- primitives ---------------------------------------------------------

    def fail(self, what: str) -> ModelFormatError:
        return ModelFormatError(f"{self.path} is not a valid GGUF model: {what}")

    def take(self, count: int, what: str) -> int:
        """Reserve `count` bytes at the cursor; return where they start."""
        start = self.pos
        if count > self.size - start:
            raise self.fail(f"file ends inside the {what} (truncated at byte {self.size})")
        self.pos = start + count
        return start

    def unpack(self, fmt: str, what: str) -> Any:
        width = struct.calcsize(fmt)
        return struct.unpack_from(fmt, self.view, self.take(width, what))[0]

    def string(self, what: str) -> str:
        length = self.unpack("<Q", what)
        if length > MAX_STRING:
            raise self.fail(f"the {what} claims {length} bytes, more than llama.cpp allows")
        start = self.take(length, what)
        try:
            return self.view[start : start + length].decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"the {what} is not valid UTF-8") from None

    def skip_string(self, what: str) -> None:
        length = self.unpack("<Q", what)
        if length > MAX_STRING:
            raise self.fail(f"the {what} claims {length} bytes, more than llama.cpp allows")
        self.take(length, what)

    # -- structure ----------------------------------------------------------

    def parse(self) -> GGUFFile:
        if self.size < 4 or self.view[:4] != MAGIC:
            raise self.fail("it does not start with the GGUF magic bytes")
        self.pos = 4
        version = self.unpack("<I", "header")
        if version not in SUPPORTED_VERSIONS:
            raise self.fail(f"GGUF version {version} is not supported (only 2 and 3)")
        n_tensors = self.unpack("<Q", "header")
        n_kv = self.unpack("<Q", "header")
        # Each key-value pair needs at least 13 bytes, each tensor info 24:
        # counts that cannot fit in the file are rejected before any loop.
        if n_kv * 13 > self.size - self.pos:
            raise self.fail(f"the header claims {n_kv} metadata entries, more than the file holds")
        if n_tensors * 24 > self.size - self.pos:
            raise self.fail(f"the header claims {n_tensors} tensors, more than the file holds")

        metadata = self.read_metadata(n_kv)
        alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        if alignment <= 0 or alignment & (alignment - 1):
            raise self.fail(f"alignment {alignment} is not a power of two")
        tensor_info_offset = self.pos
        infos = [self.read_tensor_info(index) for index in range(n_tensors)]
        data_offset = _align(self.pos, alignment)
        tensors = self.check_tensor_data(infos, data_offset, alignment)
        return GGUFFile(
            path=self.path,
            version=version,
            file_size=self.size,
            alignment=alignment,
            tensor_info_offset=tensor_info_offset,
            data_offset=data_offset,
            metadata=metadata,
            tensors=tuple(tensors),
        )

    def read_metadata(self, count: int) -> dict[str, Any]:
        metadata: dict[str, Any] = {}
        for index in range(count):
            key = self.string(f"key of metadata entry {index}")
            if not key:
                raise self.fail(f"metadata entry {index} has an empty key")
            if key in metadata:
                raise self.fail(f"metadata key '{key}' appears twice")
            value_type = self.unpack("<I", f"type of '{key}'")
            item_type = None
            if value_type == _ARRAY:
                item_type = self.unpack("<I", f"array type of '{key}'")
                metadata[key] = self.read_array(key, item_type)
            else:
                metadata[key] = self.read_value(key, value_type)
            self.check_expected_type(key, value_type, item_type)
        return metadata

    def check_expected_type(self, key: str, value_type: int, item_type: int | None) -> None:
        expected = _EXPECTED_TYPES.get(key)
        if expected is None or expected == (value_type, item_type):
            return
        want_type, want_item = expected
        want = _TYPE_NAMES[want_type] + (f" of {_TYPE_NAMES[want_item]}" if want_item else "")
        raise self.fail(f"metadata key '{key}' must be {want}")

    def read_value(self, key: str, value_type: int) -> Any:
        if value_type == _STRING:
            return self.string(f"value of '{key}'")
        scalar = _SCALARS.get(value_type)
        if scalar is None:
            raise self.fail(f"metadata key '{key}' has unknown value type {value_type}")
        return self.unpack(scalar[1], f"value of '{key}'")

    def read_array(self, key: str, item_type: int) -> Any:
        length = self.unpack("<Q", f"array length of '{key}'")
        if length > MAX_ARRAY:
            raise self.fail(f"array '{key}' claims {length} elements, more than llama.cpp allows")
        if item_type == _STRING:
            if length > SMALL_ARRAY:
                for _ in range(length):
                    self.skip_string(f"array '{key}'")
                return ArraySummary("string", length)
            return [self.string(f"array '{key}'") for _ in range(length)]
        scalar = _SCALARS.get(item_type)
        if scalar is None:
            raise self.fail(f"array '{key}' has unsupported element type {item_type}")
        name, fmt = scalar
        width = struct.calcsize(fmt)
        if length * width > self.size - self.pos:
            raise self.fail(f"file ends inside array '{key}' (truncated at byte {self.size})")
        start = self.take(length * width, f"array '{key}'")
        if length > SMALL_ARRAY:
            return ArraySummary(name, length)
        return list(struct.unpack_from(f"<{length}{fmt[1]}", self.view, start))

    def read_tensor_info(self, index: int) -> tuple[str, tuple[int, ...], int, int]:
        name = self.string(f"name of tensor {index}")
        if len(name.encode()) > MAX_TENSOR_NAME:
            raise self.fail(f"tensor {index} has a name longer than {MAX_TENSOR_NAME} bytes")
        n_dims = self.unpack("<I", f"tensor '{name}'")
        if n_dims > MAX_DIMS:
            raise self.fail(f"tensor '{name}' has {n_dims} dimensions (at most {MAX_DIMS})")
        shape = tuple(self.unpack("<q", f"tensor '{name}'") for _ in range(n_dims))
        if any(dim < 0 for dim in shape):
            raise self.fail(f"tensor '{name}' has a negative dimension")
        type_id = self.unpack("<I", f"tensor '{name}'")
        offset = self.unpack("<Q", f"tensor '{name}'")
        return name, shape, type_id, offset

    def check_tensor_data(
        self, infos: list[tuple[str, tuple[int, ...], int, int]], data_offset: int, alignment: int
    ) -> list[TensorInfo]:
        """Every tensor must sit where llama.cpp expects it, inside the file."""
        tensors: list[TensorInfo] = []
        seen: set[str] = set()
        expected_offset = 0
        data_size = self.size - data_offset if self.size >= data_offset else -1
        for name, shape, type_id, offset in infos:
            if name in seen:
                raise self.fail(f"tensor name '{name}' appears twice")
            seen.add(name)
            type_name, nbytes = _tensor_size(name, shape, type_id, self.fail)
            if offset != expected_offset:
                raise self.fail(
                    f"tensor '{name}' is at offset {offset}, expected {expected_offset}"
                )
            if offset + nbytes > data_size:
                raise self.fail(
                    f"the data of tensor '{name}' runs past the end of the file "
                    f"(truncated at byte {self.size})"
                )
            tensors.append(TensorInfo(name, shape, type_name, offset, nbytes))
            expected_offset = _align(offset + nbytes, alignment)
        return tensors


def _tensor_size(name: str, shape: tuple[int, ...], type_id: int, fail: Any) -> tuple[str, int]:
    try:
        from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType  # 0.1 s: on use

        ggml_type = GGMLQuantizationType(type_id)
        block, type_size = GGML_QUANT_SIZES[ggml_type]
    except (ValueError, KeyError):
        raise fail(f"tensor '{name}' has unknown tensor type {type_id}") from None
    elements = 1
    for dim in shape:
        elements *= dim
    if elements >= 1 << 63:
        raise fail(f"tensor '{name}' has more elements than llama.cpp can address")
    row = shape[0] if shape else 1
    if block == 0 or row % block:
        raise fail(f"tensor '{name}' rows of {row} are not whole {ggml_type.name} blocks")
    return ggml_type.name, elements // block * type_size


def _align(offset: int, alignment: int) -> int:
    return offset + (-offset % alignment)
