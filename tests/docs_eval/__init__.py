"""An evaluation set for retrieval and answers over Korean defence-administration documents.

`documents()` gives the documents as real files (HWPX, HWP 5, DOCX, PDF,
text, Markdown) with what the set declares about each; `questions()` gives
the questions with their gold document and answer span. Both are the same
on every run.
"""

from __future__ import annotations

from tests.docs_eval.corpus import CONFUSABLE, SPECS, Document, Meta, documents
from tests.docs_eval.questions import QUESTIONS, Question, questions

__all__ = [
    "CONFUSABLE",
    "QUESTIONS",
    "SPECS",
    "Document",
    "Meta",
    "Question",
    "documents",
    "holds_span",
    "normalise",
    "questions",
]

OVERLAP_CHARS = 8  # the least of a span a passage must hold to count, when it holds a part


def normalise(text: str) -> str:
    """Whitespace runs as one space: how spans and passages are compared across formats."""
    return " ".join(text.split())


def holds_span(passage: str, span: str) -> bool:
    """Whether a passage overlaps the answer span: it holds the span, lies within it,
    or one's end is the other's start (the span cut across two passages), by at least
    OVERLAP_CHARS characters or the whole span."""
    passage, span = normalise(passage), normalise(span)
    if span in passage or passage in span:
        return True
    least = min(OVERLAP_CHARS, len(span))
    for size in range(len(span) - 1, least - 1, -1):
        if passage.endswith(span[:size]) or passage.startswith(span[-size:]):
            return True
    return False
