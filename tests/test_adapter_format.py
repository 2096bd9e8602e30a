"""LoRA adapter validation: what llama.cpp would refuse or abort on is refused first."""

from __future__ import annotations

import ctypes
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gguf import GGUFValueType, GGUFWriter

from appliance.engine import GGUFFile, read_adapter, read_gguf
from appliance.errors import InputError, ModelFormatError
from tests.ggufs import lora_adapter, lora_pairs, small_gguf, write_adapter

Pairs = dict[str, np.ndarray]
ARCH = "gemma3"
Q, V = "blk.0.attn_q.weight", "blk.0.attn_v.weight"  # GGUF shapes (640, 1024), (640, 256)


@pytest.fixture(scope="module")
def base(model_path: Path) -> GGUFFile:
    return read_gguf(model_path)


@pytest.fixture
def pairs(model_path: Path) -> Pairs:
    return lora_pairs(model_path, layers=[0])


def test_a_good_adapter_is_described(model_path: Path, base: GGUFFile, tmp_path: Path) -> None:
    info = read_adapter(lora_adapter(model_path, tmp_path / "a.gguf", rank=8, alpha=16), base)
    assert (info.architecture, info.rank, info.alpha, info.name) == (ARCH, 8, 16.0, "test adapter")
    assert len(info.targets) == 36
    assert list(info.targets) == sorted(info.targets)
    assert {t.split(".")[2] for t in info.targets} == {"attn_q", "attn_v"}
    assert info.file_size == (tmp_path / "a.gguf").stat().st_size
    assert info.to_dict()["path"] == str(tmp_path / "a.gguf")
    assert info.to_dict()["targets"][0] == "blk.0.attn_q.weight"


def test_f16_mixed_ranks_and_no_alpha_are_accepted(
    base: GGUFFile, pairs: Pairs, model_path: Path, tmp_path: Path
) -> None:
    tensors = {name: data.astype(np.float16) for name, data in pairs.items()}
    tensors |= lora_pairs(model_path, rank=16, layers=[1])
    path = write_adapter(tmp_path / "a.gguf", ARCH, tensors, kv={"adapter.lora.alpha": None})
    info = read_adapter(path, base)
    # Without alpha llama.cpp applies B·A unscaled; the largest rank is reported.
    assert (info.alpha, info.rank, len(info.targets)) == (0.0, 16, 4)


def _untied(tmp_path: Path) -> GGUFFile:
    """small_gguf: token_embd (n_embd 8, n_vocab 4) and a separate output.weight."""
    return read_gguf(small_gguf(tmp_path / "tiny.gguf"))


def test_a_token_embd_pair_is_flipped(tmp_path: Path) -> None:
    tensors = {  # numpy order: A is (r, n_vocab), B (r, n_embd) in GGUF dims
        "token_embd.weight.lora_a": np.zeros((4, 2), dtype=np.float32),
        "token_embd.weight.lora_b": np.zeros((8, 2), dtype=np.float32),
    }
    info = read_adapter(write_adapter(tmp_path / "e.gguf", "llama", tensors), _untied(tmp_path))
    assert (info.rank, info.targets) == (2, ("token_embd.weight",))
    # llama-adapter.cpp checks only ne[1] of each; B · get_rows(A) aborts on this.
    tensors["token_embd.weight.lora_b"] = np.zeros((8, 3), dtype=np.float32)
    with pytest.raises(ModelFormatError, match="do not fit its shape"):
        read_adapter(write_adapter(tmp_path / "f.gguf", "llama", tensors), _untied(tmp_path))


