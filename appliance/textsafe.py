"""Text from users and stored data, made safe to show on a terminal or in the UI.

A prompt, a model's file name or metadata, an OS account name or any field of
an audit record can hold escape sequences (which a terminal obeys), line
breaks (which forge lines of output) or bidirectional controls (which reorder
what the reader sees). `printable` writes each such character as a visible
escape (`\\x1b`, `\\n`, `\\u202e`), so the reader sees that it was there and
nothing reaches the terminal raw. Korean and every other printable text is
kept as it is. Backslashes are kept too: the result is for reading, and
`--json` output is the exact record.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

# Cc: C0 and C1 controls and DEL. Cf: format characters, among them the bidi
# overrides and isolates (U+202A-U+202E, U+2066-U+2069), marks and zero-width
# characters. Zl, Zp: line and paragraph separators. Cs: lone surrogates,
# which cannot even be encoded for output.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """`text` with every control, format and separator character written visibly."""
    if text.isprintable():  # the common case: nothing to escape
        return text
    return "".join(_escape(char) for char in text)


def json_line(value: Any, indent: int | None = None) -> str:
    """`value` as JSON (one line unless `indent`), non-ASCII text readable but terminal-safe.

    json.dumps escapes C0 controls itself; with ensure_ascii=False it leaves
    DEL, C1 controls (U+009B is CSI to a UTF-8 terminal) and bidi controls
    raw. Those are written as `\\uXXXX` escapes, which decode to the same
    value: the line is still the exact record.
    """
    text = json.dumps(value, ensure_ascii=False, indent=indent)
    if text.replace("\n", "").isprintable():
        return text
    # json.dumps never leaves a newline raw inside a string: one here is indentation.
    return "".join(char if char == "\n" else _json_escape(char) for char in text)


def _json_escape(char: str) -> str:
    if unicodedata.category(char) not in _UNSAFE_CATEGORIES:
        return char
    code = ord(char)
    if code > 0xFFFF:  # JSON escapes beyond the BMP as a surrogate pair
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def _escape(char: str) -> str:
    if unicodedata.category(char) not in _UNSAFE_CATEGORIES:
        return char  # printable, or a space such as U+3000 that only looks like one
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
