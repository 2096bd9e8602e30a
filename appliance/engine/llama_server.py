"""The llama-server backend: one model copy answering several requests at once.

The same surface as the in-process `Engine`, and the same answers: the prompt
is the appliance's own (chat format, history fitted to the context, stop
strings), tokenized here with llama.cpp's tokenizer (a vocab-only load), and
sent as token ids; the server streams back the sampled ids, which go through
the same `Generation` as in-process tokens (stop strings, max_tokens, UTF-8
assembly, stats). With the same settings, at temperature 0 and one slot, both
backends produce the same tokens.

The model is validated (and probed, unless verified) here before any child
starts; the child is started hardened and supervised (server_process.py,
supervisor.py). LoRA adapters, when given, are loaded unapplied
(scale 0, `--lora-init-without-apply`) and every request sets all their scales:
the one adapter an answer names at its scale, every other at 0 (a request
without the list would keep the scales of the slot's last request while
reusing its cache).
"""

from __future__ import annotations

import http.client
import json
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

from appliance.config import EngineSettings, GenerationParams
from appliance.engine import native
from appliance.engine.adapter import read_adapter
from appliance.engine.chat import Message
from appliance.engine.hparams import read_loadable_gguf
from appliance.engine.info import ModelInfo, describe
from appliance.engine.lora import AdapterFile, AdapterUse, digests, index_of
from appliance.engine.probe import probe
from appliance.engine.prompt import fit
from appliance.engine.server_process import (
    ServerProcess,
    describe_exit,
    server_arguments,
    shipped,
)
from appliance.engine.stream import Generation, GenerationStats
from appliance.engine.supervisor import Supervisor
from appliance.engine.unixhttp import LINE_LIMIT, Stream, error_message, events
from appliance.errors import EngineError, InputError
from appliance.seal import harden_process

READY_SECONDS = 600.0  # loading a large model from a cold page cache takes a while
REPEAT_LAST_N = 64  # the penalty window llama-cpp-python uses
REPLACEMENT = "\ufffd".encode()


