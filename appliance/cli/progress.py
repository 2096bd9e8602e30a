"""Progress bars for long operations: drawn on a terminal, silent in pipes."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

ByteProgress = Callable[[int, int], None]


@contextlib.contextmanager
def byte_progress(description: str) -> Iterator[ByteProgress | None]:
    """Yield a (done, total) callback drawing a bar on stderr, or None in a pipe."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with _bar(description, columns) as update:
        yield update


@contextlib.contextmanager
def step_progress(description: str) -> Iterator[ByteProgress | None]:
    """Like `byte_progress`, counting steps (windows of text) instead of bytes."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with _bar(description, columns) as update:
        yield update


@contextlib.contextmanager
def _bar(description: str, columns: tuple[Any, ...]) -> Iterator[ByteProgress]:
    """A transient bar on stderr with `columns`; yields the update callback."""
    from rich.console import Console
    from rich.progress import Progress

    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update
