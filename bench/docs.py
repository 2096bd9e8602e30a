"""Document ingest: throughput per format, and the encrypted store's size against the text.

Real files of each format (HWPX and HWP 5 written by python-hwpx, DOCX by
python-docx, PDF by reportlab with Korean CID fonts, UTF-8 text), each a few
pages of the appliance's Korean administrative evaluation text with a
header, a footer and a table, are added through `Library` in this process
(parsing in the disposable child, labelling, chunking, the encrypted
store), formats interleaved so that a noisy machine loads all alike. Then
the store is checkpointed and its size compared with the UTF-8 text it
holds and with the files as given (the store keeps each original, for
`docs reindex`). Last line: `docs_ingest_kb_per_s: <input KB/s over all formats>`.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from appliance.audit import AuditLog, audit_dir
from appliance.documents.home import open_documents
from appliance.documents.library import Library
from appliance.identity import Principal
from appliance.policy import load_policy, shipped_policy
from tests import docfiles

PER_FORMAT = 6
PAGES = 3


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


def main() -> None:
    policy = load_policy(shipped_policy("defense-kr"))
    files = {
        fmt: [make(korean_pages(n + index * PER_FORMAT)) for n in range(PER_FORMAT)]
        for index, (fmt, make) in enumerate(MAKERS.items())
    }
    seconds: dict[str, list[float]] = {fmt: [] for fmt in MAKERS}
    text_bytes = 0
    with tempfile.TemporaryDirectory() as directory:
        home = Path(directory)
        principal = Principal("bench", "operator", "secret-1")
        with AuditLog(audit_dir(home)) as log, open_documents(home, log) as store:
            library = Library(home, policy, log, principal, store)
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


if __name__ == "__main__":
    main()
