"""LoRA adapters in a home: validated, sealed like the weights, listed, opened to serve.

    HOME/adapters/NAME.sealed   the adapter, sealed to the site identity
    HOME/adapters/index.json    what each is: its base model, the sha256 of its
                                bytes, rank, alpha, where it came from

An adapter is checked against the exact model it was added for (the name the
audit log gives that model: a content id) before it is sealed, and again,
from its sealed memory, before an engine loads it; the sha256 recorded at
`add` (or in a signed bundle's manifest) pins the bytes it decrypts to. No
plaintext adapter byte is ever written to a disk here.

The home also serves the adapters its installed release ships: those of the
release manifest its config.toml names (`[model] manifest`, the installer's
`current/bundle.json`), sealed in `releases/V/adapters/NAME.sealed`. They come
and go with that release: `remove` refuses them, and a name that both the home
and the release use is a configuration error, never a silent choice.
"""

from __future__ import annotations

import contextlib
import datetime
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from appliance import seal
from appliance.bundle.manifest import ADAPTER_NAME, model_pin
from appliance.config import ensure_dir, load_home_config
from appliance.engine import AdapterFile, GGUFFile, sha256_file
from appliance.engine.adapter import AdapterInfo, read_adapter
from appliance.errors import ConfigError, IntegrityError, UsageError
from appliance.fsutil import atomic_writer, read_limited

NAME = ADAPTER_NAME  # as the policy's [[adapters]] name, and a bundle manifest's
INDEX = "index.json"
MAX_INDEX = 1 << 20


@dataclass(frozen=True)
class AdapterRecord:
    """One adapter of the home, as `adapters list` shows it."""

    name: str
    base: str  # the served model's audit name: its content id (or file name)
    sha256: str  # of the plaintext adapter
    file: str  # the sealed file, relative to HOME/adapters (or absolute)
    bytes: int
    rank: int
    alpha: float
    targets: int  # base tensors it adapts
    added: str  # ISO time
    source: str  # "added" or "release VERSION"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def adapters_dir(home: Path) -> Path:
    return home / "adapters"


def content_id(name: str) -> str:
    """What a sealed adapter names itself: it cannot pass for a model or another adapter."""
    return f"adapter:{name}"


def listed(home: Path) -> list[AdapterRecord]:
    """The home's adapters: those added to it, then those its installed release ships.

    Cheap: it reads the index and the release's manifest, never an adapter.
    """
    added = _indexed(home)
    shipped = _shipped(home)
    names = {record.name for record in added}
    for record in shipped:
        if record.name in names:
            raise ConfigError(
                f"the adapter '{record.name}' is both added to the home and shipped by "
                f"{record.source}; remove the added one (appliance adapters remove {record.name})"
            )
    return [*added, *shipped]


def adapter_records(manifest_path: Path) -> list[AdapterRecord]:
    """The adapters an installed release ships, from its signed manifest (checked
    strictly), each sealed file named absolutely, next to the manifest."""
    manifest = model_pin(manifest_path)  # ConfigError, one sentence, if it is unusable
    folder = manifest_path.parent.absolute()
    return [
        AdapterRecord(
            name=adapter.name,
            base=adapter.base,
            sha256=adapter.sha256,
            file=str(folder / adapter.file),
            bytes=adapter.bytes,
            rank=adapter.rank,
            alpha=adapter.alpha,
            targets=adapter.targets,
            added=str(manifest.created),  # parse_manifest requires it with adapters
            source=f"release {manifest.release}",
        )
        for adapter in manifest.adapters
    ]


def _indexed(home: Path) -> list[AdapterRecord]:
    """The adapters added to the home (HOME/adapters/index.json)."""
    path = adapters_dir(home) / INDEX
    if not path.is_file():
        return []
    data = read_limited(path, MAX_INDEX, "the adapter index")
    try:
        entries = json.loads(data)
        return [AdapterRecord(**entry) for entry in entries]
    except (ValueError, TypeError):
        raise ConfigError(f"{path} is damaged; restore it or add the adapters again") from None


