"""The local inference engine: one GGUF model served by llama.cpp in-process."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from appliance.config import EngineSettings, GenerationParams
from appliance.engine import native
from appliance.engine.adapter import read_adapter
from appliance.engine.chat import ChatFormat, Message
from appliance.engine.hparams import read_loadable_gguf
from appliance.engine.info import ModelInfo, describe
from appliance.engine.lora import AdapterFile, AdapterUse, digests, index_of
from appliance.engine.probe import probe
from appliance.engine.prompt import fit, one_bos
from appliance.engine.stream import Generation, GenerationStats
from appliance.errors import EngineError
from appliance.seal import harden_process

if TYPE_CHECKING:
    from llama_cpp import Llama


class Engine:
    """Loads a model once and streams answers from it, one at a time.

    `model` is a path or `/proc/self/fd/N` (an in-memory file handed over by
    the sealed-weights loader). The file is validated before llama.cpp opens
    it, and unless `verified` (its bytes were authenticated: a pinned sha256),
    first loaded in a disposable child process.

    Whatever the model, the serving process is hardened first (non-dumpable,
    no core file): its memory will hold the weights, prompts and answers, and
    no other process of the user may read them. If that fails, nothing loads.

    `adapters`, each validated against the model first, are loaded once,
    unapplied; each answer applies the one it names (llama_set_adapters_lora on
    the one context), so the model is never copied and stays memory-mapped.
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        settings: EngineSettings | None = None,
        *,
        verified: bool = False,
        adapters: Sequence[AdapterFile] = (),
    ) -> None:
        harden_process()
        self.settings = settings or EngineSettings()
        gguf = read_loadable_gguf(model)
        if not verified:
            probe(gguf.path)
        for adapter in adapters:  # each checked against this model before llama.cpp reads it
            read_adapter(adapter.path, gguf)
        self.info: ModelInfo = describe(gguf)
        trained = self.info.context_length or self.settings.context_length
        self.context_length = min(self.settings.context_length, trained)
        self._busy = threading.Lock()
        self.slots = 1  # answers at once: one model context, one answer
        # Called after a restarted engine process (llama-server); never here.
        self.on_restart: Callable[[str], None] | None = None
        self._never_end: Any = None  # the logits processor for ignore_eos, made once
        self.gpu_offload = native.gpu_layers(self.settings) != 0
        self._llama: Llama | None = native.load(gguf.path, self.settings, self.context_length)
        self._adapters: list[Any] = []  # llama.cpp's handles, in the order of `adapters`
        self.adapters = digests(adapters)
        self._applied: AdapterUse | None = None
        try:
            for adapter in adapters:
                self._adapters.append(
                    native.load_adapter(self._llama, str(adapter.path), adapter.name)
                )
            template = gguf.get("tokenizer.chat_template")
            self.chat_format = ChatFormat(
                template if isinstance(template, str) else None,
                bos_token=native.token_text(self._llama, self._llama.token_bos()),
                eos_token=native.token_text(self._llama, self._llama.token_eos()),
            )
        except BaseException:
            self.close()
            raise

    # -- lifecycle ----------------------------------------------------------

    def close(self) -> None:
        llama, self._llama = self._llama, None
        handles, self._adapters = self._adapters, []
        if handles and llama is not None:
            native.apply_adapter(llama, None, 0.0)  # the context keeps a pointer to it
        for handle in handles:  # before the model, whose destructor would free them too
            native.free_adapter(handle)
        if llama is not None:
            llama.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- generation ---------------------------------------------------------

    def chat(
        self,
        messages: list[Message],
        params: GenerationParams | None = None,
        *,
        adapter: AdapterUse | None = None,
    ) -> Generation:
        """Stream the assistant's reply to `messages`, given with `adapter` (one of
        those loaded) or the base model alone.

        The oldest user/assistant exchanges are left out when the conversation
        would not fit the context window together with room for the answer;
        `Generation.stats.dropped_messages` says how many.
        """
        params = params or GenerationParams()
        index = index_of(tuple(self.adapters), adapter)
        tokens, dropped = self._fit(messages, params.max_tokens)
        return self._generate(tokens, params, dropped, adapter, index)

    def count_tokens(self, text: str) -> int:
        return len(self._tokenize(text))

    def _fit(self, messages: list[Message], max_tokens: int) -> tuple[list[int], int]:
        return fit(messages, max_tokens, self.context_length, self.chat_format, self._tokenize)

    def _tokenize(self, text: str) -> list[int]:
        llama = self._require_loaded()
        tokens = llama.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        return one_bos(tokens, llama.token_bos())

    def _generate(
        self,
        tokens: list[int],
        params: GenerationParams,
        dropped: int,
        adapter: AdapterUse | None,
        index: int | None,
    ) -> Generation:
        llama = self._require_loaded()
        if not self._busy.acquire(blocking=False):
            raise EngineError("the engine is already answering; cancel or finish that answer first")
        try:
            room = self.context_length - len(tokens)
            changed = adapter != self._applied
            if changed:
                handle = None if index is None else self._adapters[index]
                native.apply_adapter(llama, handle, adapter.scale if adapter else 0.0)
                self._applied = adapter
            if changed or not self.settings.reuse_prompt_cache:
                # A cached prefix computed under another adapter is not this answer's.
                llama.reset()  # type: ignore[no-untyped-call]  # untyped in llama_cpp
            llama.set_seed(params.seed)
            if params.ignore_eos and self._never_end is None:
                self._never_end = native.never_end(llama)
            token_stream = llama.generate(
                tokens,
                top_k=params.top_k,
                top_p=params.top_p,
                min_p=params.min_p,
                typical_p=1.0,
                temp=params.temperature,
                repeat_penalty=params.repeat_penalty,
                logits_processor=self._never_end if params.ignore_eos else None,
            )
            return Generation(
                native.guarded(token_stream),
                piece_of=lambda token: native.piece(llama, token),
                is_end=lambda token: native.is_end_of_generation(llama, token),
                max_tokens=min(params.max_tokens, room),
                stop_strings=self.chat_format.stop_strings,
                stats=GenerationStats(prompt_tokens=len(tokens), dropped_messages=dropped),
                on_finish=self._busy.release,
            )
        except BaseException:
            self._busy.release()
            raise

    def _require_loaded(self) -> Llama:
        if self._llama is None:
            raise EngineError("the engine has been closed")
        return self._llama
