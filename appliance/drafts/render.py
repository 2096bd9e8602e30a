"""`render(draft, fmt)`: check and clean a Draft, parse it, and hand it to one renderer.

Everything that reaches python-hwpx or python-docx passes through here first:
characters XML 1.0 cannot hold (and other controls) are removed, the input is
capped so that a huge or deeply nested answer is refused in one sentence
instead of stalling the service, and a library's own exception becomes a
UsageError. The ZIP formats are rewritten with every entry stamped with the
draft's creation time, so the same Draft gives the same bytes.
"""

from __future__ import annotations

import datetime
import io
import re
import zipfile
from collections.abc import Callable, Iterable

from appliance.drafts.markdown import parse_markdown
from appliance.drafts.model import (
    Block,
    Draft,
    Heading,
    Marking,
    Paragraph,
    Prepared,
    Run,
    Runs,
    Table,
)
from appliance.errors import UsageError

FORMATS = ("hwpx", "docx", "md")
MAX_TEXT_BYTES = 2_000_000  # UTF-8 bytes of the title, marking and sections together
# What rendering costs, in units: a run of text (a paragraph has at least one), a
# line of a code block, and two for a table cell. python-hwpx takes about 1 ms a
# unit, and a paragraph's runs cost it quadratically, hence the second cap.
MAX_UNITS = 10_000
MAX_RUNS = 200  # formatted pieces in one paragraph
MAX_HEADING_LEVEL = 5  # the title sits above level 1; Markdown output has six levels in all

# C0 controls but tab and newline (CR is made a newline first), DEL, C1 controls,
# surrogates (lone ones cannot be encoded) and the two non-characters XML forbids.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def render(draft: Draft, fmt: str) -> bytes:
    """The draft as a file of format `fmt` (one of FORMATS)."""
    renderer = _renderer(fmt)
    prepared = prepare(draft)
    try:
        data = renderer(prepared)
        return data if fmt == "md" else restamp(data, prepared.created)
    except UsageError:
        raise
    except Exception as exc:  # a library's failure is not the user's traceback
        raise UsageError(
            f"the draft could not be rendered as {fmt.upper()}", code="draft_failed"
        ) from exc


def _renderer(fmt: str) -> Callable[[Prepared], bytes]:
    if fmt == "hwpx":
        from appliance.drafts.hwpx import render_hwpx

        return render_hwpx
    if fmt == "docx":
        from appliance.drafts.docx import render_docx

        return render_docx
    if fmt == "md":
        from appliance.drafts.md import render_md

        return render_md
    raise UsageError(
        f"a draft is one of {', '.join(FORMATS)}, not {str(fmt)[:20]!r}", code="draft_invalid"
    )


def prepare(draft: Draft) -> Prepared:
    """The draft checked, cleaned and parsed; UsageError(draft_invalid) when it cannot be."""
    created = draft.created
    if not isinstance(created, datetime.datetime) or created.utcoffset() is None:
        raise UsageError("a draft's creation time must carry its time zone", code="draft_invalid")
    marking = draft.marking
    texts = [draft.title, marking.label, marking.notice or "", marking.copy or ""]
    for section in draft.sections:
        texts += [section.heading or "", section.text]
    size = sum(len(text.encode("utf-8", "surrogatepass")) for text in texts)
    if size > MAX_TEXT_BYTES:
        raise UsageError(
            f"the draft holds {size:,} bytes of text; a draft holds at most {MAX_TEXT_BYTES:,}",
            code="draft_invalid",
        )
    label = line(marking.label)
    if not label:
        raise UsageError("a draft must carry its classification marking", code="draft_invalid")
    notice, copy = line(marking.notice or ""), line(marking.copy or "")
    blocks: list[Block] = []
    for section in draft.sections:
        heading = line(section.heading or "")
        if heading:
            blocks.append(Heading(1, (Run(heading),)))
        shift = 1 if heading else 0
        blocks.extend(_shifted(parse_markdown(clean(section.text)), shift))
    units = _units(blocks)
    if units > MAX_UNITS:
        raise UsageError(
            f"the draft is too long to render: {units:,} paragraphs, lines, table cells and "
            f"formatted pieces, where a draft has at most {MAX_UNITS:,}",
            code="draft_invalid",
        )
    return Prepared(
        title=line(draft.title),
        marking=Marking(label, notice or None, copy or None),
        blocks=tuple(blocks),
        created=created.astimezone(datetime.UTC),
    )


def clean(text: str) -> str:
    """`text` with line ends made "\\n" and every character XML 1.0 cannot hold removed."""
    return _UNSAFE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def line(text: str) -> str:
    """`text` cleaned and made one line, for titles and markings."""
    return " ".join(clean(text).split())


def _shifted(blocks: Iterable[Block], shift: int) -> Iterable[Block]:
    for block in blocks:
        if isinstance(block, Heading):
            block = Heading(min(block.level + shift, MAX_HEADING_LEVEL), block.runs)
        yield block


def _units(blocks: Iterable[Block]) -> int:
    total = 0
    for block in blocks:
        if isinstance(block, Heading | Paragraph):
            total += _cost(block.runs)
        elif isinstance(block, Table):
            total += sum(1 + _cost(cell) for row in (block.header, *block.rows) for cell in row)
        else:
            total += sum(_cost(item.runs) + _units(item.children) for item in block.items)
    return total


def _cost(runs: Runs) -> int:
    if len(runs) > MAX_RUNS:
        raise UsageError(
            f"a paragraph of the draft changes formatting {len(runs):,} times; "
            f"a draft's paragraphs do so at most {MAX_RUNS} times",
            code="draft_invalid",
        )
    return max(1, len(runs)) + sum(run.text.count("\n") for run in runs)


def restamp(data: bytes, created: datetime.datetime) -> bytes:
    """The ZIP `data` rewritten in the same order with every entry stamped `created`.

    Both libraries stamp entries with the current time; this is what makes
    two renderings of one Draft the same bytes.
    """
    moment = created.astimezone(datetime.UTC)
    year = min(max(moment.year, 1980), 2107)
    stamp = (year, moment.month, moment.day, moment.hour, moment.minute, moment.second)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for entry in source.infolist():
            info = zipfile.ZipInfo(entry.filename, date_time=stamp)
            info.compress_type = entry.compress_type
            info.external_attr = 0o644 << 16
            target.writestr(info, source.read(entry))
    return out.getvalue()