class LlamaServerEngine:
    """Loads a model once into a supervised llama-server child and streams answers
    from it, up to `slots` at once.

    `model` is a path or `/proc/self/fd/N` (the sealed loader's memfd), as for
    `Engine`; `adapters` are LoRA adapters the child loads unapplied. `on_restart`, when set, is
    called with a short reason ("exit -9") each time a dead child was replaced.
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        settings: EngineSettings | None = None,
        *,
        verified: bool = False,
        adapters: Sequence[AdapterFile] = (),
    ) -> None:
        self._files: list[int] = []
        self._vocab: native.Vocab | None = None
        self._supervisor: Supervisor | None = None
        harden_process()  # the service holds prompts and answers
        self.settings = settings or EngineSettings(backend="llama-server")
        gguf = read_loadable_gguf(model)
        if not verified:
            probe(gguf.path)
        # Each adapter is checked against this model before any child starts.
        adapter_files = [read_adapter(adapter.path, gguf).path for adapter in adapters]
        self.info: ModelInfo = describe(gguf)
        trained = self.info.context_length or self.settings.context_length
        self.context_length = min(self.settings.context_length, trained)
        self.slots = self.settings.slots
        self.adapters = digests(adapters)
        self.gpu_offload = native.gpu_layers(self.settings) != 0
        self.on_restart: Callable[[str], None] | None = None
        self._free = threading.BoundedSemaphore(self.slots)
        server, preload = shipped()
        try:
            self._files = [_open(path) for path in (gguf.path, *adapter_files)]
            self._vocab = native.Vocab(Path(f"/proc/self/fd/{self._files[0]}"), str(gguf.path))
            self.chat_format = self._vocab.chat_format(gguf.get("tokenizer.chat_template"))
            arguments = server_arguments(
                self.settings, self.context_length, self.gpu_offload, adapters=bool(adapters)
            )
            spawn = partial(_spawn, server, preload, arguments, tuple(self._files), READY_SECONDS)
            self._supervisor = Supervisor(spawn, self._restarted)
        except BaseException:
            self.close()
            raise

    # -- lifecycle ----------------------------------------------------------

    @property
    def server_pid(self) -> int:
        """The running child's process id (it changes when the child is restarted)."""
        return self._require_supervisor().current().pid

    def server_log(self) -> list[str]:
        """The running child's last log lines (what went wrong, in tests and reports)."""
        return self._require_supervisor().current().recent_log()

    def close(self) -> None:
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.close()
        vocab, self._vocab = self._vocab, None
        if vocab is not None:
            vocab.close()
        files, self._files = self._files, []
        for descriptor in files:
            os.close(descriptor)

    def __enter__(self) -> LlamaServerEngine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _restarted(self, reason: str) -> None:
        hook = self.on_restart
        if hook is not None:
            hook(reason)

    # -- generation ---------------------------------------------------------

    def chat(
        self,
        messages: list[Message],
        params: GenerationParams | None = None,
        *,
        adapter: AdapterUse | None = None,
    ) -> Generation:
        """Stream the assistant's reply to `messages`, as `Engine.chat` does, given
        with `adapter` (one of those loaded) or the base model alone.

        Safe to call from up to `slots` threads at once.
        """
        params = params or GenerationParams()
        index = index_of(tuple(self.adapters), adapter)
        tokens, dropped = fit(
            messages, params.max_tokens, self.context_length, self.chat_format, self._tokenize
        )
        if not self._free.acquire(blocking=False):
            raise EngineError(
                f"the engine is already answering {self.slots} requests, all it runs at once; "
                "cancel or finish one first"
            )
        try:
            child = self._require_supervisor().current()
            max_tokens = min(params.max_tokens, self.context_length - len(tokens))
            body = self._request(tokens, params, max_tokens, adapter, index)
            stream = Stream(child.socket_path)
            unnamed: deque[bytes] = deque()  # the bytes of tokens the server did not name
            vocab = self._require_vocab()
            return Generation(
                self._tokens(stream, body, child, unnamed),
                piece_of=lambda token: unnamed.popleft() if token < 0 else vocab.piece(token),
                is_end=vocab.is_end,
                max_tokens=max_tokens,
                stop_strings=self.chat_format.stop_strings,
                stats=GenerationStats(prompt_tokens=len(tokens), dropped_messages=dropped),
                on_finish=self._free.release,
                on_cancel=stream.abort,
            )
        except BaseException:
            self._free.release()
            raise

    def count_tokens(self, text: str) -> int:
        return len(self._tokenize(text))

    def _tokenize(self, text: str) -> list[int]:
        return self._require_vocab().prompt_tokens(text)

    def _request(
        self,
        tokens: list[int],
        params: GenerationParams,
        max_tokens: int,
        adapter: AdapterUse | None,
        index: int | None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "prompt": tokens,
            "stream": True,
            "return_tokens": True,
            "n_predict": max_tokens,
            # Off: each answer from a fresh KV cache, reproducible (EngineSettings).
            "cache_prompt": self.settings.reuse_prompt_cache,
            "temperature": params.temperature,
            "top_k": params.top_k,
            "top_p": params.top_p,
            "min_p": params.min_p,
            "typical_p": 1.0,
            "repeat_penalty": params.repeat_penalty,
            "repeat_last_n": REPEAT_LAST_N,
            "seed": params.seed,
            "ignore_eos": params.ignore_eos,
        }
        if self.adapters:
            body["lora"] = [
                {"id": number, "scale": adapter.scale if adapter and number == index else 0.0}
                for number in range(len(self.adapters))
            ]
        return body

    def _tokens(
        self, stream: Stream, body: dict[str, Any], child: ServerProcess, unnamed: deque[bytes]
    ) -> Iterator[int]:
        """The sampled token ids as the server streams them; ends quietly when the
        answer was cancelled (the stream aborted), with one EngineError when lost."""
        try:
            response = stream.open("/completion", body)
            if response is None:
                return
            if response.status != 200:
                reason = error_message(_json(response.read(LINE_LIMIT)), response.status)
                raise EngineError(f"llama-server refused the request: {reason}")
            named = 0
            for event in events(response):
                if "error" in event:
                    raise EngineError(
                        f"llama-server failed while generating: {error_message(event)}"
                    )
                tokens = _token_ids(event.get("tokens"), self._require_vocab().size)
                total = event.get("tokens_predicted")
                held = total - named - len(tokens) if isinstance(total, int) else 0
                if held > 0:
                    yield from self._held(held, event, tokens, unnamed)
                    named += held
                named += len(tokens)
                yield from tokens
                if event.get("stop") is True:
                    return
            if not stream.aborted:
                raise self._lost(child)
        except (OSError, http.client.HTTPException, EngineError) as exc:
            if stream.aborted:
                return  # cancelled: the reader was woken by the closed socket
            if isinstance(exc, EngineError):
                raise
            raise self._lost(child) from None
        finally:
            stream.close()

    def _held(
        self, count: int, event: dict[str, Any], tokens: list[int], unnamed: deque[bytes]
    ) -> Iterator[int]:
        """Tokens the server sampled but did not stream one by one.

        llama-server holds back a token whose text ends inside a UTF-8 character
        (a Hangul syllable spelled as byte tokens) and sends its text with the
        next token's, without its id. Their bytes are what the content holds
        before the named tokens' pieces; their ids are recovered by tokenizing
        those bytes when that spells them exactly, else each is -1. A held
        tail the server dropped at the end is one replacement character, as
        the in-process engine shows an unfinished character.
        """
        vocab = self._require_vocab()
        content = event.get("content")
        text = content.encode() if isinstance(content, str) else b""
        named = b"".join(vocab.piece(token) for token in tokens)
        if event.get("stop") is True and event.get("stop_type") == "eos":
            count -= 1  # the last held token ended the answer
        if count > 0:
            prefix = text[: len(text) - len(named)] if text.endswith(named) else b""
            guess = vocab.tokenize(prefix, add_bos=False, special=False) if prefix else []
            if len(guess) == count and b"".join(vocab.piece(t) for t in guess) == prefix:
                yield from guess
            else:
                unnamed.extend([prefix or REPLACEMENT, *[b""] * (count - 1)])
                yield from [-1] * count
        if event.get("stop") is True and event.get("stop_type") == "eos":
            yield vocab.eos

    def _lost(self, child: ServerProcess) -> EngineError:
        """The error for an answer whose connection broke: the child died, or closed."""
        supervisor = self._supervisor
        if supervisor is None or supervisor.closing:
            return EngineError("the engine was closed; the answer was lost")
        try:
            code = child.process.wait(timeout=5.0)
        except Exception:
            return EngineError(f"llama-server broke off the answer: {child.last_line()}")
        return EngineError(
            f"the engine process stopped ({describe_exit(code)}); the answer was lost"
        )

    def _require_supervisor(self) -> Supervisor:
        if self._supervisor is None:
            raise EngineError("the engine has been closed")
        return self._supervisor

    def _require_vocab(self) -> native.Vocab:
        if self._vocab is None:
            raise EngineError("the engine has been closed")
        return self._vocab


def _spawn(
    server: Path,
    preload: Path,
    arguments: list[str],
    files: tuple[int, ...],
    ready_seconds: float,
    cancelled: Callable[[], bool],
) -> ServerProcess:
    return ServerProcess.start(server, preload, arguments, files, ready_seconds, cancelled)


def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None


def _token_ids(value: Any, vocabulary: int) -> list[int]:
    """Ids checked before llama.cpp sees them: it does not bound-check a token."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(token, int) and not isinstance(token, bool) and 0 <= token < vocabulary
        for token in value
    ):
        raise EngineError("llama-server sent token ids that are not in the vocabulary")
    return value


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None
