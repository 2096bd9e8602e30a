"""Policy files: a strict TOML schema, versioned.

Every key is known and typed: an unknown key, a wrong type or a bad value is
refused with the file and the key's dotted path. Schema: docs/formats/policy.md.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.errors import PolicyError, UsageError
from appliance.fsutil import read_limited
from appliance.policy.adapters import AdapterRule, choose, read_adapters
from appliance.policy.remote import RemoteRules, read_remote
from appliance.policy.work import DraftRules, Task, read_drafts, read_tasks

SCHEMA_VERSION = 1
MAX_POLICY_FILE = 256 * 1024
MAX_OVERRIDE_MINUTES = 24 * 60  # the longest air-gap override a policy may allow
ACTIONS = ("allow", "redact", "block", "label")
ADDED_ACTIONS = ("allow", "redact")  # text the appliance adds keeps its stored label
DETECTORS = (
    "rrn",
    "foreigner_rn",
    "passport",
    "driver_license",
    "phone",
    "business_rn",
    "corporate_rn",
    "bank_account",
    "service_number",
    "mgrs",
    "marking",
)
MARKINGS = ("restricted", "cui", "secret-3", "secret-2", "secret-1")
COLOURS = ("green", "blue", "yellow", "red", "magenta", "cyan", "white", "orange")
_ID = re.compile(r"[a-z][a-z0-9-]{0,31}")


@dataclass(frozen=True)
class Level:
    """One classification level; `rank` orders them (0 is the lowest)."""

    id: str
    rank: int
    ko: str
    en: str
    colour: str
    markings: tuple[str, ...] = ()

    def name(self, language: str) -> str:
        return self.ko if language == "ko" else self.en


@dataclass(frozen=True)
class Rule:
    """What a detector's findings do: in the prompt, in the answer, and in text the
    appliance adds to a prompt (retrieved chunks, files), which is never blocked."""

    input: str
    output: str
    level: str | None = None  # for "label": the level the turn is raised to
    added: str = "redact"  # allow or redact; absent, redact (fails closed)


@dataclass(frozen=True)
class CustomDetector:
    id: str
    pattern: re.Pattern[str]
    rule: Rule


@dataclass(frozen=True)
class ServiceLimits:
    """What one appliance service takes on at once (docs/formats/policy.md, [service])."""

    max_sessions: int = 16  # signed-in or signing-in connections
    max_queued: int = 16  # answers waiting for the engine
    max_per_user: int = 1  # answers one user may have waiting or running
    answer_seconds: int = 300  # an answer running longer is stopped
    # Each account signs in to the service only from the OS account bound to it (an
    # account bound to none cannot); absent, the socket's permissions are the OS gate.
    bind_os_users: bool = False


@dataclass(frozen=True)
class DocumentLimits:
    """What one document may be (docs/formats/policy.md, [documents])."""

    max_file_mb: int = 16  # a larger file is refused before anything reads it

    @property
    def max_file_bytes(self) -> int:
        return self.max_file_mb << 20


@dataclass(frozen=True)
class BackupRules:
    """What the policy asks of backups (docs/formats/policy.md, [backup]); where they go,
    to whom and how often are the site's (config.toml [backup])."""

    max_age_hours: int = 24  # `doctor` warns when the newest backup is older, or there is none


