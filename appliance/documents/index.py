"""The keyword side of retrieval: Korean terms, their postings, and BM25 over a readable set.

FTS5's tokenizers do not serve Korean: unicode61 keeps a whole 어절, so 예산
misses 예산안을, and trigrams miss every two-syllable word. A chunk is read
here into two fields:

- **morphemes** (Kiwi): nouns, verb and adjective stems, roots, foreign
  words (lowercased), numbers and Hanja; particles, endings, suffixes and
  punctuation are dropped, so 예산을, 예산이 and 예산 are one term;
- **bigrams**: the character bigrams of each 어절's content (its Hangul
  from the first to the last kept morpheme), so a compound Kiwi keeps whole
  (예산안) or an unknown word it cuts badly is still found by its parts.

BM25 runs over both (the bigram field weighted GRAM_WEIGHT) with its
statistics (N, average lengths, document frequencies) taken from the chunks
the reader may read and nothing else: each partition (a collection at a
label) keeps its own counts, and a query adds up those of the readable
partitions, so a document the reader cannot see changes no score they get.

`whitespace_terms` is the baseline the benchmark compares with: the same
BM25 over whitespace-separated words.
"""

from __future__ import annotations

import math
import re
import threading
import unicodedata
from collections import Counter as Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from appliance.documents.store import Postings

K1 = 1.2
B = 0.75
# The bigram field's weight against the morphemes': 0.25 and 0.5 gave the same
# hybrid recall@1 on the evaluation set (tests/docs_eval, 112 questions), 1.0
# one question less; the lower keeps an exact morpheme match ahead of a part.
GRAM_WEIGHT = 0.5

# Kiwi's tags that carry content (irregular forms, VV-I, are matched on the part before
# the dash): common and proper nouns, roots, verb and adjective stems, foreign words,
# numbers, Hanja, unknown words, and serials, hashtags, e-mail addresses and URLs.
_CONTENT = frozenset(
    {"NNG", "NNP", "XR", "VV", "VA", "SL", "SN", "SH", "UN"}
    | {"W_SERIAL", "W_HASHTAG", "W_EMAIL", "W_URL", "W_MENTION"}
    | {f"USER{n}" for n in range(5)}
)
_STEMS = frozenset({"VV", "VA"})
# Stems so common they say nothing (하다, 되다, 있다, 없다, 않다, 같다, 이다, 아니다),
# and the words a question asks with (어떻다, 알리다 as in 알려 줘, 며칠, 얼마, 설명).
_STOP_STEMS = frozenset({"하", "되", "있", "없", "않", "같", "이", "아니", "어떻", "알리"})
_STOP_NOUNS = frozenset({"며칠", "얼마", "설명"})
# English words that say nothing about a passage, as in a question over the documents.
_STOP_WORDS = frozenset(
    " ".join(
        (
            "a an the is are was were be been am of for to in on at by with from as about into",
            "what which who whom whose how when where why do does did done and or not no it its",
            "this that these those there i we you he she they my our your me us can could should",
            "would will shall may might must much many any some please tell show give",
        )
    ).split()
)
_HANGUL = re.compile(r"[가-힣]+")
_EDGE = re.compile(r"^[\W_]+|[\W_]+$")
_MAX_TERM = 64  # characters; longer "words" are noise (base64, hashes)
_MAX_TF = 0xFFFF
# The analyser's version: postings a store holds from another are computed again
# (`DocumentStore.keep_postings_of`). 2: foreign-word pieces joined, edge punctuation off.
ANALYSER = "kiwi-2"

_kiwi: Any = None  # kiwipiepy.Kiwi
_kiwi_lock = threading.Lock()


def kiwi() -> Any:
    """The process's analyser, loaded on first use (a few seconds; its model is ~100 MB)."""
    global _kiwi
    with _kiwi_lock:
        if _kiwi is None:
            from kiwipiepy import Kiwi  # type: ignore[import-untyped]

            loaded = Kiwi()
            loaded.tokenize("")  # Kiwi finishes loading on its first call
            _kiwi = loaded
        return _kiwi


