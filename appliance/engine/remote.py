"""The remote backend: OpenAI-compatible GPU servers on the closed network, over mutual TLS.

The prompt is the appliance's own, as for the other backends: the chat
template, the history fitted to the context and the tokenizer come from a
local copy of the model's GGUF (`manifest`: its metadata and a vocab-only
load; its weights are never loaded here), and the prompt goes out as token
ids to `POST /v1/completions`. The server streams text chunks back; each goes
through the same `Generation` (stop strings, UTF-8 assembly, stats) as one
unnamed token, so `stats.token_ids` holds -1 for each chunk and
`completion_tokens` is the server's `usage` count when it sends one.

Endpoints (tls.py: mutual TLS 1.3, a pinned CA or certificate) are tried in
turn (remote_link.py), the one with the fewest answers in flight first, ties
in rotation. A connection that is refused, times out or fails its TLS
handshake (or its pin) marks the endpoint down for `DOWN_SECONDS` and the
next one is tried: nothing of the request was sent yet. Once a byte of the
request is written there is no retry: a failure ends the answer with one
line naming the endpoint. The stream itself is read in completions.py. The
endpoint that answered, and the sha256 of the certificate it presented, are
in `stats.endpoint` and `stats.endpoint_certificate` from the moment it is
connected.
"""

from __future__ import annotations

import http.client
import os
import threading
from collections import deque
from collections.abc import Callable, Collection, Iterator, Sequence
from types import TracebackType
from typing import Any

from appliance.config import MAX_SLOTS, EngineSettings, GenerationParams
from appliance.engine import native
from appliance.engine.chat import Message
from appliance.engine.completions import END, UNNAMED, stream_chunks
from appliance.engine.hparams import read_loadable_gguf
from appliance.engine.info import ModelInfo, describe
from appliance.engine.lora import AdapterUse
from appliance.engine.probe import probe
from appliance.engine.prompt import fit
from appliance.engine.remote_link import Exchange, Pool, lost
from appliance.engine.stream import Generation, GenerationStats
from appliance.engine.tls import Endpoint, tls_context
from appliance.errors import ConfigError, EngineError, UsageError
from appliance.seal import harden_process

CONNECT_SECONDS = 10.0  # the TCP connection and the TLS handshake
READ_SECONDS = 120.0  # the longest wait for the next event (a long prompt's first one)


