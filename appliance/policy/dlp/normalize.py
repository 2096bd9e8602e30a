"""Undo the usual evasions before detection, remembering where each character came from.

Full-width digits and letters become ASCII, dash and dot look-alikes become
'-' and '.', and zero-width characters (and soft hyphens) disappear. Detectors
run on the normalised text; `Normalised.span` maps a finding back to the
original, so redaction masks what the user actually typed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e"
_ZERO_WIDTH = re.compile(f"[{ZERO_WIDTH}]")
_TABLE: dict[int, int | None] = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}
_TABLE.update({ord(dash): ord("-") for dash in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u30fc"})
_TABLE.update({ord(dot): ord(".") for dot in "\u3002\u00b7\u2024\u30fb"})
_TABLE[0x3000] = ord(" ")  # ideographic space


@dataclass(frozen=True)
class Normalised:
    text: str
    origin: list[int] | None  # origin[i]: index in the original of text[i]; None: the same

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span of normalised text[start:end]."""
        if self.origin is None:
            return start, end
        return self.origin[start], self.origin[end - 1] + 1


def normalise(text: str) -> Normalised:
    mapped = text.translate(_TABLE)
    if not _ZERO_WIDTH.search(mapped):
        return Normalised(mapped, None)  # the common case: one C-speed pass
    kept = [(index, char) for index, char in enumerate(mapped) if char not in ZERO_WIDTH]
    return Normalised("".join(char for _, char in kept), [index for index, _ in kept])