def _experts(tmp_path: Path) -> GGUFFile:
    writer = GGUFWriter(str(tmp_path / "moe.gguf"), "llama")
    writer.add_tensor("blk.0.ffn_up_exps.weight", np.zeros((4, 16, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return read_gguf(tmp_path / "moe.gguf")


@pytest.mark.parametrize("experts", [4, 1])
def test_expert_stacks_match_in_every_dimension(tmp_path: Path, experts: int) -> None:
    tensors = {  # base (n_in 8, n_out 16, 4 experts): A (8, r, 4), B (r, 16, 4)
        "blk.0.ffn_up_exps.weight.lora_a": np.zeros((experts, 2, 8), dtype=np.float32),
        "blk.0.ffn_up_exps.weight.lora_b": np.zeros((experts, 16, 2), dtype=np.float32),
    }
    path = write_adapter(tmp_path / "x.gguf", "llama", tensors)
    if experts == 4:
        assert read_adapter(path, _experts(tmp_path)).rank == 2
    else:  # ggml_mul_mat_id would index experts past a stack of one
        with pytest.raises(ModelFormatError, match="do not fit its shape"):
            read_adapter(path, _experts(tmp_path))


# Each bad case: (what it changes, expected fragment of the one-line error).
def _kv(**kv: tuple[Any, ...] | None) -> Callable[[Pairs], dict[str, Any]]:
    return lambda pairs: {"kv": {k.replace("__", "."): v for k, v in kv.items()}}


def _alpha(value: float) -> Callable[[Pairs], dict[str, Any]]:
    return lambda pairs: {"alpha": value}


def _tensors(change: Callable[[Pairs], object]) -> Callable[[Pairs], dict[str, Any]]:
    def build(pairs: Pairs) -> dict[str, Any]:
        change(pairs)
        return {}

    return build


def _rank(rank_a: int, rank_b: int, target: str = V) -> Callable[[Pairs], None]:
    def change(pairs: Pairs) -> None:
        n_in, n_out = pairs[f"{target}.lora_a"].shape[1], pairs[f"{target}.lora_b"].shape[0]
        pairs[f"{target}.lora_a"] = np.zeros((rank_a, n_in), dtype=np.float32)
        pairs[f"{target}.lora_b"] = np.zeros((n_out, rank_b), dtype=np.float32)

    return change


def _add(name: str, shape: tuple[int, ...], dtype: type = np.float32) -> Callable[[Pairs], None]:
    return lambda pairs: pairs.__setitem__(name, np.zeros(shape, dtype=dtype))


def _rename(old: str, new: str) -> Callable[[Pairs], None]:
    return lambda pairs: pairs.__setitem__(new, pairs.pop(old))


def _pair(target: str, shape: tuple[int, ...]) -> Callable[[Pairs], None]:
    def change(pairs: Pairs) -> None:
        for side in ("lora_a", "lora_b"):
            pairs[f"{target}.{side}"] = np.zeros(shape, dtype=np.float32)

    return change


def _move(old: str, new: str) -> Callable[[Pairs], None]:
    def change(pairs: Pairs) -> None:
        for side in ("lora_a", "lora_b"):
            pairs[f"{new}.{side}"] = pairs.pop(f"{old}.{side}")

    return change


S, U32, F64 = GGUFValueType.STRING, GGUFValueType.UINT32, GGUFValueType.FLOAT64
BAD = {
    "a model": (_kv(general__type=("model", S)), "general.type is 'model', not 'adapter'"),
    "no type": (_kv(general__type=None), "general.type is missing"),
    "long odd type": (_kv(general__type=("x\n" * 1000, S)), "general.type is 'x\\nx\\n"),
    "numeric type": (_kv(general__type=(1, U32)), "'general.type' must be string"),
    "other arch": (_kv(general__architecture=("llama", S)), "architecture 'llama', the model"),
    "control vector": (_kv(adapter__type=("control_vector", S)), "only 'lora' adapters"),
    "no adapter type": (_kv(adapter__type=None), "adapter.type is missing"),
    "alora": (
        _kv(adapter__alora__invocation_tokens=([1, 2], GGUFValueType.ARRAY, U32)),
        "activated LoRA (aLoRA) adapters are not supported",
    ),
    "alpha float64": (_kv(adapter__lora__alpha=(8.0, F64)), "alpha' must be float32"),
    "alpha nan": (_alpha(math.nan), "alpha is nan, not a positive number"),
    "alpha inf": (_alpha(math.inf), "alpha is inf, not a positive number"),
    "alpha zero": (_alpha(0.0), "alpha is 0.0, not a positive number"),
    "alpha negative": (_alpha(-8.0), "alpha is -8.0, not a positive number"),
    "no tensors": (_tensors(lambda pairs: pairs.clear()), "it has no tensors"),
    "odd suffix": (_tensors(_rename(f"{Q}.lora_a", f"{Q}.lora_c")), "neither a .lora_a nor"),
    "norm": (
        _tensors(_add("blk.0.attn_norm.weight", (640,))),
        "'blk.0.attn_norm.weight' is neither",
    ),
    "no lora_b": (_tensors(lambda pairs: pairs.pop(f"{Q}.lora_b")), f"'{Q}' has no .lora_b"),
    "no lora_a": (_tensors(lambda pairs: pairs.pop(f"{V}.lora_a")), f"'{V}' has no .lora_a"),
    "two lora_a": (_tensors(_add(f"{Q}.lora_a.lora_a", (4, 640))), f"'{Q}' has two .lora_a"),
    "int tensor": (_tensors(_add(f"{Q}.lora_a", (4, 640), np.int32)), "is I32, not one of"),
    "absent target": (
        _tensors(_move(Q, "blk.99.attn_q.weight")),
        "adapts 'blk.99.attn_q.weight', which the model does not have",
    ),
    "vector target": (
        _tensors(_pair("blk.0.attn_norm.weight", (4, 640))),
        "adapts 'blk.0.attn_norm.weight', which is not a matrix",
    ),
    "tied embedding": (
        _tensors(_pair("token_embd.weight", (640, 4))),
        "adapts 'token_embd.weight', which this model also uses as its output",
    ),
    "ranks differ": (_tensors(_rank(4, 5)), "(640, 4) and (5, 256), which do not fit"),
    "rank zero": (_tensors(_rank(0, 0)), "rank 0 of 'blk.0.attn_v.weight' is not from 1 to 256"),
    "rank too big": (_tensors(_rank(257, 257)), "rank 257 of 'blk.0.attn_v.weight' is not"),
    "transposed": (
        _tensors(lambda pairs: pairs.__setitem__(f"{Q}.lora_a", pairs[f"{Q}.lora_a"].T.copy())),
        "(4, 640) and (4, 1024), which do not fit its shape (640, 1024)",
    ),
    "3-d on a matrix": (_tensors(_add(f"{Q}.lora_a", (2, 4, 640))), "which do not fit"),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_adapter_is_refused_in_one_line(
    case: str, base: GGUFFile, pairs: Pairs, tmp_path: Path
) -> None:
    build, fragment = BAD[case]
    path = write_adapter(tmp_path / "bad.gguf", ARCH, pairs, **build(pairs))
    with pytest.raises(ModelFormatError) as refused:
        read_adapter(path, base)
    message = str(refused.value)
    assert message.startswith(f"{path} is not a valid LoRA adapter for Gemma 3 270m: ")
    assert fragment in message
    assert "\n" not in message
    assert len(message) < len(str(path)) + 200


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "it is empty"),
        (random.Random(0).randbytes(4096), "does not start with the GGUF magic bytes"),
        (b"GGUF\x03\x00\x00\x00" + b"\xff" * 16, "more than the file holds"),
    ],
    ids=["empty", "noise", "huge counts"],
)
def test_junk_is_refused(base: GGUFFile, tmp_path: Path, content: bytes, fragment: str) -> None:
    path = tmp_path / "junk.gguf"
    path.write_bytes(content)
    with pytest.raises(ModelFormatError, match=fragment):
        read_adapter(path, base)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"truncate": True}, "runs past the end of the file"),
        ({"break_shape": True}, "(640, 4) and (4, 1025), which do not fit its shape (640, 1024)"),
        ({"arch": "llama"}, "it is for architecture 'llama', the model is 'gemma3'"),
    ],
)
def test_broken_helper_adapters_are_refused(
    model_path: Path, base: GGUFFile, tmp_path: Path, options: dict[str, Any], fragment: str
) -> None:
    path = lora_adapter(model_path, tmp_path / "bad.gguf", **options)
    with pytest.raises(ModelFormatError, match="not a valid LoRA adapter") as refused:
        read_adapter(path, base)
    assert fragment in str(refused.value)