class RemoteEngine:
    """Streams answers from `endpoints`, up to `slots` at once, formatting prompts with
    the model in `manifest` (a path or `/proc/self/fd/N`). As for the other backends,
    a manifest whose bytes are not authenticated (`verified`) is first loaded once
    by the disposable probe child; this process only reads its metadata and
    tokenizer. Each endpoint's TLS context is made here: a missing, unprotected or
    swapped file stops the engine before anything connects. `connect_timeout`
    bounds the connection and handshake, `read_timeout` the wait for each event.

    A remote endpoint serves no local adapters, and no process of this host is
    restarted (`on_restart` is never called). `gpu_offload` is False: this host
    offloads nothing, and the servers' hardware is theirs to report.
    """

    def __init__(
        self,
        manifest: str | os.PathLike[str],
        endpoints: Sequence[Endpoint],
        settings: EngineSettings,
        *,
        slots: int = 8,
        verified: bool = False,
        connect_timeout: float = CONNECT_SECONDS,
        read_timeout: float = READ_SECONDS,
    ) -> None:
        self._vocab: native.Vocab | None = None
        harden_process()  # the service holds prompts, answers and the client key
        if not endpoints:
            raise ConfigError("a remote engine needs at least one endpoint")
        if len({endpoint.name for endpoint in endpoints}) != len(endpoints):
            raise ConfigError("two remote endpoints have the same name")
        if not 1 <= slots <= MAX_SLOTS:
            raise UsageError(f"slots must be between 1 and {MAX_SLOTS}")
        self.settings = settings
        self.endpoints = tuple(endpoints)
        self._contexts = [tls_context(endpoint) for endpoint in self.endpoints]
        gguf = read_loadable_gguf(manifest)
        if not verified:
            probe(gguf.path)
        self.info: ModelInfo = describe(gguf)
        trained = self.info.context_length or settings.context_length
        self.context_length = min(settings.context_length, trained)
        self.slots = slots
        self.adapters: dict[str, str] = {}
        self.gpu_offload = False
        self.on_restart: Callable[[str], None] | None = None
        self._timeouts = (connect_timeout, read_timeout)
        self._free = threading.BoundedSemaphore(slots)
        self._pool = Pool(len(self.endpoints))
        self._active: set[Exchange] = set()
        self._lock = threading.Lock()
        self._vocab = vocab = native.Vocab(gguf.path, str(gguf.path))
        try:
            self.chat_format = vocab.chat_format(gguf.get("tokenizer.chat_template"))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Free the tokenizer; answers in flight end with one line."""
        vocab, self._vocab = self._vocab, None
        with self._lock:
            active = list(self._active)
        for exchange in active:
            exchange.abort()
        if vocab is not None:
            vocab.close()

    def __enter__(self) -> RemoteEngine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def chat(
        self,
        messages: list[Message],
        params: GenerationParams | None = None,
        *,
        adapter: AdapterUse | None = None,
        endpoints: Collection[str] | None = None,
    ) -> Generation:
        """Stream the reply to `messages` from one of `endpoints` (names; None: any of
        the engine's), as the caller's policy allows; safe from up to `slots` threads
        at once."""
        if adapter is not None:
            raise EngineError("the remote endpoint serves no adapters")
        excluded = self._excluded(endpoints)
        params = params or GenerationParams()
        tokens, dropped = fit(
            messages, params.max_tokens, self.context_length, self.chat_format, self._tokenize
        )
        if not self._free.acquire(blocking=False):
            raise EngineError(
                f"the engine is already answering {self.slots} requests, all it runs at once; "
                "cancel or finish one first"
            )
        try:
            max_tokens = min(params.max_tokens, self.context_length - len(tokens))
            body = self._request(tokens, params, max_tokens)
            stats = GenerationStats(prompt_tokens=len(tokens), dropped_messages=dropped)
            exchange = Exchange()
            chunks: deque[bytes] = deque()
            return Generation(
                self._tokens(exchange, body, stats, chunks, max_tokens, excluded),
                piece_of=lambda token: chunks.popleft() if token == UNNAMED else b"",
                is_end=lambda token: token == END,
                max_tokens=max_tokens,
                stop_strings=self.chat_format.stop_strings,
                stats=stats,
                on_finish=self._free.release,
                on_cancel=exchange.abort,
            )
        except BaseException:
            self._free.release()
            raise

    def count_tokens(self, text: str) -> int:
        return len(self._tokenize(text))

    def _tokenize(self, text: str) -> list[int]:
        vocab = self._vocab
        if vocab is None:
            raise EngineError("the engine has been closed")
        return vocab.prompt_tokens(text)

    def _request(self, tokens: list[int], params: GenerationParams, limit: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "prompt": tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": limit,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "top_k": params.top_k,
            "min_p": params.min_p,
            "seed": params.seed,
            # vLLM and SGLang call it repetition_penalty, llama-server repeat_penalty;
            # each ignores the other's name.
            "repetition_penalty": params.repeat_penalty,
            "repeat_penalty": params.repeat_penalty,
            # llama-server: off, each answer from a fresh KV cache (EngineSettings).
            "cache_prompt": self.settings.reuse_prompt_cache,
        }
        if params.ignore_eos:
            body["ignore_eos"] = True
        return body

    # -- one answer ------------------------------------------------------------

    def _tokens(
        self,
        exchange: Exchange,
        body: dict[str, Any],
        stats: GenerationStats,
        chunks: deque[bytes],
        limit: int,
        excluded: frozenset[int],
    ) -> Iterator[int]:
        """Connect (trying the endpoints in turn), send, and yield the streamed chunks as
        unnamed tokens; quiet when cancelled, one EngineError line when lost."""
        index: int | None = None
        with self._lock:
            self._active.add(exchange)
        try:
            if self._vocab is None:
                raise EngineError("the engine has been closed")
            index = self._connect(exchange, excluded)
            if index is None:
                return  # cancelled while connecting
            endpoint = self.endpoints[index]
            stats.endpoint, stats.endpoint_certificate = endpoint.name, exchange.fingerprint
            body["model"] = endpoint.model
            try:
                response = exchange.send(body)
                yield from stream_chunks(endpoint.label, response, stats, chunks, limit)
            except (OSError, http.client.HTTPException) as exc:
                if exchange.aborted:
                    raise
                self._pool.down(index)
                raise EngineError(lost(endpoint, exc, self._timeouts[1])) from None
        except (OSError, http.client.HTTPException, EngineError):
            if not exchange.aborted:
                raise
            if self._vocab is None:
                raise EngineError("the engine was closed; the answer was lost") from None
        finally:
            exchange.close()
            with self._lock:
                self._active.discard(exchange)
            if index is not None:
                self._pool.release(index)

    def _excluded(self, names: Collection[str] | None) -> frozenset[int]:
        """The endpoints an answer may not go to, given those it may (None: any)."""
        if names is None:
            return frozenset()
        known = {endpoint.name: index for index, endpoint in enumerate(self.endpoints)}
        for name in names:
            if name not in known:
                raise EngineError(f"the remote engine has no endpoint named {name!r}")
        if not names:
            raise EngineError("no remote endpoint may answer this request")
        return frozenset(known.values()) - {known[name] for name in names}

    def _connect(self, exchange: Exchange, excluded: frozenset[int]) -> int | None:
        """The index of the endpoint now connected (TLS done, pin checked), or None if
        cancelled; EngineError (each endpoint's reason) when none could be reached."""
        failures: list[str] = []
        tried = set(excluded)
        while (index := self._pool.pick(tried)) is not None:
            tried.add(index)
            endpoint = self.endpoints[index]
            try:
                if exchange.connect(endpoint, self._contexts[index], *self._timeouts):
                    self._pool.up(index)
                    return index
            except EngineError as exc:
                if not exchange.aborted:
                    self._pool.down(index)
                    failures.append(str(exc))
            self._pool.release(index)
            if exchange.aborted:
                return None
        if len(failures) == 1:
            raise EngineError(failures[0])
        raise EngineError("no remote endpoint answered: " + "; ".join(failures))
