"""A small Markdown block parser: the subset language models write, nothing more.

ATX headings, paragraphs, bullet and ordered lists nested by indentation,
GFM pipe tables, fenced code blocks, and inline bold, italic and code. Two
deliberate departures from CommonMark, for Korean administrative text: a
line that starts with a 공문 item mark ("가.", "나)", "(1)", "①") starts a
new paragraph instead of joining the line above, so "가. … / 나. …" stay
separate items; and thematic breaks (---) are dropped, since no format here
has a use for them. Every pattern is linear in its input (no nested
unbounded repetition), because the text comes from a model and from users.
"""

from __future__ import annotations

import re

from appliance.drafts.model import Block, Heading, ListBlock, ListItem, Paragraph, Run, Runs, Table
from appliance.errors import UsageError

MAX_DEPTH = 8  # lists inside lists
MAX_TABLE_ROWS = 2000
MAX_TABLE_COLUMNS = 50

_HEADING = re.compile(r" {0,3}(#{1,6})(?:[ \t]|$)")
_FENCE = re.compile(r"( {0,3})(`{3,}|~{3,})")
_ITEM = re.compile(r"( *)(?:([-*+])|(\d{1,9})([.)]))(?:[ \t]+(.*)|$)")
_BREAK = re.compile(r" {0,3}(?:(?:\*[ \t]*){3,}|(?:-[ \t]*){3,}|(?:_[ \t]*){3,})$")
_KOREAN_MARK = re.compile(r"\s*(?:[가나다라마바사아자차카타파하][.)]|\([\d가-힣]{1,3}\)|[①-⑳])\s")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_SEPARATOR_CELL = re.compile(r":?-+:?")
_INLINE = re.compile(
    r"\\(?P<esc>[\\`*_{}\[\]()#+\-.!|~>])"
    r"|``(?P<c2>(?:[^`]|`(?!`))+?)``"
    r"|`(?P<c1>[^`]+)`"
    r"|\*\*\*(?=[^\s*])(?P<bi>(?:[^*\\]|\\.)+?)\*\*\*"
    r"|\*\*(?=\S)(?P<b1>(?:[^*\\]|\\.|\*(?!\*))+?)\*\*"
    r"|(?<!\w)__(?=\S)(?P<b2>(?:[^_\\]|\\.|_(?!_))+?)__(?!\w)"
    r"|\*(?=[^\s*])(?P<i1>(?:[^*\\]|\\.)+?)\*"
    r"|(?<!\w)_(?=[^\s_])(?P<i2>(?:[^_\\]|\\.)+?)_(?!\w)"
)


def parse_markdown(text: str) -> tuple[Block, ...]:
    """The blocks of `text`; raises UsageError(draft_invalid) past the limits above."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return tuple(_blocks([_indent_tabs(line) for line in lines], 0))


def _indent_tabs(line: str) -> str:
    """Tabs in a line's indentation as spaces (to the next multiple of 4); others kept."""
    body = line.lstrip(" \t")
    return line[: len(line) - len(body)].expandtabs(4) + body


def escape_start(text: str) -> str:
    """`text` with a backslash where, at the start of a line, it would open a block."""
    item = _ITEM.match(text)
    if item and item.group(3) is not None:  # "1. x" is escaped as "1\. x"
        digits = len(item.group(1)) + len(item.group(3))
        return f"{text[:digits]}\\{text[digits:]}"
    if item or _HEADING.match(text) or _BREAK.match(text) or _FENCE.match(text):
        stripped = text.lstrip(" ")
        return f"{text[: len(text) - len(stripped)]}\\{stripped}"
    return text


def parse_inline(text: str, bold: bool = False, italic: bool = False) -> Runs:
    """Runs of `text`: the markers become formatting, backslash escapes their character."""
    runs: list[Run] = []
    position = 0
    for match in _INLINE.finditer(text):
        _add(runs, Run(text[position : match.start()], bold, italic))
        position = match.end()
        kind = match.lastgroup
        value = match.group(kind or 0)
        if kind == "esc":
            _add(runs, Run(value, bold, italic))
        elif kind in ("c1", "c2"):
            code = value[1:-1] if value[:1] == value[-1:] == " " and value.strip() else value
            _add(runs, Run(code, bold, italic, code=True))
        else:  # emphasis: its text is parsed again, for the markers inside it
            strong, slanted = kind in ("bi", "b1", "b2"), kind in ("bi", "i1", "i2")
            for run in parse_inline(value, bold or strong, italic or slanted):
                _add(runs, run)
    _add(runs, Run(text[position:], bold, italic))
    return tuple(runs)


def _add(runs: list[Run], run: Run) -> None:
    """Append, merging with the last run when the formatting is the same."""
    if not run.text:
        return
    last = runs[-1] if runs else None
    if last and (last.bold, last.italic, last.code) == (run.bold, run.italic, run.code):
        runs[-1] = Run(last.text + run.text, run.bold, run.italic, run.code)
    else:
        runs.append(run)


