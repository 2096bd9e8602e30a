"""The one place that touches llama-cpp-python.

Everything native is imported lazily, so commands that never run a model
(`--version`, `models inspect`) start fast. llama.cpp's own log lines are
captured, never printed: a user sees one sentence, and the last native error
becomes part of it.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections import deque
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.config import EngineSettings, physical_cores
from appliance.engine.chat import ChatFormat
from appliance.engine.prompt import one_bos
from appliance.errors import EngineError

if TYPE_CHECKING:
    from llama_cpp import Llama

_GGML_LOG_ERROR = 4  # enum ggml_log_level in ggml.h
_GGML_LOG_CONT = 5  # continues the previous line
_recent_errors: deque[str] = deque(maxlen=4)


@cache
def _llama_cpp() -> Any:
    """Import llama_cpp once and route its native log into `_recent_errors`."""
    import llama_cpp

    continuing = False

    def on_log(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
        nonlocal continuing
        line = text.decode("utf-8", errors="replace").strip()
        if level == _GGML_LOG_CONT and continuing and _recent_errors:
            _recent_errors[-1] = f"{_recent_errors[-1]} {line}".strip()
        elif level == _GGML_LOG_ERROR and line:
            _recent_errors.append(line)
        continuing = level == _GGML_LOG_ERROR or (level == _GGML_LOG_CONT and continuing)

    callback = llama_cpp.llama_log_callback(on_log)
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    _llama_cpp.callback = callback  # type: ignore[attr-defined]  # keep it alive
    llama_cpp.llama_backend_init()
    if cpu_has_amx():
        _without_extra_buffers(llama_cpp)
    return llama_cpp


def cpu_has_amx(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU has Intel AMX tiles (Sapphire Rapids and later)."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as handle:
            return any(line.startswith("flags") and "amx_tile" in line.split() for line in handle)
    except OSError:
        return False


def _without_extra_buffers(llama_cpp: Any) -> None:
    """Load weights without llama.cpp's extra buffer types (AMX, repacked layouts).

    On CPUs with AMX, llama.cpp's AMX matrix multiply crashes the process
    (SIGSEGV in ggml_backend_amx_mul_mat) on the embedded model; plain CPU
    kernels do not. `Llama()` has no parameter for it, so every model
    parameter set it asks llama.cpp for comes with `use_extra_bufts` off.
    """
    default = llama_cpp.llama_model_default_params

    def params() -> Any:
        values = default()
        values.use_extra_bufts = False
        return values

    llama_cpp.llama_model_default_params = params
    llama_cpp.llama.llama_cpp.llama_model_default_params = params


def gpu_layers(settings: EngineSettings) -> int:
    """All layers on the GPU when llama.cpp was built with a GPU backend."""
    if settings.gpu_layers is not None:
        return settings.gpu_layers
    return -1 if _llama_cpp().llama_supports_gpu_offload() else 0


def load(path: Path, settings: EngineSettings, context_length: int) -> Llama:
    llama_cpp = _llama_cpp()
    _recent_errors.clear()
    threads = settings.threads or physical_cores()
    try:
        llama: Llama = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=context_length,
            n_batch=min(settings.batch_size, context_length),
            n_threads=threads,
            n_threads_batch=threads,
            n_gpu_layers=gpu_layers(settings),
            verbose=False,
        )
    except (ValueError, RuntimeError, OSError) as exc:
        raise EngineError(f"llama.cpp could not load {path}: {_last_error(exc)}") from None
    finally:
        # Llama() resets its logger to ERROR level; the appliance prints nothing native.
        logging.getLogger("llama-cpp-python").setLevel(logging.CRITICAL + 1)
    return llama


def load_adapter(llama: Llama, path: str, name: str) -> Any:
    """A LoRA adapter (validated by engine/adapter.py first) loaded for `llama`'s
    model, not applied; `name` stands for `path` in errors."""
    llama_cpp = _llama_cpp()
    _recent_errors.clear()
    handle = llama_cpp.llama_adapter_lora_init(llama._model.model, path.encode())
    if not handle:
        raise EngineError(f"llama.cpp could not load the adapter {name}: {_last_error(None)}")
    return handle


def apply_adapter(llama: Llama, handle: Any, scale: float) -> None:
    """Serve the next answers with `handle` at `scale`, or the base model alone (None)."""
    llama_cpp = _llama_cpp()
    count = 0 if handle is None else 1
    adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(handle)
    scales = (ctypes.c_float * 1)(scale)
    if llama_cpp.llama_set_adapters_lora(llama._ctx.ctx, adapters, count, scales):
        raise EngineError(f"llama.cpp could not apply the adapter: {_last_error(None)}")


def free_adapter(handle: Any) -> None:
    _llama_cpp().llama_adapter_lora_free(handle)


def load_model_only(path: Path, name: str | None = None) -> None:
    """Load the weights on the CPU and free them: the probe's whole job. `name`
    stands for `path` in errors (the probe loads from a descriptor)."""
    llama_cpp = _llama_cpp()
    _recent_errors.clear()
    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = 0
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        raise EngineError(f"llama.cpp could not load {name or path}: {_last_error(None)}")
    llama_cpp.llama_model_free(model)


def guarded(tokens: Iterator[int]) -> Iterator[int]:
    """Pass tokens through, turning a native failure into an EngineError."""
    try:
        yield from tokens
    except (RuntimeError, ValueError, OSError) as exc:
        raise EngineError(f"llama.cpp failed while generating: {_last_error(exc)}") from None
    finally:
        tokens.close()  # type: ignore[attr-defined]


def piece(llama: Llama, token: int, *, special: bool = False) -> bytes:
    """The bytes of one token; longer pieces than the first buffer are retried."""
    return _piece(llama._model.vocab, token, special)


def _piece(vocab: Any, token: int, special: bool) -> bytes:
    llama_cpp = _llama_cpp()
    size = 64
    while True:
        buffer = ctypes.create_string_buffer(size)
        written = llama_cpp.llama_token_to_piece(vocab, token, buffer, size, 0, special)
        if written >= 0:
            return buffer.raw[:written]
        size = -written


def token_text(llama: Llama, token: int) -> str:
    if token < 0:
        return ""
    return piece(llama, token, special=True).decode("utf-8", errors="replace")


def is_end_of_generation(llama: Llama, token: int) -> bool:
    return bool(_llama_cpp().llama_vocab_is_eog(llama._model.vocab, token))


def _end_tokens(vocab: Any) -> list[int]:
    llama_cpp = _llama_cpp()
    count = llama_cpp.llama_vocab_n_tokens(vocab)
    return [token for token in range(count) if llama_cpp.llama_vocab_is_eog(vocab, token)]


def never_end(llama: Llama) -> Any:
    """A logits processor that rules out every end-of-generation token, as
    llama-server's `ignore_eos` does (a bias of minus infinity on each)."""
    import numpy

    llama_cpp = _llama_cpp()
    banned = numpy.array(_end_tokens(llama._model.vocab), dtype=numpy.intc)

    def processor(_input_ids: Any, scores: Any) -> Any:
        scores[banned] = -numpy.inf
        return scores

    return llama_cpp.LogitsProcessorList([processor])