@dataclass(frozen=True)
class Policy:
    name: str
    version: int
    language: str
    description: str
    allow_dev_mode: bool
    lockout_failures: int
    lockout_minutes: int
    idle_timeout_minutes: int
    min_password_length: int
    require_content: bool
    require_airgap: bool
    airgap_override_max_minutes: int
    service: ServiceLimits
    documents: DocumentLimits
    drafts: DraftRules
    tasks: tuple[Task, ...]
    adapters: tuple[AdapterRule, ...]
    remote: RemoteRules
    backup: BackupRules
    levels: tuple[Level, ...]
    default_level: str
    holdback: int
    rules: dict[str, Rule]
    custom: tuple[CustomDetector, ...]
    sha256: str
    source: str
    _by_id: dict[str, Level] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_id.update({level.id: level for level in self.levels})

    def level(self, level_id: str) -> Level:
        try:
            return self._by_id[level_id]
        except KeyError:
            known = ", ".join(self._by_id)
            raise PolicyError(f"no classification level '{level_id}' (known: {known})") from None

    def task(self, task_id: str) -> Task:
        for task in self.tasks:
            if task.id == task_id:
                return task
        known = ", ".join(task.id for task in self.tasks) or "none"
        raise UsageError(
            f"policy {self.describe()} has no task '{task_id}' (known: {known})",
            code="no_task",
            task=task_id,
        )

    def draft_level(self) -> Level:
        """The highest label a draft may carry out of the appliance."""
        return self.level(self.drafts.max_level or self.lowest.id)

    def classified(self, level: Level) -> bool:
        """Whether a draft at `level` carries a notice and a copy number."""
        start = self.drafts.classified_from
        return level.rank >= (self.level(start).rank if start else 1)

    def adapter_for(
        self, role: str, label: Level, clearance: Level, loaded: Collection[str]
    ) -> AdapterRule | None:
        """The adapter rule that serves a turn at `label` for this role and clearance,
        among the adapters the engine has loaded; None: the base model alone."""
        return choose(self.adapters, role, label, clearance, self._by_id, loaded)

    def remote_level(self) -> Level | None:
        """The highest label a turn may carry to a remote engine; None: none may go."""
        if not self.remote.allowed:
            return None
        return self.level(self.remote.max_level or self.lowest.id)

    def level_for_marking(self, marking: str) -> Level | None:
        """The lowest level that claims `marking`, or None."""
        return next((lvl for lvl in self.levels if marking in lvl.markings), None)

    @property
    def lowest(self) -> Level:
        return self.levels[0]

    def describe(self) -> str:
        return f"{self.name} v{self.version}"


def load_policy(path: Path) -> Policy:
    """Read and validate a policy file; PolicyError names the file and key."""
    data = read_limited(path, MAX_POLICY_FILE, "the policy")
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"{path}: not valid TOML ({exc})") from None
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise PolicyError(f"{path}: not valid TOML (arrays or tables nested too deeply)") from None
    return _Reader(str(path)).policy(raw, hashlib.sha256(data).hexdigest())


