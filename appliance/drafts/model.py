"""What a draft is made of: the caller's Draft, and the blocks its Markdown becomes.

The renderers never see Markdown text: `render` parses each section into
blocks once, so the three formats hold the same structure and Markdown
output is those blocks written back, not the model's raw text.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass


@dataclass(frozen=True)
class Marking:
    label: str  # the policy's wording of the classification: "대외비", "Ⅲ급비밀", "공개"
    notice: str | None = None  # the 예고문, already worded; None for unclassified levels
    copy: str | None = None  # the copy number line, already worded; None for unclassified


@dataclass(frozen=True)
class Section:
    heading: str | None  # "질문" / "답변" when a whole conversation is saved
    text: str  # Markdown


@dataclass(frozen=True)
class Draft:
    title: str
    marking: Marking
    sections: tuple[Section, ...]
    created: datetime.datetime  # timezone-aware: metadata and ZIP entry times


@dataclass(frozen=True)
class Run:
    """Text with one formatting; markers such as ** are already gone."""

    text: str
    bold: bool = False
    italic: bool = False
    code: bool = False


Runs = tuple[Run, ...]


@dataclass(frozen=True)
class Heading:
    level: int  # 1-6 in the Markdown; `render` shifts it under the title and section heading
    runs: Runs


@dataclass(frozen=True)
class Paragraph:
    runs: Runs
    preformatted: bool = False  # a fenced code block: one code run, lines kept


@dataclass(frozen=True)
class ListItem:
    runs: Runs  # the item's first paragraph
    children: tuple[Block, ...] = ()  # nested lists, further paragraphs, tables


@dataclass(frozen=True)
class ListBlock:
    ordered: bool
    items: tuple[ListItem, ...]
    start: int = 1  # the first number of an ordered list
    delimiter: str = "."  # "." or ")" of an ordered list


@dataclass(frozen=True)
class Table:
    header: tuple[Runs, ...]
    rows: tuple[tuple[Runs, ...], ...]  # each as wide as the header


Block = Heading | Paragraph | ListBlock | Table


@dataclass(frozen=True)
class Prepared:
    """A Draft made safe and parsed: what every renderer draws.

    `blocks` is the whole body after the title: section headings are level-1
    Headings and each section's own headings sit below them (or at level 1
    when the section has no heading), so every format has one outline.
    """

    title: str
    marking: Marking
    blocks: tuple[Block, ...]
    created: datetime.datetime  # in UTC


def plain(runs: Runs) -> str:
    return "".join(run.text for run in runs)