class Vocab:
    """A model's tokenizer without its weights (llama.cpp's vocab_only load).

    A process that sends token ids to another engine (llama-server) tokenizes
    and decodes with this: the same tokenizer code and tables as the engine.
    """

    def __init__(self, path: Path, name: str | None = None) -> None:
        llama_cpp = self._llama = _llama_cpp()
        _recent_errors.clear()
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        params.n_gpu_layers = 0
        self._model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if not self._model:
            raise EngineError(f"llama.cpp could not read {name or path}: {_last_error(None)}")
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self.bos = int(llama_cpp.llama_vocab_bos(self._vocab))
        self.eos = int(llama_cpp.llama_vocab_eos(self._vocab))
        self.size = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self._lock = threading.Lock()  # llama.cpp does not promise a thread-safe vocab

    def tokenize(self, text: bytes, *, add_bos: bool, special: bool) -> list[int]:
        size = len(text) + 8
        with self._lock:
            vocab = self._open()
            while True:
                buffer = (self._llama.llama_token * size)()
                count = self._llama.llama_tokenize(
                    vocab, text, len(text), buffer, size, add_bos, special
                )
                if count >= 0:
                    return list(buffer[:count])
                size = -count

    def prompt_tokens(self, text: str) -> list[int]:
        """A rendered prompt's tokens as the in-process engine makes them: BOS added,
        special tokens parsed, one BOS."""
        return one_bos(self.tokenize(text.encode("utf-8"), add_bos=True, special=True), self.bos)

    def chat_format(self, template: object) -> ChatFormat:
        """The appliance's chat format for the model's template (None: a transcript)."""
        return ChatFormat(
            template if isinstance(template, str) else None,
            bos_token=self.token_text(self.bos),
            eos_token=self.token_text(self.eos),
        )

    def piece(self, token: int, *, special: bool = False) -> bytes:
        with self._lock:
            return _piece(self._open(), token, special)

    def token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self.piece(token, special=True).decode("utf-8", errors="replace")

    def is_end(self, token: int) -> bool:
        with self._lock:
            return token >= 0 and bool(self._llama.llama_vocab_is_eog(self._open(), token))

    def close(self) -> None:
        """Free the tables; an answer still streaming in another thread gets an
        EngineError from its next token, never freed memory."""
        with self._lock:
            model, self._model = self._model, None
        if model:
            self._llama.llama_model_free(model)

    def _open(self) -> Any:
        if not self._model:
            raise EngineError("the engine has been closed")
        return self._vocab


def supports_gpu_offload() -> bool:
    return bool(_llama_cpp().llama_supports_gpu_offload())


def _last_error(exc: BaseException | None) -> str:
    """The most telling native error line: the loader's reason, else the last one."""
    marker = "error loading model: "
    for line in reversed(_recent_errors):
        if marker in line:
            return line.split(marker, 1)[1].rstrip(".")
    return (_recent_errors[-1] if _recent_errors else str(exc or "unknown error")).rstrip(".")


