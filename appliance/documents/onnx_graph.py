"""A small ONNX graph written as protobuf bytes, for onnxruntime to load from memory.

The `onnx` package would do this but takes over a second to import; the few
messages a graph of operators and constant tensors needs are written here,
field by field from onnx.proto (tests/test_e5_onnx.py reads the result back
with `onnx` and runs its checker).
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
from numpy.typing import NDArray

IR_VERSION = 8
_ELEMENT = {np.dtype(np.float32): 1, np.dtype(np.int8): 3, np.dtype(np.int64): 7}
_FLOAT, _INT, _INTS = 1, 2, 7  # AttributeProto.AttributeType


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64s as their two's complement
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _number(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _bytes(field: int, value: bytes | str) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _attribute(name: str, value: Any) -> bytes:
    if isinstance(value, float):
        return (
            _bytes(1, name) + _varint(2 << 3 | 5) + struct.pack("<f", value) + _number(20, _FLOAT)
        )
    if isinstance(value, int):
        return _bytes(1, name) + _number(3, value) + _number(20, _INT)
    return _bytes(1, name) + b"".join(_number(8, v) for v in value) + _number(20, _INTS)


def _value(name: str, element: type, shape: list[int | None]) -> bytes:
    dims = b"".join(
        _bytes(1, _number(1, d) if d is not None else _bytes(2, f"{name}_{i}"))
        for i, d in enumerate(shape)
    )
    tensor = _number(1, _ELEMENT[np.dtype(element)]) + _bytes(2, dims)
    return _bytes(1, name) + _bytes(2, _bytes(1, tensor))


class Graph:
    """Operators and constant tensors, named as they are added."""

    def __init__(self) -> None:
        self._nodes: list[bytes] = []
        self._constants: list[bytes] = []

    def constant(self, name: str, value: NDArray[Any]) -> str:
        array = np.ascontiguousarray(value)
        fields = b"".join(_number(1, d) for d in array.shape)
        fields += _number(2, _ELEMENT[array.dtype]) + _bytes(8, name)
        self._constants.append(
            fields + _bytes(9, array.astype(array.dtype.newbyteorder("<")).tobytes())
        )
        return name

    def op(self, kind: str, inputs: list[str], domain: str = "", **attributes: Any) -> str:
        """Adds an operator; its output's name."""
        output = f"t{len(self._nodes)}"
        self.node(kind, inputs, output, domain, **attributes)
        return output

    def node(
        self, kind: str, inputs: list[str], output: str, domain: str = "", **attributes: Any
    ) -> None:
        fields = b"".join(_bytes(1, name) for name in inputs) + _bytes(2, output)
        fields += _bytes(3, output) + _bytes(4, kind) + _bytes(7, domain)
        fields += b"".join(_bytes(5, _attribute(k, v)) for k, v in attributes.items())
        self._nodes.append(fields)

    def model(
        self,
        name: str,
        inputs: list[tuple[str, type, list[int | None]]],
        outputs: list[tuple[str, type, list[int | None]]],
        opsets: dict[str, int],
    ) -> bytes:
        graph = b"".join(_bytes(1, node) for node in self._nodes) + _bytes(2, name)
        graph += b"".join(_bytes(5, tensor) for tensor in self._constants)
        graph += b"".join(_bytes(11, _value(*spec)) for spec in inputs)
        graph += b"".join(_bytes(12, _value(*spec)) for spec in outputs)
        imports = b"".join(
            _bytes(8, _bytes(1, domain) + _number(2, version)) for domain, version in opsets.items()
        )
        return _number(1, IR_VERSION) + imports + _bytes(7, graph)
