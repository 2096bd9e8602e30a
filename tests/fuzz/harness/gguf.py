"""Engine: GGUF structure and hyperparameters."""

from __future__ import annotations

from appliance.engine.gguf import GGUFFile, read_gguf
from appliance.engine.hparams import check_hyperparameters
from appliance.engine.info import describe
from appliance.errors import ModelFormatError
from tests.fuzz.harness.common import as_file, refusals


def fuzz_gguf(data: bytes) -> None:
    path = as_file("model.gguf", data)
    with refusals(ModelFormatError):
        gguf = read_gguf(path)
        _check_gguf(gguf, len(data))
        check_hyperparameters(gguf)
        describe(gguf)


def _check_gguf(gguf: GGUFFile, size: int) -> None:
    """What llama.cpp relies on once validation has passed."""
    assert gguf.file_size == size
    assert gguf.alignment > 0
    assert gguf.alignment & (gguf.alignment - 1) == 0
    assert gguf.data_offset % gguf.alignment == 0
    assert all(key for key in gguf.metadata)
    names = [tensor.name for tensor in gguf.tensors]
    assert len(set(names)) == len(names)
    for tensor in gguf.tensors:
        assert len(tensor.shape) <= 4
        assert all(dim >= 0 for dim in tensor.shape)
        assert tensor.offset % gguf.alignment == 0
        assert gguf.data_offset + tensor.offset + tensor.nbytes <= size