def test_the_base_model_is_not_an_adapter(model_path: Path, base: GGUFFile) -> None:
    with pytest.raises(ModelFormatError, match=r"general\.type is 'model', not 'adapter'"):
        read_adapter(model_path, base)
    with pytest.raises(InputError, match="does not exist"):
        read_adapter(model_path.with_name("none.gguf"), base)


@pytest.mark.model
def test_llama_cpp_loads_what_the_validator_accepts(
    model_path: Path, base: GGUFFile, tmp_path: Path
) -> None:
    from appliance.engine.native import _llama_cpp

    llama_cpp = _llama_cpp()  # its log capture on
    adapters = [
        lora_adapter(model_path, tmp_path / "zero.gguf"),
        lora_adapter(model_path, tmp_path / "random.gguf", rank=8, alpha=16, scale_b=0.5),
    ]
    infos = [read_adapter(path, base) for path in adapters]
    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = 0
    model = llama_cpp.llama_model_load_from_file(str(model_path).encode(), params)
    assert model
    try:
        for path, info in zip(adapters, infos, strict=True):
            handle = llama_cpp.llama_adapter_lora_init(model, str(path).encode())
            assert handle, f"llama.cpp refused {path}"
            buf = ctypes.create_string_buffer(64)
            size = llama_cpp.llama_adapter_meta_val_str(handle, b"adapter.lora.alpha", buf, 64)
            assert size > 0
            assert float(buf.value) == info.alpha
            llama_cpp.llama_adapter_lora_free(handle)
    finally:
        llama_cpp.llama_model_free(model)
