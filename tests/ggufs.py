"""Small GGUF files written with the `gguf` package, for tests that need odd models."""

from __future__ import annotations

import shutil
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGUFWriter

from appliance.engine import read_gguf


def small_gguf(path: Path, *, arch: str = "llama") -> Path:
    """A tiny, structurally valid GGUF: metadata of every kind and two tensors."""
    writer = GGUFWriter(str(path), arch)
    writer.add_name("tiny")
    writer.add_context_length(128)
    writer.add_block_count(1)
    writer.add_uint32("general.file_type", 0)
    writer.add_array("tokenizer.ggml.tokens", ["<s>", "</s>", "a", "b"])
    writer.add_array("tiny.scores", [0.5] * 80)
    writer.add_tensor("token_embd.weight", np.ones((4, 8), dtype=np.float32))
    writer.add_tensor("output.weight", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# Gemma's published chat template (string content only). The embedded model is
# the pretrained base and ships without one; tests add it to a copy to drive
# the template path with the real engine and real special tokens.
GEMMA_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
{%- set loop_messages = messages[1:] -%}
{%- else -%}
{%- set first_user_prefix = "" -%}
{%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
{{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
{%- endif -%}
{%- set role = "model" if message['role'] == 'assistant' else message['role'] -%}
{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
{{- message['content'] | trim }}{{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{ '<start_of_turn>model\n' }}
{%- endif -%}"""


def with_metadata(source: Path, target: Path, entries: dict[str, str]) -> Path:
    """Copy a GGUF, adding string entries to its metadata.

    Byte surgery rather than a rewrite: the new entries go after the existing
    metadata, followed by a padding entry that makes the insertion a whole
    number of alignment units, so everything after it keeps its alignment.
    """
    layout = read_gguf(source)

    def entry(key: str, value: str) -> bytes:
        k, v = key.encode(), value.encode()
        return struct.pack("<Q", len(k)) + k + struct.pack("<IQ", 8, len(v)) + v

    added = b"".join(entry(key, value) for key, value in entries.items())
    fill = -len(added + entry("test.padding", "")) % layout.alignment
    added += entry("test.padding", " " * fill)
    with source.open("rb") as src, target.open("wb") as dst:
        header = bytearray(src.read(layout.tensor_info_offset))
        struct.pack_into("<Q", header, 16, len(layout.metadata) + len(entries) + 1)
        dst.write(header + added)
        shutil.copyfileobj(src, dst, 1 << 20)
    return target


def with_value(source: Path, target: Path, key: str, fmt: str, value: float) -> Path:
    """Copy a GGUF, overwriting the fixed-size value of an existing metadata key."""
    name = key.encode()
    with source.open("rb") as src:
        head = src.read(read_gguf(source).tensor_info_offset)
    start = head.find(struct.pack("<Q", len(name)) + name)
    if start < 0:
        raise KeyError(key)
    shutil.copyfile(source, target)
    with target.open("r+b") as handle:
        handle.seek(start + 8 + len(name) + 4)  # past the key and its type
        handle.write(struct.pack(fmt, value))
    return target


def with_chat_template(source: Path, target: Path, template: str = GEMMA_TEMPLATE) -> Path:
    return with_metadata(source, target, {"tokenizer.chat_template": template})


# PEFT's default LoRA targets for Gemma (q_proj, v_proj), as llama.cpp names them.
LORA_TARGETS = ("attn_q", "attn_v")


def lora_pairs(
    base: Path,
    *,
    rank: int = 4,
    scale_b: float = 0.0,
    seed: int = 0,
    layers: Iterable[int] | None = None,
    targets: Iterable[str] = LORA_TARGETS,
) -> dict[str, np.ndarray]:
    """F32 lora_a/lora_b arrays for the base's real blk.N.T.weight matrices.

    Arrays are in numpy order (GGUF dims reversed): a weight of GGUF shape
    (n_in, n_out) gets lora_a (n_in, r) and lora_b (r, n_out). A is random,
    scaled by 1/sqrt(n_in); B is zero when `scale_b` is 0 (PEFT's initial state:
    the output is the base's), else random with that standard deviation. On the
    default model (alpha 8, rank 4) 0.05 changes greedy text visibly yet fluently;
    0.5 and above turn it to noise.
    """
    rng = np.random.default_rng(seed)
    wanted = set(layers) if layers is not None else None
    pairs: dict[str, np.ndarray] = {}
    for tensor in read_gguf(base).tensors:
        parts = tensor.name.split(".")  # blk, N, T, weight
        if len(parts) != 4 or parts[0] != "blk" or parts[2] not in targets:
            continue
        if wanted is not None and int(parts[1]) not in wanted:
            continue
        n_in, n_out = tensor.shape
        lora_a = rng.standard_normal((rank, n_in)) / np.sqrt(n_in)
        lora_b = rng.standard_normal((n_out, rank)) * scale_b
        pairs[f"{tensor.name}.lora_a"] = lora_a.astype(np.float32)
        pairs[f"{tensor.name}.lora_b"] = lora_b.astype(np.float32)
    return pairs


def write_adapter(
    target: Path,
    arch: str,
    tensors: dict[str, np.ndarray],
    *,
    alpha: float = 8.0,
    kv: dict[str, tuple[Any, ...] | None] | None = None,
) -> Path:
    """An adapter GGUF with the metadata convert_lora_to_gguf.py writes.

    `kv` overrides or (with None) removes metadata: {key: (value, GGUFValueType[, sub_type])}.
    """
    writer = GGUFWriter(str(target), arch)
    writer.add_name("test adapter")
    writer.add_type("adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", alpha)
    for key, value in (kv or {}).items():
        writer.kv_data[0].pop(key, None)
        if value is not None:
            writer.add_key_value(key, *value)
    for name, data in tensors.items():
        writer.add_tensor(name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return target


def lora_adapter(
    base: Path,
    target: Path,
    *,
    rank: int = 4,
    scale_b: float = 0.0,
    seed: int = 0,
    alpha: float = 8.0,
    arch: str | None = None,
    layers: Iterable[int] | None = None,
    break_shape: bool = False,
    truncate: bool = False,
) -> Path:
    """A real LoRA adapter for `base` (see lora_pairs); `scale_b=0` changes nothing.

    `arch` claims another architecture, `break_shape` makes the first lora_b one
    output too wide, `truncate` cuts the file's last tensor short.
    """
    tensors = lora_pairs(base, rank=rank, scale_b=scale_b, seed=seed, layers=layers)
    if break_shape:
        name = next(name for name in tensors if name.endswith(".lora_b"))
        tensors[name] = np.zeros((tensors[name].shape[0] + 1, rank), dtype=np.float32)
    write_adapter(target, arch or read_gguf(base).get("general.architecture"), tensors, alpha=alpha)
    if truncate:
        with target.open("r+b") as handle:
            handle.truncate(target.stat().st_size - 64)
    return target
