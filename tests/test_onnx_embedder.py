"""The onnx embedder: a site's own ONNX model, pinned, run by onnxruntime, used by retrieval.

The model is real and small: an ONNX graph written here with `onnx` (a token
embedding table and a Gather; the embedder pools over the tokens), its
tokenizer a real tokenizer.json from `tokenizers`. In its table "vacation" and
"leave" share a vector, so only the dense side (the model) can bring a
passage that says one to a question that says the other.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, models, pre_tokenizers

from appliance.audit import AuditLog, audit_dir
from appliance.config import load_home_config
from appliance.documents import embed
from appliance.documents.library import Library
from appliance.documents.onnx_embedder import OnnxEmbedder
from appliance.documents.store import DocumentStore
from appliance.errors import ConfigError, IntegrityError
from appliance.identity import Principal
from appliance.policy import load_policy, shipped_policy
from bench import e5_export

WORDS = [
    *("[PAD]", "[UNK]", "vacation", "leave", "days", "soldiers", "may", "take", "per"),
    *("year", "fuel", "diesel", "winter", "trucks", "use", "the", "in", "how", "many"),
    *("what", "is", "are", "of", "a"),
]
SAME = {"leave": "vacation"}  # one vector for both
DIM = 32
KIM = Principal("kim", "operator", "restricted")
POLICY = load_policy(shipped_policy("defense-kr"))


def tokenizer_json() -> str:
    vocabulary = {word: index for index, word in enumerate(WORDS)}
    tokenizer = Tokenizer(models.WordLevel(vocabulary, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return tokenizer.to_str()


def model_bytes(inputs: tuple[str, ...] = ("input_ids", "attention_mask")) -> bytes:
    """Token ids -> one row of a fixed table each: (texts, tokens, DIM)."""
    rng = np.random.default_rng(7)
    table = rng.standard_normal((len(WORDS), DIM)).astype(np.float32)
    for word, same in SAME.items():
        table[WORDS.index(word)] = table[WORDS.index(same)]
    table[0] = 0.0
    given = [
        helper.make_tensor_value_info(n, TensorProto.INT64, ["texts", "tokens"]) for n in inputs
    ]
    output = helper.make_tensor_value_info(
        "last_hidden_state", TensorProto.FLOAT, ["texts", "tokens", DIM]
    )
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "input_ids"], ["last_hidden_state"])],
        "bag_of_tokens",
        given,
        [output],
        [numpy_helper.from_array(table, "table")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def write_site(home: Path, folder: Path, model: bytes, **extra: str) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    model_path, tokenizer_path = folder / "model.onnx", folder / "tokenizer.json"
    model_path.write_bytes(model)
    tokenizer_path.write_text(tokenizer_json())
    lines = [
        "[embedder]",
        'backend = "onnx"',
        f'model = "{model_path}"',
        f'model_sha256 = "{hashlib.sha256(model).hexdigest()}"',
        f'tokenizer = "{tokenizer_path}"',
        f'tokenizer_sha256 = "{hashlib.sha256(tokenizer_path.read_bytes()).hexdigest()}"',
        *(f"{key} = {value}" for key, value in extra.items()),
    ]
    (home / "config.toml").write_text("\n".join(lines) + "\n")
    return model_path, tokenizer_path


@pytest.fixture
def home(tmp_path: Path) -> Iterator[tuple[Path, DocumentStore, AuditLog]]:
    path = tmp_path / "home"
    path.mkdir()
    key = os.urandom(32)
    with AuditLog(audit_dir(path)) as log, DocumentStore(path / "store.db", key) as store:
        yield path, store, log


def test_retrieval_runs_on_the_sites_onnx_model(home, tmp_path):
    path, store, log = home
    write_site(path, tmp_path / "site", model_bytes())
    library = Library(path, POLICY, log, KIM, store)
    assert library.retriever.embedder.name.startswith("onnx/")
    assert library.retriever.embedder.dim == DIM
    fuel = library.add("fuel.txt", b"Trucks use winter diesel fuel in the winter.")
    rest = library.add("rest.txt", b"Soldiers may take 24 vacation days per year.")
    found = library.search("How many leave days?", mode="dense")
    assert found.passages[0].document_id == rest["document"]["id"]
    assert found.passages[1].document_id == fuel["document"]["id"]
    # The keyword side alone knows no "leave" in these texts; the model brought it.
    keyword = library.search("leave", mode="keyword")
    assert rest["document"]["id"] not in [p.document_id for p in keyword.passages]
    # Vectors are stored under the model's name, so another model computes them again.
    collection = store.collection("~kim")
    assert collection is not None
    rows = store.partition(collection.id, "public", library.retriever.embedder.name).rows
    assert rows
    assert all(row.vector is not None for row in rows)


def test_a_real_trained_model_runs_through_the_site_backend(home, tmp_path):
    """multilingual-e5-small written out as a site's model (bench/e5_export.py: a model
    file and a tokenizer.json): the backend's tokenizer, batching and pooling give the
    shipped e5's vectors, and an English question finds its Korean passage, dense alone."""
    path, store, log = home
    site = e5_export.write(tmp_path / "e5")
    pinned = ("model", "model_sha256", "tokenizer", "tokenizer_sha256")
    keys = (*pinned, "query_prefix", "passage_prefix")
    lines = ["[embedder]", 'backend = "onnx"', *(f'{k} = "{getattr(site, k)}"' for k in keys)]
    (path / "config.toml").write_text("\n".join(lines) + "\n")
    library = Library(path, POLICY, log, KIM, store)
    texts = ["병사 연가는 며칠이야?", "When is the fuel report due?", "보안 점검 결과 보고"]
    ours = library.retriever.embedder.embed_queries(texts)
    shipped = embed.embedder("e5").embed_queries(texts)
    assert (ours * shipped).sum(axis=1).min() >= 0.99
    leave = library.add("leave.txt", "병사의 연가는 연 24일이며 분할하여 사용할 수 있다.".encode())
    library.add("fuel.txt", "동절기 차량에는 동계용 경유를 사용하고 주유 기록을 남긴다.".encode())
    found = library.search("How many vacation days do soldiers get?", mode="dense")
    assert found.passages[0].document_id == leave["document"]["id"]


