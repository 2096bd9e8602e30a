"""Whether turns may go to GPU servers on the closed network (docs/formats/policy.md,
[remote]). Which servers, where and with which certificates is the site's business
(the home's config.toml, `[[remote]]`); the policy only says whether any may be
used, up to which label, and what becomes of a turn above it. Absent keys fail
closed: no remote engine, the lowest level only, refused above it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from appliance.policy.schema import Level, _Reader

ABOVE = ("refuse", "local")


@dataclass(frozen=True)
class RemoteRules:
    allowed: bool = False
    max_level: str | None = None  # None: the lowest level only
    above: str = "refuse"  # a turn above the endpoints' level: "refuse", or answer it "local"ly


def read_remote(reader: _Reader, raw: Any, levels: tuple[Level, ...]) -> RemoteRules:
    table = reader.table(raw, "remote", {"allowed", "max_level", "above"}, set())
    values: dict[str, Any] = {}
    if "allowed" in table:
        values["allowed"] = reader.typed(table["allowed"], "remote.allowed", bool)
    if "max_level" in table:
        level_id = reader.typed(table["max_level"], "remote.max_level", str)
        if level_id not in [level.id for level in levels]:
            raise reader.fail("remote.max_level", f"no level '{level_id}'")
        values["max_level"] = level_id
    if "above" in table:
        values["above"] = reader.choice(table["above"], "remote.above", ABOVE)
    return RemoteRules(**values)
