"""What an operator needs to know about a model file, read from its GGUF."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from appliance.engine.gguf import GGUFFile, open_regular_file
from appliance.engine.hparams import read_loadable_gguf


@dataclass(frozen=True)
class ModelInfo:
    path: str
    name: str
    architecture: str
    parameters: int
    quantization: str
    context_length: int | None
    file_size: int
    gguf_version: int
    tensor_count: int
    has_chat_template: bool
    sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe(gguf: GGUFFile, *, sha256: str | None = None) -> ModelInfo:
    """Summarise a validated GGUF. The digest is passed in: hashing is the
    caller's choice, since it reads the whole file."""
    arch = str(gguf.get("general.architecture", "unknown"))
    context = gguf.get(f"{arch}.context_length")
    return ModelInfo(
        path=str(gguf.path),
        name=str(gguf.get("general.name") or gguf.path.stem),
        architecture=arch,
        parameters=sum(t.elements for t in gguf.tensors),
        quantization=quantization_of(gguf),
        context_length=int(context) if isinstance(context, int) else None,
        file_size=gguf.file_size,
        gguf_version=gguf.version,
        tensor_count=len(gguf.tensors),
        has_chat_template=isinstance(gguf.get("tokenizer.chat_template"), str),
        sha256=sha256,
    )


def inspect_model(path: str | Path, *, with_sha256: bool = True) -> ModelInfo:
    """Validate a model file and describe it."""
    gguf = read_loadable_gguf(path)
    return describe(gguf, sha256=sha256_file(gguf.path) if with_sha256 else None)


def quantization_of(gguf: GGUFFile) -> str:
    """The file type llama.cpp recorded, else the tensor type holding most bytes."""
    file_type = gguf.get("general.file_type")
    if isinstance(file_type, int):
        try:
            from gguf.constants import LlamaFileType  # 0.1 s to import: only on use

            return LlamaFileType(file_type).name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            pass
    weight: Counter[str] = Counter()
    for tensor in gguf.tensors:
        weight[tensor.ggml_type] += tensor.nbytes
    return weight.most_common(1)[0][0] if weight else "unknown"


def sha256_file(path: str | Path) -> str:
    with open_regular_file(Path(path)) as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