def test_a_file_other_than_the_pinned_one_is_never_loaded(home, tmp_path):
    path, _, _ = home
    model_path, tokenizer_path = write_site(path, tmp_path / "site", model_bytes())
    site = load_home_config(path).embedder
    assert site is not None
    changed = bytearray(model_path.read_bytes())
    changed[-1] ^= 1
    model_path.write_bytes(bytes(changed))
    with pytest.raises(IntegrityError, match=r"not the one config\.toml pins"):
        OnnxEmbedder(site)
    model_path.write_bytes(model_bytes())
    tokenizer_path.write_text(tokenizer_json().replace("vacation", "holiday"))
    with pytest.raises(IntegrityError, match="tokenizer is not the one"):
        OnnxEmbedder(site)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (b"not an onnx model at all", "onnxruntime cannot load it"),
        (model_bytes(("input_ids",)), "must take input_ids and attention_mask"),
    ],
)
def test_a_pinned_model_onnxruntime_cannot_use_is_one_sentence(home, tmp_path, model, message):
    path, _, _ = home
    write_site(path, tmp_path / "site", model)
    site = load_home_config(path).embedder
    assert site is not None
    with pytest.raises(ConfigError, match=message):
        OnnxEmbedder(site)


def test_cuda_is_refused_where_onnxruntime_has_no_cuda(home, tmp_path):
    path, _, _ = home
    write_site(path, tmp_path / "site", model_bytes(), device='"cuda"')
    site = load_home_config(path).embedder
    assert site is not None
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this host's onnxruntime has CUDA")
    with pytest.raises(ConfigError, match="no CUDAExecutionProvider"):
        OnnxEmbedder(site)


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('backend = "bert"', "embedder.backend"),
        ('model = "relative/model.onnx"', "embedder.model"),
        ('model_sha256 = "abc"', "embedder.model_sha256"),
        ('pooling = "max"', "embedder.pooling"),
        ('device = "tpu"', "embedder.device"),
        ("max_tokens = 4", "embedder.max_tokens"),
        ("least = 2.5", "embedder.least"),
        ('query_prefix = "\\u0000"', "embedder.query_prefix"),
        ("threads = 4", "embedder.threads"),
    ],
)
def test_an_invalid_embedder_section_names_the_key(tmp_path, line, key):
    good = {
        "backend": '"onnx"',
        "model": '"/site/model.onnx"',
        "model_sha256": f'"{"a" * 64}"',
        "tokenizer": '"/site/tokenizer.json"',
        "tokenizer_sha256": f'"{"b" * 64}"',
    }
    name = line.split(" = ")[0]
    good[name] = line.split(" = ", 1)[1]
    body = "\n".join(f"{k} = {v}" for k, v in good.items())
    (tmp_path / "config.toml").write_text(f"[embedder]\n{body}\n")
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_home_config(tmp_path)


def test_without_an_embedder_section_the_shipped_e5_serves(tmp_path):
    assert load_home_config(tmp_path).embedder is None
    assert embed.for_home(tmp_path).name.startswith("e5-small-q4/")