@dataclass(frozen=True)
class Terms:
    """A text's terms in each field, each with its frequency."""

    morphemes: Counter[str]
    grams: Counter[str]
    stems: frozenset[str] = frozenset()  # the morphemes that are verb or adjective stems

    @property
    def words(self) -> int:
        return sum(self.morphemes.values())

    def postings(self) -> Postings:
        morphemes = [(t, n) for t, n in self.morphemes.items() if "\n" not in t]
        grams = [(t, n) for t, n in self.grams.items() if "\n" not in t]
        terms = "\n".join(t for t, _ in morphemes + grams)
        tfs = np.array([min(n, _MAX_TF) for _, n in morphemes + grams], dtype="<u2")
        return Postings(
            words=sum(self.morphemes.values()),
            grams=sum(self.grams.values()),
            split=len(morphemes),
            terms=terms,
            tfs=tfs.tobytes(),
        )


def normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def analyse(texts: Sequence[str]) -> list[Terms]:
    """Each text's morphemes and bigrams."""
    if not texts:
        return []
    analyser = kiwi()
    found = []
    for text in map(normalise, texts):
        with _kiwi_lock:  # one text at a time: a question waits for one chunk at most
            tokens = analyser.tokenize(text)
        found.append(_terms(text, tokens))
    return found


@dataclass(frozen=True)
class _Token:
    form: str
    tag: str
    start: int
    end: int
    place: tuple[int, int]  # (sentence, 어절)


def _tokens(tokens: Iterable[Any]) -> list[_Token]:
    """Kiwi's tokens, with the pieces of an English word it cut (vacation. -> vacat,
    ion.) joined again: foreign-word tokens that touch are one word."""
    found: list[_Token] = []
    for token in tokens:
        start = int(token.start)
        here = _Token(
            str(token.form),
            str(token.tag).split("-")[0],
            start,
            start + int(token.len),
            (int(token.sent_position), int(token.word_position)),
        )
        last = found[-1] if found else None
        if last is not None and here.tag == last.tag == "SL" and last.end == here.start:
            found[-1] = _Token(last.form + here.form, "SL", last.start, here.end, last.place)
        else:
            found.append(here)
    return found


def _terms(text: str, tokens: Iterable[Any]) -> Terms:
    morphemes: Counter[str] = Counter()
    grams: Counter[str] = Counter()
    stems: set[str] = set()
    spans: dict[tuple[int, int], list[int]] = {}  # 어절 -> [start, end] of its kept morphemes
    for token in _tokens(tokens):
        tag = token.tag
        if tag not in _CONTENT:
            continue
        term = _term(token.form, tag)
        if term is None:
            continue
        morphemes[term] += 1
        if tag in _STEMS:
            stems.add(term)
        start, end, place = token.start, token.end, token.place
        span = spans.setdefault(place, [start, end])
        span[0], span[1] = min(span[0], start), max(span[1], end)
    for start, end in spans.values():
        for run in _HANGUL.findall(text[start:end]):
            grams.update(run[i : i + 2] for i in range(len(run) - 1))
    return Terms(morphemes, grams, frozenset(stems))


def _term(form: str, tag: str) -> str | None:
    if (tag in _STEMS and form in _STOP_STEMS) or (tag == "NNG" and form in _STOP_NOUNS):
        return None
    if tag == "SN":
        form = form.replace(",", "")
    elif tag == "SL":
        form = _EDGE.sub("", form)  # Kiwi leaves a full stop on some (GPT.)
    form = form.lower()
    if not form or len(form) > _MAX_TERM or (tag == "SL" and form in _STOP_WORDS):
        return None
    return form


def whitespace_terms(text: str) -> Counter[str]:
    """The baseline's terms: words between spaces, lowercased, punctuation at their ends cut."""
    words = (_EDGE.sub("", word).lower() for word in normalise(text).split())
    return Counter(word for word in words if word and len(word) <= _MAX_TERM)


# -- in memory: one field of one partition ----------------------------------------------