class _Reader:
    """Walks the TOML document, refusing anything the schema does not name."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, problem: str) -> PolicyError:
        return PolicyError(f"{self.source}: {key}: {problem}")

    def table(self, value: Any, key: str, allowed: set[str], required: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, "must be a table")
        for name in value:
            if name not in allowed:
                raise self.fail(f"{key}.{name}" if key else name, "unknown key")
        for name in required - set(value):
            raise self.fail(f"{key}.{name}" if key else name, "missing")
        return value

    def typed(self, value: Any, key: str, kind: type) -> Any:
        if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
            raise self.fail(key, f"must be {kind.__name__}")
        return value

    def number(self, value: Any, key: str, low: int, high: int) -> int:
        number = self.typed(value, key, int)
        if not low <= number <= high:
            raise self.fail(key, f"must be between {low} and {high}")
        return int(number)

    def identifier(self, value: Any, key: str) -> str:
        text = self.typed(value, key, str)
        if not _ID.fullmatch(text):
            raise self.fail(key, "must be lower-case letters, digits and -")
        return str(text)

    def choice(self, value: Any, key: str, choices: tuple[str, ...]) -> str:
        text = self.typed(value, key, str)
        if text not in choices:
            raise self.fail(key, f"must be one of {', '.join(choices)}")
        return str(text)

    def policy(self, raw: dict[str, Any], digest: str) -> Policy:
        sections = {
            "policy", "identity", "audit", "network", "classification", "dlp", "service",
            "documents", "drafts", "tasks", "adapters", "remote", "backup",
        }  # fmt: skip
        optional = {
            "dlp", "service", "documents", "drafts", "tasks", "adapters", "remote", "backup",
        }  # fmt: skip
        top = self.table(raw, "", sections, sections - optional)
        meta = self.table(
            top["policy"], "policy", {"name", "version", "language", "description"},
            {"name", "version", "language"},
        )  # fmt: skip
        name = self.typed(meta["name"], "policy.name", str)
        if not _ID.fullmatch(name):
            raise self.fail("policy.name", "must be lower-case letters, digits and -")
        ident = self.table(
            top["identity"],
            "identity",
            keys := {
                "allow_dev_mode",
                "lockout_failures",
                "lockout_minutes",
                "idle_timeout_minutes",
                "min_password_length",
            },
            keys,
        )
        audit = self.table(top["audit"], "audit", {"require_content"}, {"require_content"})
        network = self.table(
            top["network"],
            "network",
            {"require_airgap", "airgap_override_max_minutes"},
            {"require_airgap"},
        )
        levels, default = self.classification(top["classification"])
        holdback, rules, custom = self.dlp(top.get("dlp", {}), {lvl.id for lvl in levels})
        return Policy(
            name=name,
            version=self.number(meta["version"], "policy.version", 1, 1_000_000),
            language=self.choice(meta["language"], "policy.language", ("ko", "en")),
            description=self.typed(meta.get("description", ""), "policy.description", str),
            allow_dev_mode=self.typed(ident["allow_dev_mode"], "identity.allow_dev_mode", bool),
            lockout_failures=self.number(
                ident["lockout_failures"], "identity.lockout_failures", 1, 100
            ),
            lockout_minutes=self.number(
                ident["lockout_minutes"], "identity.lockout_minutes", 1, 10080
            ),
            idle_timeout_minutes=self.number(
                ident["idle_timeout_minutes"], "identity.idle_timeout_minutes", 1, 1440
            ),
            min_password_length=self.number(
                ident["min_password_length"], "identity.min_password_length", 8, 256
            ),
            require_content=self.typed(audit["require_content"], "audit.require_content", bool),
            require_airgap=self.typed(network["require_airgap"], "network.require_airgap", bool),
            airgap_override_max_minutes=self.number(
                network.get("airgap_override_max_minutes", 0),  # none unless the policy says
                "network.airgap_override_max_minutes",
                0,
                MAX_OVERRIDE_MINUTES,
            ),
            service=self.service(top.get("service", {})),
            documents=self.documents(top.get("documents", {})),
            drafts=read_drafts(self, top.get("drafts", {}), levels),
            tasks=read_tasks(self, top.get("tasks", [])),
            adapters=read_adapters(self, top.get("adapters", []), levels),
            remote=read_remote(self, top.get("remote", {}), levels),
            backup=self.backup(top.get("backup", {})),
            levels=levels,
            default_level=default,
            holdback=holdback,
            rules=rules,
            custom=custom,
            sha256=digest,
            source=self.source,
        )

    def service(self, raw: Any) -> ServiceLimits:
        """Optional; each absent key takes the small default of ServiceLimits."""
        ranges = {
            "max_sessions": (1, 4096),
            "max_queued": (0, 4096),
            "max_per_user": (1, 64),
            "answer_seconds": (10, 3600),
        }
        table = self.table(raw, "service", {*ranges, "bind_os_users"}, set())
        values: dict[str, Any] = {
            key: self.number(value, f"service.{key}", *ranges[key])
            for key, value in table.items()
            if key in ranges
        }
        if "bind_os_users" in table:
            values["bind_os_users"] = self.typed(
                table["bind_os_users"], "service.bind_os_users", bool
            )
        return ServiceLimits(**values)

    def documents(self, raw: Any) -> DocumentLimits:
        """Optional; an absent key takes DocumentLimits' small default."""
        table = self.table(raw, "documents", {"max_file_mb"}, set())
        if "max_file_mb" not in table:
            return DocumentLimits()
        return DocumentLimits(self.number(table["max_file_mb"], "documents.max_file_mb", 1, 1024))

    def backup(self, raw: Any) -> BackupRules:
        """Optional; absent, a day (a home never backed up is warned about)."""
        table = self.table(raw, "backup", {"max_age_hours"}, set())
        if "max_age_hours" not in table:
            return BackupRules()
        return BackupRules(self.number(table["max_age_hours"], "backup.max_age_hours", 1, 8760))

    def classification(self, raw: Any) -> tuple[tuple[Level, ...], str]:
        table = self.table(raw, "classification", {"default", "levels"}, {"default", "levels"})
        entries = self.typed(table["levels"], "classification.levels", list)
        if not 1 <= len(entries) <= 16:
            raise self.fail("classification.levels", "must list 1 to 16 levels")
        levels: list[Level] = []
        claimed: set[str] = set()
        for rank, entry in enumerate(entries):
            key = f"classification.levels[{rank}]"
            item = self.table(
                entry, key, {"id", "ko", "en", "colour", "markings"}, {"id", "ko", "en", "colour"}
            )
            level_id = self.typed(item["id"], f"{key}.id", str)
            if not _ID.fullmatch(level_id) or any(lvl.id == level_id for lvl in levels):
                raise self.fail(f"{key}.id", "must be a new lower-case id")
            markings = tuple(self.typed(item.get("markings", []), f"{key}.markings", list))
            for marking in markings:
                self.choice(marking, f"{key}.markings", MARKINGS)
                if marking in claimed:
                    raise self.fail(f"{key}.markings", f"'{marking}' is claimed by two levels")
                claimed.add(marking)
            levels.append(
                Level(
                    level_id,
                    rank,
                    self.typed(item["ko"], f"{key}.ko", str),
                    self.typed(item["en"], f"{key}.en", str),
                    self.choice(item["colour"], f"{key}.colour", COLOURS),
                    markings,
                )
            )
        default = self.typed(table["default"], "classification.default", str)
        if default not in {lvl.id for lvl in levels}:
            raise self.fail("classification.default", f"no level '{default}'")
        return tuple(levels), default

    def dlp(
        self, raw: Any, level_ids: set[str]
    ) -> tuple[int, dict[str, Rule], tuple[CustomDetector, ...]]:
        table = self.table(raw, "dlp", {"holdback", "detectors", "custom"}, set())
        holdback = self.number(table.get("holdback", 48), "dlp.holdback", 32, 1024)
        detectors = self.table(table.get("detectors", {}), "dlp.detectors", set(DETECTORS), set())
        rules = {
            name: self.rule(detectors.get(name, {}), f"dlp.detectors.{name}", level_ids)
            for name in DETECTORS
        }
        custom: list[CustomDetector] = []
        for index, entry in enumerate(self.typed(table.get("custom", []), "dlp.custom", list)):
            key = f"dlp.custom[{index}]"
            item = self.table(
                entry,
                key,
                {"id", "pattern", "input", "output", "added", "level"},
                {"id", "pattern"},
            )
            custom_id = self.typed(item["id"], f"{key}.id", str)
            if not _ID.fullmatch(custom_id) or custom_id in DETECTORS:
                raise self.fail(f"{key}.id", "must be a new lower-case id")
            source = self.typed(item["pattern"], f"{key}.pattern", str)
            try:
                pattern = re.compile(source)
            except re.error as exc:
                raise self.fail(
                    f"{key}.pattern", f"not a valid regular expression ({exc})"
                ) from None
            except (OverflowError, RecursionError):  # a{99999999999}, or groups nested deeply
                raise self.fail(
                    f"{key}.pattern", "not a valid regular expression (too large or too deep)"
                ) from None
            if pattern.search(""):
                raise self.fail(f"{key}.pattern", "matches the empty string")
            rule_fields = {k: v for k, v in item.items() if k not in {"id", "pattern"}}
            custom.append(
                CustomDetector(custom_id, pattern, self.rule(rule_fields, key, level_ids))
            )
        return holdback, rules, tuple(custom)

    def rule(self, raw: Any, key: str, level_ids: set[str]) -> Rule:
        item = self.table(raw, key, {"input", "output", "added", "level"}, set())
        rule = Rule(
            self.choice(item.get("input", "allow"), f"{key}.input", ACTIONS),
            self.choice(item.get("output", "allow"), f"{key}.output", ACTIONS),
            self.typed(item["level"], f"{key}.level", str) if "level" in item else None,
            self.choice(item.get("added", "redact"), f"{key}.added", ADDED_ACTIONS),
        )
        if rule.level is not None and rule.level not in level_ids:
            raise self.fail(f"{key}.level", f"no level '{rule.level}'")
        is_marking = key == "dlp.detectors.marking"
        if "label" in (rule.input, rule.output) and rule.level is None and not is_marking:
            raise self.fail(f"{key}.level", "is required when an action is 'label'")
        return rule