def _blocks(lines: list[str], depth: int) -> list[Block]:
    if depth > MAX_DEPTH:
        raise UsageError(f"the text nests lists more than {MAX_DEPTH} deep", code="draft_invalid")
    blocks: list[Block] = []
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            blocks.append(Paragraph(parse_inline(" ".join(paragraph))))
            paragraph.clear()

    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.strip():
            flush()
            index += 1
        elif fence := _FENCE.match(line):
            flush()
            index = _code(lines, index, fence, blocks)
        elif heading := _HEADING.match(line):
            flush()
            blocks.append(Heading(len(heading.group(1)), parse_inline(_heading_text(line))))
            index += 1
        elif _BREAK.match(line):
            flush()
            index += 1
        elif _ITEM.match(line):
            flush()
            index = _list(lines, index, depth, blocks)
        elif "|" in line and index + 1 < len(lines) and _is_separator(line, lines[index + 1]):
            flush()
            index = _table(lines, index, blocks)
        else:
            if _KOREAN_MARK.match(line):
                flush()
            paragraph.append(line.strip())
            index += 1
    flush()
    return blocks


def _code(lines: list[str], index: int, fence: re.Match[str], blocks: list[Block]) -> int:
    """A fenced code block, kept verbatim (less the fence's own indentation)."""
    indent, marker = len(fence.group(1)), fence.group(2)
    body: list[str] = []
    index += 1
    while index < len(lines):
        line = lines[index]
        stripped = line.strip()
        if stripped.startswith(marker) and not stripped.strip(marker[0]):
            index += 1
            break
        body.append(line[min(indent, _indent(line)) :])
        index += 1
    blocks.append(Paragraph((Run("\n".join(body), code=True),), preformatted=True))
    return index


def _list(lines: list[str], index: int, depth: int, blocks: list[Block]) -> int:
    """A list: items of the first item's kind at its indentation; deeper lines are theirs."""
    first = _ITEM.match(lines[index])
    assert first is not None
    indent, ordered, delimiter = len(first.group(1)), first.group(3) is not None, first.group(4)
    items: list[ListItem] = []
    while index < len(lines):
        match = _ITEM.match(lines[index])
        if (
            match is None
            or len(match.group(1)) != indent
            or (match.group(3) is not None) != ordered
            or match.group(4) != delimiter
        ):
            break
        body = [match.group(5) or ""]
        index += 1
        while index < len(lines):
            line = lines[index]
            if line.strip():
                if _indent(line) <= indent:
                    break
                body.append(line)
                index += 1
                continue
            ahead = index  # blank lines stay in the item only if it goes on after them
            while ahead < len(lines) and not lines[ahead].strip():
                ahead += 1
            if ahead < len(lines) and _indent(lines[ahead]) > indent:
                body.extend(lines[index:ahead])
                index = ahead
            else:
                break
        items.append(_item(body, depth))
        while index < len(lines) and not lines[index].strip():
            ahead = index + 1
            while ahead < len(lines) and not lines[ahead].strip():
                ahead += 1
            following = _ITEM.match(lines[ahead]) if ahead < len(lines) else None
            if following is None or len(following.group(1)) != indent:
                break
            index = ahead
    start = int(first.group(3)) if ordered else 1
    blocks.append(ListBlock(ordered, tuple(items), start, delimiter or "."))
    return index


def _item(body: list[str], depth: int) -> ListItem:
    """An item from its first line's text and its deeper lines, dedented together."""
    rest = body[1:]
    margin = min((_indent(line) for line in rest if line.strip()), default=0)
    inner = _blocks([body[0], *(line[margin:] for line in rest)], depth + 1)
    if inner and isinstance(inner[0], Paragraph) and not inner[0].preformatted:
        return ListItem(inner[0].runs, tuple(inner[1:]))
    return ListItem((), tuple(inner))


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _cells(line: str) -> list[str]:
    cells = _CELL_SPLIT.split(line.strip())
    if cells and not cells[0].strip():
        cells = cells[1:]
    if cells and not cells[-1].strip() and line.rstrip().endswith("|"):
        cells = cells[:-1]
    return [cell.strip() for cell in cells]


def _is_separator(header: str, line: str) -> bool:
    """GFM's delimiter row under `header` (a bare "---" only under a one-cell header)."""
    cells = _cells(line)
    if not cells or not all(_SEPARATOR_CELL.fullmatch(cell) for cell in cells):
        return False
    return "|" in line or len(_cells(header)) == 1


def _heading_text(line: str) -> str:
    """An ATX heading's text, less its opening and optional closing run of #."""
    text = line.strip().lstrip("#").strip()
    bare = text.rstrip("#")
    if bare != text and (not bare or bare[-1] in " \t"):
        text = bare.rstrip()
    return text


def _table(lines: list[str], index: int, blocks: list[Block]) -> int:
    """A pipe table: rows padded or cut to the header's width."""
    header = _cells(lines[index])
    width = len(header)
    if width > MAX_TABLE_COLUMNS:
        raise UsageError(
            f"a table has {width} columns; a draft's tables have at most {MAX_TABLE_COLUMNS}",
            code="draft_invalid",
        )
    rows: list[tuple[Runs, ...]] = []
    index += 2
    while index < len(lines) and lines[index].strip() and "|" in lines[index]:
        if len(rows) == MAX_TABLE_ROWS:
            raise UsageError(
                f"a table has more than {MAX_TABLE_ROWS} rows, the most a draft's table has",
                code="draft_invalid",
            )
        cells = (_cells(lines[index]) + [""] * width)[:width]
        rows.append(tuple(parse_inline(cell) for cell in cells))
        index += 1
    blocks.append(Table(tuple(parse_inline(cell) for cell in header), tuple(rows)))
    return index
