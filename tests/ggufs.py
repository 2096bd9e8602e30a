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


def with_chat_template(source: Path, target: Path, template: str = GEMMA_TEMPLATE) -> Path:
    """Copy a GGUF, adding `tokenizer.chat_template` to its metadata.

    Byte surgery rather than a rewrite: the new entry goes after the existing
    metadata and is padded (with a Jinja comment) to a whole number of
    alignment units, so everything after it keeps its alignment.
    """
    layout = read_gguf(source)
    key = b"tokenizer.chat_template"

    def entry(value: bytes) -> bytes:
        return struct.pack("<Q", len(key)) + key + struct.pack("<IQ", 8, len(value)) + value

    fill = -len(entry(template.encode() + b"{##}")) % layout.alignment
    padded = entry(template.encode() + b"{#" + b" " * fill + b"#}")
    with source.open("rb") as src, target.open("wb") as dst:
        header = bytearray(src.read(layout.tensor_info_offset))
        struct.pack_into("<Q", header, 16, len(layout.metadata) + 1)
        dst.write(header + padded)
        shutil.copyfileobj(src, dst, 1 << 20)
    return target