def quantize(
    source: Path,
    target: Path,
    file_type: str,
    *,
    requantize: bool,
    imatrix: dict[str, Any] | None = None,
) -> None:
    """llama.cpp's quantizer, from a file `read_gguf` has already validated.

    `imatrix` maps tensor names to normalised importance values (float32
    arrays), as llama.cpp's own quantize tool passes them.
    """
    llama_cpp = _llama_cpp()
    _recent_errors.clear()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{file_type}")
    params.allow_requantize = requantize
    params.nthread = physical_cores()
    if imatrix:
        # A NULL-named entry ends the array; the arrays stay referenced until the call returns.
        entries = (llama_cpp.llama_model_imatrix_data * (len(imatrix) + 1))()
        for entry, (name, values) in zip(entries, imatrix.items(), strict=False):
            entry.name = name.encode()
            entry.data = values.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            entry.size = values.size
        params.imatrix = entries
    status = llama_cpp.llama_model_quantize(
        str(source).encode(), str(target).encode(), ctypes.byref(params)
    )
    if status != 0:
        raise EngineError(f"llama.cpp could not quantize {source}: {_last_error(None)}")


class Scorer:
    """A model on llama.cpp's low-level API that returns logits only where asked.

    One sequence, `n_ctx` tokens, batch and micro-batch of `n_ctx`: the same
    settings `llama-perplexity -c N -b N` uses, so the numbers agree with it.
    """

    def __init__(
        self,
        path: Path,
        n_ctx: int,
        threads: int,
        flash_attention: bool,
        adapter: tuple[Path, float] | None = None,
    ) -> None:
        """`adapter`: a LoRA adapter (validated against `path` by the caller) applied
        at its scale to every window."""
        llama_cpp = self._llama = _llama_cpp()
        self.adapter: Any = None
        _recent_errors.clear()
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = 0  # the same device for both models: a fair comparison
        self.model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if not self.model:
            raise EngineError(f"llama.cpp could not load {path}: {_last_error(None)}")
        context = llama_cpp.llama_context_default_params()
        context.n_ctx = context.n_batch = context.n_ubatch = n_ctx
        context.n_seq_max = 1
        context.n_threads = context.n_threads_batch = threads
        enabled = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        context.flash_attn_type = enabled if flash_attention else 0
        self.ctx = llama_cpp.llama_init_from_model(self.model, context)
        if not self.ctx:
            llama_cpp.llama_model_free(self.model)
            raise EngineError(f"llama.cpp could not make a context for {path}")
        if adapter is not None:
            self._apply(*adapter)
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.vocab))
        self.bos = int(llama_cpp.llama_vocab_bos(self.vocab))
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self.vocab))
        self.batch = llama_cpp.llama_batch_init(n_ctx, 0, 1)

    def _apply(self, path: Path, scale: float) -> None:
        llama_cpp = self._llama
        self.adapter = llama_cpp.llama_adapter_lora_init(self.model, str(path).encode())
        chosen = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self.adapter)
        scales = (ctypes.c_float * 1)(scale)
        if not self.adapter or llama_cpp.llama_set_adapters_lora(self.ctx, chosen, 1, scales):
            self.close()
            raise EngineError(f"llama.cpp could not apply the adapter {path}: {_last_error(None)}")

    def tokenize(self, text: str) -> list[int]:
        """As llama-perplexity does: special tokens added (BOS), none parsed in the text."""
        data = text.encode()
        size = len(data) + 2
        while True:
            buffer = (self._llama.llama_token * size)()
            count = self._llama.llama_tokenize(
                self.vocab, data, len(data), buffer, size, True, False
            )
            if count >= 0:
                return list(buffer[:count])
            size = -count

    def decode(self, tokens: list[int], first_pos: int, want_logits_from: int) -> Any:
        """Decode `tokens` at positions from `first_pos`; return the logits (a float
        pointer, rows of n_vocab) of the tokens from index `want_logits_from`."""
        batch = self.batch
        for index, token in enumerate(tokens):
            batch.token[index] = token
            batch.pos[index] = first_pos + index
            batch.n_seq_id[index] = 1
            batch.seq_id[index][0] = 0
            batch.logits[index] = index >= want_logits_from
        batch.n_tokens = len(tokens)
        if self._llama.llama_decode(self.ctx, batch) != 0:
            raise EngineError(f"llama.cpp failed to decode: {_last_error(None)}")
        if want_logits_from >= len(tokens):
            return None
        return self._llama.llama_get_logits_ith(self.ctx, want_logits_from)

    def clear(self) -> None:
        self._llama.llama_memory_clear(self._llama.llama_get_memory(self.ctx), True)

    def close(self) -> None:
        if getattr(self, "batch", None) is not None:
            self._llama.llama_batch_free(self.batch)
            self.batch = None
        if self.ctx:
            self._llama.llama_free(self.ctx)
            self.ctx = None
        if self.adapter:
            self._llama.llama_adapter_lora_free(self.adapter)
            self.adapter = None
        if self.model:
            self._llama.llama_model_free(self.model)
            self.model = None
