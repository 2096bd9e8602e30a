"""Small GGUF files written with the `gguf` package, for tests that need odd models."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

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