def _shipped(home: Path) -> list[AdapterRecord]:
    """The adapters of the release the home's config names, if it names one that exists."""
    manifest = load_home_config(home).manifest
    if manifest is None or not manifest.is_file():
        return []
    return adapter_records(manifest)


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise UsageError(f"adapter name '{name}' must be lower-case letters, digits and -")
    return name


def add(
    home: Path,
    source: Path,
    base: GGUFFile,
    base_id: str,
    name: str,
    recipients: Sequence[seal.Recipient],
    *,
    origin: str = "added",
    progress: seal.Progress | None = None,
) -> AdapterRecord:
    """Validate `source` against `base` (before any native code sees it), seal it to
    `recipients` into the home and list it. An existing name is refused."""
    check_name(name)
    if not recipients:
        raise UsageError("an adapter is sealed to the site identity: give --identity")
    records = _indexed(home)
    for record in [*records, *_shipped(home)]:
        if record.name == name and record.source != "added":
            raise UsageError(f"an adapter named '{name}' is shipped by {record.source}")
        if record.name == name:
            raise UsageError(f"an adapter named '{name}' is already added; remove it first")
    info = read_adapter(source, base)
    digest = sha256_file(source)
    directory = ensure_dir(adapters_dir(home))
    target = directory / f"{name}.sealed"
    seal.seal_file(source, target, list(recipients), content_id(name), progress=progress)
    record = _record(name, base_id, digest, target.name, info, origin)
    _save(home, [*records, record])
    return record


def remove(home: Path, name: str) -> AdapterRecord:
    """Stop serving an adapter added to the home. (One of the same name that the
    release ships is left alone: this is how a clash between them is resolved.)"""
    records = _indexed(home)
    found = next((record for record in records if record.name == name), None)
    if found is None:
        shipped = next((record for record in _shipped(home) if record.name == name), None)
        if shipped is not None:
            raise UsageError(
                f"the adapter '{name}' is shipped by {shipped.source}: it goes with that release"
            )
        raise UsageError(f"no adapter named '{name}' (see: appliance adapters list)")
    _save(home, [record for record in records if record.name != name])
    sealed = adapters_dir(home) / found.file
    if found.source == "added" and sealed.parent == adapters_dir(home):
        sealed.unlink(missing_ok=True)
    return found


@contextlib.contextmanager
def opened(home: Path, base_id: str, openers: Sequence[seal.Opener]) -> Iterator[list[AdapterFile]]:
    """The home's adapters for the model `base_id`, each decrypted into sealed memory
    and its sha256 checked against the record (the engine that loads them checks
    each against the model); the memory is freed on exit. Adapters listed for
    other models are left alone."""
    records = [record for record in listed(home) if record.base == base_id]
    if records and not openers:
        raise ConfigError(
            f"the home has adapters for {base_id} but no site identity to open them "
            "([model] identity in config.toml)"
        )
    with contextlib.ExitStack() as stack:
        files = []
        for record in records:
            sealed = stack.enter_context(contextlib.closing(_unseal(home, record, openers)))
            files.append(AdapterFile(record.name, sealed.path, record.sha256))
        yield files


def _unseal(home: Path, record: AdapterRecord, openers: Sequence[seal.Opener]) -> seal.SealedModel:
    path = adapters_dir(home) / record.file
    try:
        return seal.load_sealed(
            path,
            openers,
            expect_content_id=content_id(record.name),
            expect_sha256=record.sha256,
        )
    except IntegrityError as exc:
        raise IntegrityError(f"the adapter {record.name} was refused: {exc}") from None


def _record(
    name: str, base_id: str, digest: str, file: str, info: AdapterInfo, origin: str
) -> AdapterRecord:
    return AdapterRecord(
        name=name,
        base=base_id,
        sha256=digest,
        file=file,
        bytes=info.file_size,
        rank=info.rank,
        alpha=info.alpha,
        targets=len(info.targets),
        added=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        source=origin,
    )


def _save(home: Path, records: list[AdapterRecord]) -> None:
    data = json.dumps([record.to_dict() for record in records], indent=2, ensure_ascii=False)
    with atomic_writer(adapters_dir(home) / INDEX, mode=0o600) as sink:
        sink.write(data.encode() + b"\n")
