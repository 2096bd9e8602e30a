"""DLP: scan latency on a 4 KB Korean admin prompt, and throughput on 10 MB.

The same inputs go through `ko_pii.detect_all` (MIT, rule-based), the library
the appliance weighed for the standard Korean identifiers. Target: the
appliance's 4 KB p95 <= 5 ms. The same prompt is also timed as pasted from a
Mac or a word processor (decomposed Hangul, no-break spaces, zero-width
characters), where normalisation does the most work. Last line:
`dlp_4kb_p95_ms: <value>`.
"""

from __future__ import annotations

import random
import statistics
import time
import unicodedata
from collections.abc import Callable

from ko_pii import detect_all

from appliance.policy import check_input, load_policy, shipped_policy
from tests.dlp_corpus import CLEAN, build

RUNS = 200
CORPUS_BYTES = 10 * 1024 * 1024
KO_PII_BYTES = 512 * 1024  # ko-pii is too slow for the whole 10 MB in a bench run


def prompt_4kb() -> str:
    """An admin request: clean sentences with a few identifiers and a marking."""
    samples = build(seed=7)
    rng = random.Random(4)
    parts: list[str] = ["[대외비] 인사 행정 협조 요청\n"]
    while len("".join(parts).encode()) < 4096:
        parts.append(rng.choice(CLEAN) if rng.random() < 0.8 else rng.choice(samples).text)
    return "".join(parts).encode()[:4096].decode(errors="ignore")


def pasted(text: str) -> str:
    """`text` in NFD, with no-break spaces and a zero-width space every 16 characters."""
    decomposed = unicodedata.normalize("NFD", text).replace(" ", "\u00a0")
    spaced = "\u200b".join(decomposed[i : i + 16] for i in range(0, len(decomposed), 16))
    return spaced.encode()[:4096].decode(errors="ignore")


def corpus(size: int) -> list[str]:
    """Paragraphs of about 4 KB until `size` bytes, mixing clean text and identifiers."""
    texts = [sample.text for sample in build(seed=11, per_detector=200)] + list(CLEAN) * 20
    rng = random.Random(5)
    paragraphs, total, current = [], 0, []
    while total < size:
        line = rng.choice(texts)
        current.append(line)
        total += len(line.encode()) + 1
        if sum(len(x) for x in current) > 1400:
            paragraphs.append("\n".join(current))
            current = []
    return paragraphs


def latency(scan: Callable[[str], object], text: str) -> tuple[float, float]:
    timings = []
    for _ in range(RUNS):
        start = time.perf_counter()
        scan(text)
        timings.append((time.perf_counter() - start) * 1000)
    timings.sort()
    return statistics.median(timings), timings[int(len(timings) * 0.95) - 1]


def throughput(scan: Callable[[str], object], paragraphs: list[str]) -> float:
    size = sum(len(p.encode()) for p in paragraphs)
    start = time.perf_counter()
    for paragraph in paragraphs:
        scan(paragraph)
    return size / (time.perf_counter() - start) / 1e6


def main() -> None:
    policy = load_policy(shipped_policy("defense-kr"))
    text = prompt_4kb()

    def ours(value: str) -> object:
        return check_input(policy, value, policy.lowest)

    for scanner in (ours, detect_all):  # warm both
        scanner(text)
    ours_p50, ours_p95 = latency(ours, text)
    theirs_p50, theirs_p95 = latency(detect_all, text) if RUNS else (0.0, 0.0)
    pasted_p50, pasted_p95 = latency(ours, pasted(text))
    print(f"4 KB prompt ({len(text.encode())} bytes), {RUNS} runs:")
    print(f"  appliance check_input  p50 {ours_p50:.2f} ms  p95 {ours_p95:.2f} ms")
    print(f"  the same, pasted       p50 {pasted_p50:.2f} ms  p95 {pasted_p95:.2f} ms")
    print(f"  ko_pii.detect_all      p50 {theirs_p50:.2f} ms  p95 {theirs_p95:.2f} ms")
    paragraphs = corpus(CORPUS_BYTES)
    ours_rate = throughput(ours, paragraphs)
    subset = corpus(KO_PII_BYTES)
    theirs_rate = throughput(detect_all, subset)
    print(f"throughput: appliance {ours_rate:.2f} MB/s on 10 MB")
    print(f"            ko-pii    {theirs_rate:.2f} MB/s on 0.5 MB")
    print(f"dlp_vs_ko_pii_4kb_p95: {theirs_p95 / ours_p95:.1f}x faster")
    print(f"dlp_4kb_p95_ms: {ours_p95:.2f}")


if __name__ == "__main__":
    main()
