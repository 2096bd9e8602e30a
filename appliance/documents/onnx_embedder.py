"""An ONNX sentence-embedding model IT staff bring, run by onnxruntime.

The home's config.toml names the model and its tokenizer (a Hugging Face
tokenizer.json) with each file's sha256 (`[embedder]`, docs/formats/documents.md).
Each file is read once into memory and hashed; only bytes that match are
given to onnxruntime or the tokenizer, so a file swapped on disk is never
parsed, and the model is loaded from those bytes (an external-data model,
which would make onnxruntime open more files, does not load). onnxruntime
runs on the CPU, or CUDA where `device = "cuda"` and the `gpu` extra are
installed; never another execution provider (its wheel also carries a remote
one).

The model takes `input_ids` and `attention_mask` (and `token_type_ids` if it
asks for them) and gives token vectors, pooled by mean over the tokens or the
first token, or sentence vectors already pooled. Vectors are stored under
the name `onnx/<model sha256's first 16 digits>`: another model makes
retrieval compute them again.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from appliance.config import EmbedderSite
from appliance.documents.embed import Thresholds
from appliance.errors import ConfigError, InputError, IntegrityError
from appliance.fsutil import read_limited

MAX_MODEL_BYTES = 4 << 30
MAX_TOKENIZER_BYTES = 64 << 20
MAX_DIM = 8192
_BATCH = 16
_PROVIDERS = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider"]}


class OnnxEmbedder:
    """The `Embedder` of a site's ONNX model; loaded (and checked) when made."""

    def __init__(self, site: EmbedderSite, threads: int = 1) -> None:
        self.site = site
        self.name = f"onnx/{site.model_sha256[:16]}"
        self.thresholds = Thresholds(least=site.least, cross=site.cross)
        model = _pinned(site.model, site.model_sha256, MAX_MODEL_BYTES, "model")
        tokenizer = _pinned(site.tokenizer, site.tokenizer_sha256, MAX_TOKENIZER_BYTES, "tokenizer")
        self._tokenizer = _load_tokenizer(tokenizer, site)
        self._session = _load_session(model, site, threads)
        names = {item.name for item in self._session.get_inputs()}
        if not {"input_ids", "attention_mask"} <= names:
            raise ConfigError(
                f"{site.model}: the model must take input_ids and attention_mask "
                f"(it takes {', '.join(sorted(names))[:120]})"
            )
        self._types = "token_type_ids" in names
        self._lock = threading.Lock()
        probe = self._run(["probe"])
        self.dim = int(probe.shape[1])
        if not 8 <= self.dim <= MAX_DIM:
            raise ConfigError(f"{site.model}: gives vectors of {self.dim} dimensions")

    def embed_queries(self, texts: list[str]) -> NDArray[np.float32]:
        return self._embed([self.site.query_prefix + text for text in texts])

    def embed_passages(self, texts: list[str]) -> NDArray[np.float32]:
        return self._embed([self.site.passage_prefix + text for text in texts])

    def _embed(self, texts: list[str]) -> NDArray[np.float32]:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        found = [self._run(texts[at : at + _BATCH]) for at in range(0, len(texts), _BATCH)]
        return np.concatenate(found)

    def _run(self, texts: list[str]) -> NDArray[np.float32]:
        encoded = self._tokenizer.encode_batch(texts)
        ids = np.asarray([e.ids for e in encoded], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encoded], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask}
        if self._types:
            feed["token_type_ids"] = np.zeros_like(ids)
        try:
            with self._lock:
                output = self._session.run(None, feed)[0]
        except Exception as exc:  # onnxruntime raises its own classes, unexported
            raise ConfigError(f"{self.site.model}: the model failed: {str(exc)[:200]}") from None
        vectors = np.asarray(output, dtype=np.float32)
        if vectors.ndim == 3 and vectors.shape[:2] == ids.shape:
            if self.site.pooling == "cls":
                vectors = vectors[:, 0, :]
            else:
                weights = mask[:, :, None].astype(np.float32)
                vectors = (vectors * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1)
        elif not (vectors.ndim == 2 and len(vectors) == len(texts)):
            raise ConfigError(
                f"{self.site.model}: gives an output of shape {vectors.shape}, not "
                "(texts, tokens, dimensions) or (texts, dimensions)"
            )
        if not np.isfinite(vectors).all():
            raise ConfigError(f"{self.site.model}: gives vectors that are not finite")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def _pinned(path: Path, sha256: str, limit: int, what: str) -> bytes:
    """The file's bytes, only if they are the ones config.toml pins."""
    try:
        data = read_limited(path, limit, what=f"config.toml's embedding {what}")
    except InputError as exc:
        raise ConfigError(str(exc)) from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise IntegrityError(
            f"{path}: the embedding {what} is not the one config.toml pins (sha256 differs)"
        )
    return data


def _load_tokenizer(data: bytes, site: EmbedderSite) -> Any:
    try:
        from tokenizers import Tokenizer  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        raise ConfigError(
            "the onnx embedder needs the `onnx` extra (onnxruntime, tokenizers)"
        ) from None
    try:
        tokenizer = Tokenizer.from_str(data.decode("utf-8"))
    except Exception as exc:  # tokenizers raises a bare Exception on a bad file
        raise ConfigError(f"{site.tokenizer}: not a tokenizer.json: {str(exc)[:160]}") from None
    tokenizer.enable_truncation(site.max_tokens)
    tokenizer.enable_padding()
    return tokenizer


def _load_session(data: bytes, site: EmbedderSite, threads: int) -> Any:
    try:
        import onnxruntime  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        raise ConfigError(
            "the onnx embedder needs the `onnx` extra (onnxruntime, tokenizers), or `gpu`"
        ) from None
    providers = _PROVIDERS[site.device]
    if not set(providers) <= set(onnxruntime.get_available_providers()):
        raise ConfigError(
            f"embedder.device = {site.device!r}: onnxruntime here has no {providers[0]}"
        )
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    try:
        return onnxruntime.InferenceSession(data, options, providers=providers)
    except Exception as exc:  # onnxruntime's own exception classes are not exported
        raise ConfigError(f"{site.model}: onnxruntime cannot load it: {str(exc)[:200]}") from None
