"""Which LoRA adapter serves which turns (docs/formats/policy.md, [[adapters]]).

An adapter further trained on defence data carries what it was trained on, so
it is itself classified: only users cleared to its level are served with it,
and every answer it helps write is labelled at least that. Absent keys fail
closed: no rule, no adapter; no `levels`, the lowest level only; no
`classification`, the policy's highest level.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from appliance.identity.roles import ROLES

if TYPE_CHECKING:
    from appliance.policy.schema import Level, _Reader

MAX_RULES = 16
MAX_SCALE = 4.0  # as the engines accept (engine/lora.py)


@dataclass(frozen=True)
class AdapterRule:
    name: str
    scale: float
    roles: tuple[str, ...]
    levels: tuple[str, ...]  # the turn labels it serves
    classification: str  # the adapter's own level

    def serves(self, role: str, label: Level, clearance: Level, own: Level) -> bool:
        return role in self.roles and label.id in self.levels and clearance.rank >= own.rank


def choose(
    rules: tuple[AdapterRule, ...],
    role: str,
    label: Level,
    clearance: Level,
    levels: dict[str, Level],
    loaded: Collection[str],
) -> AdapterRule | None:
    """The first rule that serves this turn with an adapter the engine has loaded."""
    for rule in rules:
        own = levels[rule.classification]
        if rule.name in loaded and rule.serves(role, label, clearance, own):
            return rule
    return None


def read_adapters(reader: _Reader, raw: Any, levels: tuple[Level, ...]) -> tuple[AdapterRule, ...]:
    entries = reader.typed(raw, "adapters", list)
    if len(entries) > MAX_RULES:
        raise reader.fail("adapters", f"at most {MAX_RULES} rules")
    ids = [level.id for level in levels]
    rules = []
    for index, entry in enumerate(entries):
        key = f"adapters[{index}]"
        item = reader.table(
            entry, key, {"name", "scale", "roles", "levels", "classification"}, {"name", "roles"}
        )
        name = reader.identifier(item["name"], f"{key}.name")
        scale = item.get("scale", 1.0)
        if isinstance(scale, bool) or not isinstance(scale, int | float):
            raise reader.fail(f"{key}.scale", "must be a number")
        if not (math.isfinite(scale) and 0 < scale <= MAX_SCALE):
            raise reader.fail(f"{key}.scale", f"must be above 0 and at most {MAX_SCALE:g}")
        roles = _names(reader, item["roles"], f"{key}.roles", ROLES)
        served = _names(reader, item.get("levels", [ids[0]]), f"{key}.levels", tuple(ids))
        classification = item.get("classification", ids[-1])
        if reader.typed(classification, f"{key}.classification", str) not in ids:
            raise reader.fail(f"{key}.classification", f"no level '{classification}'")
        rules.append(AdapterRule(name, float(scale), roles, served, classification))
    return tuple(rules)


def _names(reader: _Reader, raw: Any, key: str, known: tuple[str, ...]) -> tuple[str, ...]:
    values = reader.typed(raw, key, list)
    if not values or not all(isinstance(value, str) and value in known for value in values):
        raise reader.fail(key, f"must be a non-empty list of: {', '.join(known)}")
    return tuple(dict.fromkeys(values))