class FieldIndex:
    """One field of one partition, term-major: each term's rows and frequencies."""

    def __init__(
        self, size: int, lengths: NDArray[np.float32], rows: list[int], terms: list[str],
        tfs: NDArray[np.float32],
    ) -> None:  # fmt: skip
        self.size = size
        self.lengths = lengths
        self.total = float(lengths.sum(dtype=np.float64))
        vocabulary: dict[str, int] = {}
        ids = np.fromiter(
            (vocabulary.setdefault(term, len(vocabulary)) for term in terms),
            dtype=np.int32,
            count=len(terms),
        )
        order = np.argsort(ids, kind="stable")
        self.vocabulary = vocabulary
        self.rows = np.asarray(rows, dtype=np.int32)[order]
        self.tfs = tfs[order]
        counts = np.bincount(ids, minlength=len(vocabulary))
        self.offsets = np.zeros(len(vocabulary) + 1, dtype=np.int64)
        np.cumsum(counts, out=self.offsets[1:])

    def postings(self, term: str) -> tuple[NDArray[np.int32], NDArray[np.float32]] | None:
        found = self.vocabulary.get(term)
        if found is None:
            return None
        start, end = int(self.offsets[found]), int(self.offsets[found + 1])
        return self.rows[start:end], self.tfs[start:end]

    def df(self, term: str) -> int:
        found = self.vocabulary.get(term)
        return 0 if found is None else int(self.offsets[found + 1] - self.offsets[found])


class FieldBuilder:
    """Gathers a partition's postings of one field, chunk by chunk, then builds it."""

    def __init__(self) -> None:
        self.lengths: list[int] = []
        self.rows: list[int] = []
        self.terms: list[str] = []
        self.tfs: list[NDArray[np.uint16]] = []

    def add(self, length: int, terms: list[str], tfs: NDArray[np.uint16]) -> None:
        row = len(self.lengths)
        self.lengths.append(length)
        self.rows.extend([row] * len(terms))
        self.terms.extend(terms)
        self.tfs.append(tfs)

    def build(self) -> FieldIndex:
        tfs = (
            np.concatenate(self.tfs).astype(np.float32)
            if self.tfs
            else np.zeros(0, dtype=np.float32)
        )
        lengths = np.asarray(self.lengths, dtype=np.float32)
        return FieldIndex(len(self.lengths), lengths, self.rows, self.terms, tfs)


def decode(postings: Postings) -> tuple[list[str], NDArray[np.uint16]]:
    terms = postings.terms.split("\n") if postings.terms else []
    tfs = np.frombuffer(postings.tfs, dtype="<u2")
    if len(terms) != len(tfs):
        return [], np.zeros(0, dtype="<u2")  # a damaged row counts as an empty chunk
    return terms, tfs


def bm25(
    parts: Sequence[FieldIndex], terms: Iterable[str], weight: float = 1.0
) -> tuple[list[NDArray[np.float32]], dict[str, float]]:
    """Each part's BM25 scores for `terms`, with N, average length and document
    frequencies summed over `parts` alone; and each term's idf."""
    scores = [np.zeros(part.size, dtype=np.float32) for part in parts]
    size = sum(part.size for part in parts)
    if size == 0:
        return scores, {}
    average = sum(part.total for part in parts) / size
    if average <= 0:
        return scores, {}
    norms = [K1 * (1 - B + B * part.lengths / average) for part in parts]
    idfs: dict[str, float] = {}
    for term in dict.fromkeys(terms):
        found = [part.postings(term) for part in parts]
        df = sum(len(hit[0]) for hit in found if hit is not None)
        if df == 0:
            continue
        idf = math.log(1 + (size - df + 0.5) / (df + 0.5))
        idfs[term] = idf
        for score, norm, hit in zip(scores, norms, found, strict=True):
            if hit is None:
                continue
            rows, tfs = hit
            score[rows] += np.float32(weight * idf) * tfs * (K1 + 1) / (tfs + norm[rows])
    return scores, idfs
