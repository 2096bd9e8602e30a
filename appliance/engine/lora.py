"""LoRA adapters as the engines serve them: the files loaded next to the model, and
the one an answer is given with.

Both backends load every adapter once, unapplied, when the model loads (no copy
of the model per adapter); each answer then names at most one adapter and its
scale, and an answer that names none is the base model's.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

from appliance.errors import EngineError

MAX_SCALE = 4.0


@dataclass(frozen=True)
class AdapterFile:
    """An adapter to load: its name, its file (or `/proc/self/fd/N`, a sealed memfd),
    and the sha256 of its bytes, which the audit log records."""

    name: str
    path: str | os.PathLike[str]
    sha256: str


@dataclass(frozen=True)
class AdapterUse:
    """The adapter one answer is given with, and how strongly (its scale)."""

    name: str
    scale: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.scale) and 0.0 < self.scale <= MAX_SCALE):
            raise EngineError(f"an adapter's scale must be above 0 and at most {MAX_SCALE:g}")


def index_of(loaded: tuple[str, ...], use: AdapterUse | None) -> int | None:
    """Where `use` sits among the loaded adapters; None for the base model alone."""
    if use is None:
        return None
    try:
        return loaded.index(use.name)
    except ValueError:
        raise EngineError(f"the adapter '{use.name}' is not loaded in this engine") from None


def digests(adapters: Sequence[AdapterFile]) -> dict[str, str]:
    """Each loaded adapter's sha256 by name, in load order; names are unique."""
    named = {adapter.name: adapter.sha256 for adapter in adapters}
    if len(named) != len(adapters):
        raise EngineError("two adapters have the same name")
    return named
