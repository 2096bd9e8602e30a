"""Files that are valid GGUF but poison llama.cpp: refused, and the process lives.

llama.cpp aborts the process on some values it treats as programming errors.
The generic checks refuse the ones we know; the child-process probe catches
the rest. Every case runs in this test process too: if anything reached
llama.cpp in-process and aborted, the test run itself would die.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.engine import Engine, inspect_model
from appliance.errors import EngineError, ModelFormatError
from tests.conftest import TEST_SETTINGS, run_cli
from tests.ggufs import small_gguf, with_metadata, with_value

HYPERPARAMETERS = [
    ("gemma3.block_count", "<I", 0, "block_count must be a whole number"),
    ("gemma3.block_count", "<I", 1000, "block_count must be a whole number"),
    ("gemma3.block_count", "<I", 17, "tensors exist for layer 17"),
    ("gemma3.attention.head_count", "<I", 0, "head_count must be a positive"),
    ("gemma3.embedding_length", "<I", 0, "embedding_length must be a positive"),
    ("gemma3.rope.freq_base", "<f", float("nan"), "freq_base is not a finite number"),
    ("gemma3.attention.layer_norm_rms_epsilon", "<f", -1.0, "must be greater than zero"),
]


@pytest.mark.parametrize(("key", "fmt", "value", "fragment"), HYPERPARAMETERS)
def test_impossible_hyperparameters_are_refused(
    model_path: Path, tmp_path: Path, key: str, fmt: str, value: float, fragment: str
) -> None:
    bad = with_value(model_path, tmp_path / "bad.gguf", key, fmt, value)
    with pytest.raises(ModelFormatError, match=fragment):
        Engine(bad, TEST_SETTINGS)
    with pytest.raises(ModelFormatError, match=fragment):
        inspect_model(bad, with_sha256=False)
    result = run_cli("ask", "--model", str(bad), "Hi", home=tmp_path)
    assert result.returncode == ModelFormatError.exit_code
    assert result.stderr.count("\n") == 1
    assert fragment in result.stderr


def test_a_file_that_aborts_llama_cpp_is_caught_by_the_probe(
    model_path: Path, tmp_path: Path
) -> None:
    # An unknown rope scaling type passes every Python check; llama.cpp asserts on it.
    bad = with_metadata(model_path, tmp_path / "bad.gguf", {"gemma3.rope.scaling.type": "bogus"})
    with pytest.raises(ModelFormatError, match=r"crashed llama\.cpp's loader \(SIGABRT\)"):
        Engine(bad, TEST_SETTINGS)
    result = run_cli("ask", "--model", str(bad), "Hi", home=tmp_path)
    assert result.returncode == ModelFormatError.exit_code
    assert "SIGABRT" in result.stderr
    assert "Traceback" not in result.stderr


def test_added_metadata_alone_does_not_upset_the_engine(model_path: Path, tmp_path: Path) -> None:
    fine = with_metadata(model_path, tmp_path / "fine.gguf", {"general.description": "a note"})
    with Engine(fine, TEST_SETTINGS) as engine:
        assert engine.info.name == "Gemma 3 270m"


def test_a_loader_refusal_is_an_engine_error(tmp_path: Path) -> None:
    odd = small_gguf(tmp_path / "odd.gguf", arch="no-such-architecture")
    with pytest.raises(EngineError, match="unknown model architecture"):
        Engine(odd, TEST_SETTINGS)
