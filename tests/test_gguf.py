"""GGUF validation: every malformed file is refused before llama.cpp opens it."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.engine import read_gguf
from appliance.errors import InputError, ModelFormatError
from tests.ggufs import small_gguf


def prefix_copy(source: Path, target: Path, length: int) -> Path:
    with source.open("rb") as src, target.open("wb") as dst:
        remaining = length
        while remaining:
            block = src.read(min(remaining, 1 << 20))
            if not block:
                break
            dst.write(block)
            remaining -= len(block)
    return target


def patched(source: Path, target: Path, offset: int, data: bytes, keep: int = 1 << 22) -> Path:
    """A copy of the first `keep` bytes of `source` with `data` written at `offset`."""
    prefix_copy(source, target, keep)
    with target.open("r+b") as handle:
        handle.seek(offset)
        handle.write(data)
    return target


def test_the_default_model_is_described(model_path: Path) -> None:
    gguf = read_gguf(model_path)
    assert gguf.version == 3
    assert gguf.get("general.architecture") == "gemma3"
    assert gguf.get("tokenizer.ggml.tokens").length == 262_144
    assert len(gguf.tensors) > 100
    last = gguf.tensors[-1]
    assert gguf.data_offset + last.offset + last.nbytes <= gguf.file_size


def test_a_synthetic_file_round_trips(tmp_path: Path) -> None:
    gguf = read_gguf(small_gguf(tmp_path / "tiny.gguf"))
    assert gguf.get("general.name") == "tiny"
    assert gguf.get("tokenizer.ggml.tokens") == ["<s>", "</s>", "a", "b"]
    summary = gguf.get("tiny.scores")
    assert (summary.item_type, summary.length) == ("float32", 80)
    assert [t.name for t in gguf.tensors] == ["token_embd.weight", "output.weight"]
    assert gguf.tensors[0].shape == (8, 4)
    assert gguf.tensors[0].nbytes == 4 * 8 * 4


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("missing.gguf", "does not exist"),
        (".", "is a directory"),
    ],
)
def test_paths_that_are_not_files(tmp_path: Path, name: str, expected: str) -> None:
    with pytest.raises(InputError, match=expected):
        read_gguf(tmp_path / name)


def test_a_device_is_not_a_model() -> None:
    with pytest.raises(InputError, match="not a regular file"):
        read_gguf("/dev/null")


def test_a_text_file_is_not_a_model() -> None:
    with pytest.raises(ModelFormatError, match="GGUF magic"):
        read_gguf("/etc/hostname")


def test_an_empty_file_is_not_a_model(tmp_path: Path) -> None:
    empty = tmp_path / "empty.gguf"
    empty.touch()
    with pytest.raises(ModelFormatError, match="is empty"):
        read_gguf(empty)


def truncation_points(model_path: Path) -> dict[str, int]:
    gguf = read_gguf(model_path)
    middle_tensor = gguf.tensors[len(gguf.tensors) // 2]
    return {
        "magic": 3,
        "version": 6,
        "counts": 20,
        "first key": 30,
        "metadata": 100_000,
        "vocabulary": 2_000_000,
        "tensor infos": gguf.data_offset - 200,
        "data start": gguf.data_offset + 10,
        "middle tensor": gguf.data_offset + middle_tensor.offset + middle_tensor.nbytes // 2,
        "last byte": gguf.file_size - 1,
    }


@pytest.mark.parametrize(
    "where",
    [
        "magic",
        "version",
        "counts",
        "first key",
        "metadata",
        "vocabulary",
        "tensor infos",
        "data start",
        "middle tensor",
        "last byte",
    ],
)
def test_truncated_models_are_refused(model_path: Path, tmp_path: Path, where: str) -> None:
    length = truncation_points(model_path)[where]
    truncated = prefix_copy(model_path, tmp_path / "cut.gguf", length)
    with pytest.raises(ModelFormatError, match="not a valid GGUF"):
        read_gguf(truncated)


@pytest.mark.parametrize(
    ("offset", "data", "expected"),
    [
        (0, b"GGML", "magic"),
        (4, struct.pack("<I", 1), "version 1"),
        (4, struct.pack("<I", 0xFFFF), "version 65535"),
        (8, struct.pack("<Q", 2**62), "tensors"),
        (8, struct.pack("<Q", 2**64 - 1), "tensors"),
        (16, struct.pack("<Q", 2**62), "metadata entries"),
        (24, struct.pack("<Q", 2**40), "bytes"),  # the first key's length
    ],
)
def test_absurd_headers_are_refused(
    model_path: Path, tmp_path: Path, offset: int, data: bytes, expected: str
) -> None:
    bad = patched(model_path, tmp_path / "bad.gguf", offset, data)
    with pytest.raises(ModelFormatError, match=expected):
        read_gguf(bad)


def test_counts_larger_than_the_file_holds_are_refused(tmp_path: Path) -> None:
    source = small_gguf(tmp_path / "tiny.gguf")
    bad = patched(source, tmp_path / "bad.gguf", 16, struct.pack("<Q", 10_000))
    with pytest.raises(ModelFormatError, match="10000 metadata entries"):
        read_gguf(bad)


def test_a_wrongly_typed_vocabulary_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ints.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_array("tokenizer.ggml.tokens", [1, 2, 3])
    writer.add_tensor("w", np.ones((4,), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ModelFormatError, match=r"tokenizer\.ggml\.tokens"):
        read_gguf(path)


def test_tensor_data_past_the_end_is_refused(tmp_path: Path) -> None:
    source = small_gguf(tmp_path / "tiny.gguf")
    size = source.stat().st_size
    cut = prefix_copy(source, tmp_path / "cut.gguf", size - 4)
    with pytest.raises(ModelFormatError, match="runs past the end"):
        read_gguf(cut)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mutated_files_fail_only_with_a_clear_error(tmp_path: Path, data: st.DataObject) -> None:
    """Random truncation and byte damage: a clean refusal or a valid parse, nothing else."""
    pristine = tmp_path / "pristine.gguf"
    if not pristine.exists():
        small_gguf(pristine)
    raw = bytearray(pristine.read_bytes())
    length = data.draw(st.integers(min_value=0, max_value=len(raw)), label="length")
    del raw[length:]
    for _ in range(data.draw(st.integers(min_value=0, max_value=4), label="flips")):
        if raw:
            index = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
            raw[index] = data.draw(st.integers(min_value=0, max_value=255))
    mutated = tmp_path / "mutated.gguf"
    mutated.write_bytes(bytes(raw))
    try:
        gguf = read_gguf(mutated)
    except ModelFormatError as exc:
        message = str(exc)
    else:
        message = ""
        assert gguf.data_offset <= gguf.file_size
    assert message == "" or message.startswith(f"{mutated} is ")
