"""Markdown output: the parsed blocks written back, between two marking lines.

The first and the last line are the marking (`**대외비**`); the copy number
and then the 예고문 follow the first line as paragraphs of their own. Text is
re-emitted from the blocks, escaped where it would otherwise read as markup,
so that parsing the file again gives the blocks that HWPX and DOCX hold.
"""

from __future__ import annotations

import re

from appliance.drafts.markdown import escape_start as _start
from appliance.drafts.model import Block, Heading, ListBlock, Paragraph, Prepared, Run, Runs

_SPECIAL = re.compile(r"([\\`*_])")
_CELL_SPECIAL = re.compile(r"([\\`*_|])")
_BACKTICKS = re.compile(r"`+")


def render_md(doc: Prepared) -> bytes:
    mark = f"**{_escape(doc.marking.label)}**"
    lines = [mark]
    for extra in (doc.marking.copy, doc.marking.notice):
        if extra:
            lines += ["", _start(_escape(extra))]
    if doc.title:
        lines += ["", f"# {_escape(doc.title)}"]
    for block in doc.blocks:
        lines += ["", *_block(block)]
    lines += ["", mark]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _block(block: Block) -> list[str]:
    if isinstance(block, Heading):
        return [f"{'#' * (block.level + 1)} {_inline(block.runs)}".rstrip()]
    if isinstance(block, Paragraph):
        if block.preformatted:
            text = "".join(run.text for run in block.runs)
            longest = max((len(m) for m in _BACKTICKS.findall(text)), default=0)
            fence = "`" * max(3, longest + 1)
            return [fence, *text.split("\n"), fence]
        return [_start(_inline(block.runs))]
    if isinstance(block, ListBlock):
        return _list(block)
    width = len(block.header)
    lines = [_row(block.header), "|" + "---|" * width]
    return lines + [_row(row) for row in block.rows]


def _list(block: ListBlock) -> list[str]:
    lines: list[str] = []
    for number, item in enumerate(block.items, block.start):
        marker = f"{number}{block.delimiter}" if block.ordered else "-"
        pad = " " * (len(marker) + 1)
        lines.append(f"{marker} {_start(_inline(item.runs))}".rstrip())
        for child in item.children:
            if not isinstance(child, ListBlock):
                lines.append("")
            lines += [pad + text if text else "" for text in _block(child)]
    return lines


def _row(cells: tuple[Runs, ...]) -> str:
    return "| " + " | ".join(_inline(cell, _CELL_SPECIAL) for cell in cells) + " |"


def _inline(runs: Runs, special: re.Pattern[str] = _SPECIAL) -> str:
    return "".join(_run(run, special) for run in runs)


def _run(run: Run, special: re.Pattern[str]) -> str:
    """One run with its markers; spaces stay outside emphasis markers so that they parse."""
    if not run.text.strip():
        return run.text
    if run.code and "``" not in run.text:
        ticks = "``" if "`" in run.text else "`"
        pad = " " if run.text[0] in " `" or run.text[-1] in " `" else ""
        lead, core, trail = "", f"{ticks}{pad}{run.text}{pad}{ticks}", ""
    else:
        core = run.text.strip(" ")
        lead = run.text[: run.text.index(core)]
        trail = run.text[len(lead) + len(core) :]
        core = special.sub(r"\\\1", core)
    marks = ("***" if run.italic else "**") if run.bold else ("*" if run.italic else "")
    return f"{lead}{marks}{core}{marks}{trail}"


def _escape(text: str) -> str:
    return _SPECIAL.sub(r"\\\1", text)
