"""Validate a LoRA adapter against its base model before llama.cpp sees it.

llama.cpp's adapter loader (src/llama-adapter.cpp, llama_adapter_lora_init_impl)
throws on some bad files, aborts the process on others (a metadata key of the
wrong type trips a GGML_ASSERT in gguf.cpp), and accepts a few that abort later,
when a context builds its graph (a rank mismatch inside a token_embd pair, a
token_embd adapter on a model whose output layer is that same tensor). Each
rule below names the llama.cpp code it mirrors; a file that passes loads and
runs. A file is refused with one sentence naming it and the reason.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from appliance.engine.gguf import GGUFFile, TensorInfo, read_gguf
from appliance.errors import ModelFormatError

# What convert_lora_to_gguf.py writes (--outtype f32/f16/bf16/q8_0): types every
# backend can multiply and gather rows of. Anything else (I32, K-quants) is refused.
LORA_TYPES = frozenset({"F32", "F16", "BF16", "Q8_0"})
_SUFFIXES = (".lora_a", ".lora_b")
_ALORA_KEY = "adapter.alora.invocation_tokens"
_Fail = Callable[[str], ModelFormatError]


@dataclass(frozen=True)
class AdapterInfo:
    """A LoRA adapter that llama.cpp can load and apply to its base model."""

    path: Path
    architecture: str
    # adapter.lora.alpha; 0.0 when the file has none, which llama.cpp reads as
    # "apply B·A unscaled" (llama_adapter_lora_weight::get_scale).
    alpha: float
    rank: int  # the LoRA rank; the largest one if PEFT's rank_pattern varied it
    targets: tuple[str, ...]  # the base tensors it adapts, sorted
    file_size: int
    name: str | None  # general.name, if present

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path), "targets": list(self.targets)}


def read_adapter(path: str | os.PathLike[str], base: GGUFFile) -> AdapterInfo:
    """Parse `path` and check that llama.cpp can load and apply it to `base`.

    Raises InputError when `path` cannot be read as a regular file and
    ModelFormatError when it is not a LoRA adapter for `base`.
    """
    path = Path(path)
    model = base.get("general.name")
    model = model if isinstance(model, str) and model else base.path.name

    def fail(why: str) -> ModelFormatError:
        return ModelFormatError(f"{path} is not a valid LoRA adapter for {model}: {why}")

    try:
        adapter = read_gguf(path)
    except ModelFormatError as exc:
        # read_gguf says "... is not a valid GGUF model: reason"; keep the reason.
        reason = str(exc).partition(" is not a valid GGUF model: ")[2]
        raise fail(reason or "it is empty") from None
    alpha = _check_metadata(adapter, base, fail)
    pairs = _pairs(adapter, fail)
    tensors = {t.name: t for t in base.tensors}
    ranks = [_check_pair(name, a, b, tensors, fail) for name, (a, b) in sorted(pairs.items())]
    name = adapter.get("general.name")
    return AdapterInfo(
        path=path,
        architecture=adapter.get("general.architecture"),
        alpha=alpha,
        rank=max(ranks),
        targets=tuple(sorted(pairs)),
        file_size=adapter.file_size,
        name=name if isinstance(name, str) else None,
    )


def _check_metadata(adapter: GGUFFile, base: GGUFFile, fail: _Fail) -> float:
    """The keys llama_adapter_lora_init_impl reads, in its order; returns alpha.

    Their value types (string, float32) are checked by read_gguf: llama.cpp
    reads them with gguf_get_val_str/_f32, which abort on any other type.
    """
    kind = adapter.get("general.type")
    if kind != "adapter":  # "expect general.type to be 'adapter'"
        raise fail(f"general.type is {_shown(kind)}, not 'adapter'")
    arch, wanted = adapter.get("general.architecture"), base.get("general.architecture")
    if arch != wanted:  # "model arch and LoRA arch mismatch"
        raise fail(f"it is for architecture {_shown(arch)}, the model is {_shown(wanted)}")
    lora = adapter.get("adapter.type")
    if lora != "lora":  # "expect adapter.type to be 'lora'"
        raise fail(f"adapter.type is {_shown(lora)}; only 'lora' adapters are supported")
    if _ALORA_KEY in adapter.metadata:
        # An activated LoRA switches itself on mid-prompt in llama-server only.
        raise fail("activated LoRA (aLoRA) adapters are not supported")
    alpha = adapter.get("adapter.lora.alpha")
    if alpha is None:
        return 0.0  # optional: get_kv_f32 returns 0 when the key is absent
    # 0 would mean "off" to the trainer but "unscaled" to llama.cpp; a negative
    # or non-finite alpha inverts or poisons every output.
    if not math.isfinite(alpha) or alpha <= 0:
        raise fail(f"adapter.lora.alpha is {alpha}, not a positive number")
    return float(alpha)


def _pairs(adapter: GGUFFile, fail: _Fail) -> dict[str, tuple[TensorInfo, TensorInfo]]:
    """Group lora_a/lora_b by the base tensor they adapt, as llama.cpp's ab_map does."""
    if not adapter.tensors:
        raise fail("it has no tensors")
    halves: dict[str, list[TensorInfo | None]] = {}
    for tensor in adapter.tensors:
        side = next((i for i, s in enumerate(_SUFFIXES) if tensor.name.endswith(s)), None)
        if side is None:
            # llama.cpp throws "has unexpected suffix", except that it silently
            # drops *_norm.weight (from mergekit): refused too, so that what runs
            # is the whole adapter.
            raise fail(f"tensor {_shown(tensor.name)} is neither a .lora_a nor a .lora_b")
        if tensor.ggml_type not in LORA_TYPES:
            allowed = ", ".join(sorted(LORA_TYPES))
            raise fail(f"tensor {_shown(tensor.name)} is {tensor.ggml_type}, not one of {allowed}")
        target = tensor.name.replace(_SUFFIXES[side], "")  # replace_all, as llama.cpp
        pair = halves.setdefault(target, [None, None])
        if pair[side] is not None:  # llama.cpp would keep the last one silently
            raise fail(f"{_shown(target)} has two {_SUFFIXES[side]} tensors")
        pair[side] = tensor
    pairs: dict[str, tuple[TensorInfo, TensorInfo]] = {}
    for target, (a, b) in halves.items():
        if a is None or b is None:  # "LoRA tensor pair ... is missing one component"
            missing = _SUFFIXES[0] if a is None else _SUFFIXES[1]
            raise fail(f"{_shown(target)} has no {missing} tensor to pair with")
        pairs[target] = (a, b)
    return pairs


