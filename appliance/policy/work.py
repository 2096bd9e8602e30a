"""What a policy says about work products: which labels a draft may carry out of
the appliance, how its marking is worded, and the task presets staff pick from
(docs/formats/policy.md, [drafts] and [[tasks]])."""

from __future__ import annotations

import datetime
import string
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from appliance.policy.schema import Level, _Reader

MAX_TASKS = 32
MAX_SYSTEM = 16_384  # characters of a preset's system prompt
MAX_WORDING = 200
WORDING = {  # (ko, en) defaults; a site's policy may word them its own way
    "notice": (
        "예고문: {until}까지 {level}, 이후 일반문서로 재분류",
        "Declassify on {until}: {level} until then",
    ),
    "copy": ("사본 번호: 제{copy}호", "Copy No. {copy}"),
}
FIELDS = {"notice": {"until", "level"}, "copy": {"copy"}}


@dataclass(frozen=True)
class DraftRules:
    """Absent keys fail closed: a draft leaves at the lowest level only, every level
    above the lowest carries a notice and a copy number, protected for 30 years."""

    max_level: str | None = None  # the highest label a draft may carry; None: the lowest
    classified_from: str | None = None  # notice and copy number from here up; None: above lowest
    protect_years: int = 30
    notice: str | None = None  # None: WORDING's, in the policy's language
    copy: str | None = None

    def wording(self, key: str, language: str) -> str:
        own = self.notice if key == "notice" else self.copy
        return own if own is not None else WORDING[key][0 if language == "ko" else 1]

    def until(self, today: datetime.date) -> datetime.date:
        """The end of the protection period: the last day of the year it ends in."""
        return datetime.date(today.year + self.protect_years, 12, 31)


@dataclass(frozen=True)
class Task:
    """A preset: a system prompt and a few sampling options, picked by name."""

    id: str
    ko: str
    en: str
    system: str
    max_tokens: int | None = None
    temperature: float | None = None

    def name(self, language: str) -> str:
        return self.ko if language == "ko" else self.en


def read_drafts(reader: _Reader, raw: Any, levels: tuple[Level, ...]) -> DraftRules:
    keys = {"max_level", "classified_from", "protect_years", "notice", "copy"}
    table = reader.table(raw, "drafts", keys, set())
    ids = [level.id for level in levels]
    values: dict[str, Any] = {}
    for key in ("max_level", "classified_from"):
        if key in table:
            level_id = reader.typed(table[key], f"drafts.{key}", str)
            if level_id not in ids:
                raise reader.fail(f"drafts.{key}", f"no level '{level_id}'")
            values[key] = level_id
    if "protect_years" in table:
        values["protect_years"] = reader.number(
            table["protect_years"], "drafts.protect_years", 1, 100
        )
    for key in ("notice", "copy"):
        if key in table:
            values[key] = _wording(reader, table[key], key)
    return DraftRules(**values)


def _wording(reader: _Reader, value: Any, key: str) -> str:
    text = reader.typed(value, f"drafts.{key}", str)
    if not text.strip() or len(text) > MAX_WORDING or not text.isprintable():
        raise reader.fail(
            f"drafts.{key}", f"must be one printable line of 1-{MAX_WORDING} characters"
        )
    try:
        fields = {
            name for _, name, spec, conv in string.Formatter().parse(text) if name is not None
        }
        bad = [
            spec or conv for _, name, spec, conv in string.Formatter().parse(text) if spec or conv
        ]
    except ValueError as exc:
        raise reader.fail(f"drafts.{key}", f"not a valid wording ({exc})") from None
    unknown = fields - FIELDS[key]
    if unknown or bad or FIELDS[key] - fields:
        names = ", ".join("{" + name + "}" for name in sorted(FIELDS[key]))
        raise reader.fail(f"drafts.{key}", f"must use exactly {names}, without formats")
    return str(text)


def read_tasks(reader: _Reader, raw: Any) -> tuple[Task, ...]:
    entries = reader.typed(raw, "tasks", list)
    if len(entries) > MAX_TASKS:
        raise reader.fail("tasks", f"at most {MAX_TASKS} presets")
    tasks: list[Task] = []
    for index, entry in enumerate(entries):
        key = f"tasks[{index}]"
        item = reader.table(
            entry, key, {"id", "ko", "en", "system", "max_tokens", "temperature"},
            {"id", "ko", "en", "system"},
        )  # fmt: skip
        task_id = reader.identifier(item["id"], f"{key}.id")
        if any(task.id == task_id for task in tasks):
            raise reader.fail(f"{key}.id", f"'{task_id}' is named twice")
        names = [reader.typed(item[lang], f"{key}.{lang}", str).strip() for lang in ("ko", "en")]
        for lang, name in zip(("ko", "en"), names, strict=True):
            if not name or len(name) > 40 or not name.isprintable():
                raise reader.fail(f"{key}.{lang}", "must be a printable name of 1-40 characters")
        system = reader.typed(item["system"], f"{key}.system", str)
        if not system.strip() or len(system) > MAX_SYSTEM:
            raise reader.fail(f"{key}.system", f"must be 1-{MAX_SYSTEM} characters")
        temperature = item.get("temperature")
        if temperature is not None:
            if isinstance(temperature, bool) or not isinstance(temperature, int | float):
                raise reader.fail(f"{key}.temperature", "must be a number")
            if not 0 <= temperature <= 2:
                raise reader.fail(f"{key}.temperature", "must be between 0 and 2")
        max_tokens = item.get("max_tokens")
        tasks.append(
            Task(
                task_id,
                names[0],
                names[1],
                system,
                None
                if max_tokens is None
                else reader.number(max_tokens, f"{key}.max_tokens", 1, 8192),
                None if temperature is None else float(temperature),
            )
        )
    return tuple(tasks)
