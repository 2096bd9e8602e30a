"""Undo the usual evasions before detection, remembering where each character came from.

Detectors see the text as a reader would. Each character is decomposed
(NFKD: full-width, mathematical, circled and superscript forms, Roman numerals,
compatibility jamo); marks, format and bidi controls, variation selectors,
Hangul fillers and other invisible characters are dropped; decomposed Hangul is
composed again; every run of spaces becomes one space (or one line break);
every dash a hyphen, dot look-alikes a full stop, every decimal digit ASCII,
and Latin look-alikes from other scripts Latin. `digits` is the same text with
O, o, I and l read as digits inside numbers. `Normalised.span` maps a finding
back to the original, so redaction masks exactly what the user typed.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left
from dataclasses import dataclass
from functools import lru_cache

from appliance.policy.dlp.lookalikes import (
    BLANKS,
    CONFUSABLES,
    DASHES,
    DOTS,
    LINE_BREAKS,
    ignorable,
)

# Characters normalisation leaves as they are: the common case skips all the work.
_PLAIN = "\n -~\u2018-\u201d\uac00-\ud7a3\u4e00-\u9fff"
_SPECIAL = re.compile(f"[^{_PLAIN}]+|\\s{{2,}}")
_SPACES = (" ", "\n")


@dataclass(frozen=True)
class Normalised:
    text: str
    digits: str  # `text` with O, o, I and l read as digits inside numbers (same length)
    starts: list[int] | None  # starts[i]: where text[i] begins in the original; None: in place
    ends: list[int] | None  # ends[i]: where it ends
    size: int  # the original's length

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span that covers normalised text[start:end]."""
        if self.starts is None or self.ends is None:
            return start, end
        return self.starts[start], self.ends[end - 1]

    def origin(self, index: int) -> int:
        """Where normalised text[index:] begins in the original."""
        if self.starts is None:
            return min(index, self.size)
        return self.starts[index] if index < len(self.starts) else self.size

    def index(self, position: int) -> int:
        """The first normalised character that begins at or after original `position`."""
        return position if self.starts is None else bisect_left(self.starts, position)


def normalise(text: str) -> Normalised:
    if _SPECIAL.search(text) is None:
        return Normalised(text, _digit_view(text), None, None, len(text))
    out = _Builder()
    done = 0
    for match in _SPECIAL.finditer(text):
        out.plain(text, done, match.start())
        for index in range(match.start(), match.end()):
            for char in fold(text[index]):
                out.add(char, index, index + 1)
        done = match.end()
    out.plain(text, done, len(text))
    folded = "".join(out.chars)
    return Normalised(folded, _digit_view(folded), out.starts, out.ends, len(text))


def remap(inner: Normalised, starts: list[int], ends: list[int], size: int) -> Normalised:
    """`inner` normalises a rearranged text whose character i came from starts[i]:ends[i]."""
    if inner.starts is None or inner.ends is None:
        return Normalised(inner.text, inner.digits, starts, ends, size)
    return Normalised(
        inner.text,
        inner.digits,
        [starts[i] for i in inner.starts],
        [ends[i - 1] for i in inner.ends],
        size,
    )


@lru_cache(maxsize=8192)
def fold(char: str) -> str:
    """What one character is to the detectors: '' for an invisible one."""
    if char in CONFUSABLES or char in DASHES:  # before NFKD, which splits ㅡ into a jamo
        return _fold_one(char)
    return "".join(_fold_one(part) for part in unicodedata.normalize("NFKD", char))


def _fold_one(char: str) -> str:
    if char in CONFUSABLES:
        return CONFUSABLES[char]
    if char in LINE_BREAKS:
        return "\n"
    if char.isspace() or char in BLANKS:
        return " "
    category = unicodedata.category(char)
    if category[0] == "M" or category in ("Cf", "Cc") or ignorable(char):
        return ""
    if category == "Pd" or char in DASHES:
        return "-"
    if char in DOTS:
        return "."
    if category == "Nd":
        return str(unicodedata.decimal(char))
    return char


class _Builder:
    """The normalised characters and the original span of each."""

    def __init__(self) -> None:
        self.chars: list[str] = []
        self.starts: list[int] = []
        self.ends: list[int] = []

    def plain(self, text: str, start: int, end: int) -> None:
        if start < end and text[start] in _SPACES and self.chars:
            self.add(text[start], start, start + 1)  # may join a run of spaces
            start += 1
        self.chars.extend(text[start:end])
        self.starts.extend(range(start, end))
        self.ends.extend(range(start + 1, end + 1))

    def add(self, char: str, start: int, end: int) -> None:
        last = self.chars[-1] if self.chars else ""
        if char in _SPACES and last in _SPACES and last:
            self.chars[-1] = "\n" if "\n" in (char, last) else " "  # one separator
            self.ends[-1] = end
        elif (syllable := _compose(last, char)) is not None:
            self.chars[-1] = syllable
            self.ends[-1] = end
        else:
            self.chars.append(char)
            self.starts.append(start)
            self.ends.append(end)


def _compose(last: str, char: str) -> str | None:
    """Conjoining jamo back into a Hangul syllable, as NFC does: L+V, then LV+T."""
    if not last:
        return None
    lead, follow = ord(last), ord(char)
    if 0x1100 <= lead <= 0x1112 and 0x1161 <= follow <= 0x1175:
        return chr(0xAC00 + ((lead - 0x1100) * 21 + follow - 0x1161) * 28)
    if 0xAC00 <= lead <= 0xD7A3 and (lead - 0xAC00) % 28 == 0 and 0x11A8 <= follow <= 0x11C2:
        return chr(lead + follow - 0x11A7)
    return None


# Letters typed for digits (O for 0, I or l for 1), read as digits only inside a
# run of digit groups (02) 748-1234) that holds at least four real digits.
_OTHER_LETTER = "[A-HJ-NP-Za-km-np-z]"  # any Latin letter but O, o, I and l
_NEAR_DIGIT = re.compile(
    rf"[0-9][-. )]?[OoIl](?!{_OTHER_LETTER})|(?<!{_OTHER_LETTER})[OoIl][-. )]?[0-9]"
)
_NUMBER = re.compile(r"(?<![A-Za-z0-9])[0-9OoIl]+(?:(?:[-. ]|\) ?)[0-9OoIl]+)*(?![A-Za-z0-9])")
_AS_DIGITS = str.maketrans("OoIl", "0011")


def _digit_view(text: str) -> str:
    if _NEAR_DIGIT.search(text) is None:
        return text

    def read(match: re.Match[str]) -> str:
        run = match.group()
        folded = run.translate(_AS_DIGITS)
        return folded if folded != run and sum(map(str.isdigit, run)) >= 4 else run

    return _NUMBER.sub(read, text)