def _check_pair(
    target: str, a: TensorInfo, b: TensorInfo, tensors: dict[str, TensorInfo], fail: _Fail
) -> int:
    """The shape rules of llama-adapter.cpp plus those its graph relies on; the rank."""
    weight = tensors.get(target)
    if weight is None:  # "does not exist in base model"
        raise fail(f"it adapts {_shown(target)}, which the model does not have (wrong base model?)")
    if len(weight.shape) not in (2, 3):
        # build_lora_mm adapts matrices and build_lora_mm_id stacks of them
        # (ggml_mul_mat_id asserts as->ne[3] == 1); nothing else is ever adapted.
        raise fail(f"it adapts {_shown(target)}, which is not a matrix")
    if weight.ggml_type == "NVFP4":  # llm_graph_context::build_ffn asserts !has_lora
        raise fail(f"it adapts {_shown(target)}, an NVFP4 tensor llama.cpp cannot adapt")
    expect_a: tuple[int, ...]
    expect_b: tuple[int, ...]
    if target.endswith("token_embd.weight"):
        if len(weight.shape) != 2:
            raise fail(f"it adapts {_shown(target)}, which is not a matrix")
        n_out, n_in = weight.shape  # (n_embd, n_vocab)
        if "output.weight" not in tensors:
            # Tied output: llama.cpp loads the output layer as "token_embd.weight"
            # and build_lora_mm would multiply it by this transposed pair: abort.
            raise fail(f"it adapts {_shown(target)}, which this model also uses as its output")
        # llm_graph_context::build_inp_embd: B · get_rows(A): A is (r, n_vocab),
        # B (r, n_embd); llama-adapter.cpp checks only ne[1] of each.
        rank = a.shape[0] if a.shape else 0
        expect_a, expect_b = (rank, n_in), (rank, n_out)
    else:
        # llama-adapter.cpp: W.ne[0] == A.ne[0], W.ne[1] == B.ne[1], A.ne[1] == B.ne[0];
        # trailing (expert) dimensions must match too, or mul_mat asserts or,
        # for ggml_mul_mat_id, reads past a smaller stack.
        n_in, n_out, *rest = weight.shape
        rank = a.shape[1] if len(a.shape) > 1 else 0
        expect_a, expect_b = (n_in, rank, *rest), (rank, n_out, *rest)
    if a.shape != expect_a or b.shape != expect_b:
        raise fail(
            f"the pair for {_shown(target)} is {a.shape} and {b.shape}, which do not fit "
            f"its shape {weight.shape} (wrong base model?)"
        )
    rank = b.shape[0]  # get_scale divides by B.ne[0]
    if not 0 < rank <= min(n_in, n_out):
        raise fail(f"the rank {rank} of {_shown(target)} is not from 1 to {min(n_in, n_out)}")
    return rank


def _shown(value: object) -> str:
    """A metadata value or tensor name from the file, quoted, escaped and short."""
    if value is None:
        return "missing"
    text = str(value)
    return repr(text if len(text) <= 64 else text[:63] + "…")
