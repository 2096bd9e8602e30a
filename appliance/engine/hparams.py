"""Check the hyperparameters llama.cpp asserts on, before it can abort on them.

llama.cpp treats some impossible values (no layers, more experts than it
supports) as programming errors and aborts the process. A file from outside is
data, not a program: these checks turn such values into one clear error. They
are deliberately generic (any architecture); `probe.py` isolates whatever a
hostile file could still do to the native loader.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from typing import Any

from appliance.engine.gguf import ArraySummary, GGUFFile, read_gguf
from appliance.errors import ModelFormatError

MAX_LAYERS = 512  # LLAMA_MAX_LAYERS
MAX_EXPERTS = 1024  # LLAMA_MAX_EXPERTS
_BLOCK_TENSOR = re.compile(r"blk\.(\d+)\.")
_POSITIVE = ("embedding_length", "attention.head_count", "attention.head_count_kv")


def read_loadable_gguf(path: str | os.PathLike[str]) -> GGUFFile:
    """Parse `path` and check both its structure and its hyperparameters."""
    gguf = read_gguf(path)
    check_hyperparameters(gguf)
    return gguf


def check_hyperparameters(gguf: GGUFFile) -> None:
    arch = gguf.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise _fail(gguf, "general.architecture is missing")

    def value(key: str) -> Any:
        return gguf.get(f"{arch}.{key}")

    _check_layers(gguf, arch, value("block_count"))
    for key in _POSITIVE:
        _check_positive(gguf, f"{arch}.{key}", value(key))
    _check_experts(gguf, arch, value)
    _check_floats(gguf, arch)


def _check_layers(gguf: GGUFFile, arch: str, blocks: Any) -> None:
    key = f"{arch}.block_count"
    if not isinstance(blocks, int) or not 0 < blocks <= MAX_LAYERS:
        raise _fail(gguf, f"{key} must be a whole number from 1 to {MAX_LAYERS}")
    indices = {int(m.group(1)) for t in gguf.tensors if (m := _BLOCK_TENSOR.match(t.name))}
    if indices and max(indices) >= blocks:
        raise _fail(gguf, f"{key} is {blocks} but tensors exist for layer {max(indices)}")
    nextn = gguf.get(f"{arch}.nextn_predict_layers", 0)
    if not isinstance(nextn, int) or not 0 <= nextn <= blocks:
        raise _fail(gguf, f"{arch}.nextn_predict_layers must not exceed {key}")


def _check_positive(gguf: GGUFFile, key: str, value: Any) -> None:
    if value is None or isinstance(value, ArraySummary):
        return
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, int) and v >= 0 for v in values) or not any(values):
        raise _fail(gguf, f"{key} must be a positive whole number")


def _check_experts(gguf: GGUFFile, arch: str, value: Callable[[str], Any]) -> None:
    experts = value("expert_count") or 0
    used = value("expert_used_count") or 0
    if not isinstance(experts, int) or not 0 <= experts <= MAX_EXPERTS:
        raise _fail(gguf, f"{arch}.expert_count must be from 0 to {MAX_EXPERTS}")
    if isinstance(used, int) and not (0 < used <= experts if experts else used == 0):
        raise _fail(gguf, f"{arch}.expert_used_count does not fit {arch}.expert_count")


def _check_floats(gguf: GGUFFile, arch: str) -> None:
    for key, value in gguf.metadata.items():
        if not key.startswith(f"{arch}.") or not isinstance(value, float):
            continue
        if not math.isfinite(value):
            raise _fail(gguf, f"{key} is not a finite number")
        if key.endswith("epsilon") and value <= 0:
            raise _fail(gguf, f"{key} must be greater than zero")


def _fail(gguf: GGUFFile, what: str) -> ModelFormatError:
    return ModelFormatError(f"{gguf.path} is not a valid GGUF model: {what}")
