"""A bundle's manifest, `bundle.json`: its release and the model it pins.

It is read twice. The host's verifier reads it from the signed bundle, and
checks it here before its release becomes a folder name or its model file a
link. The serving commands read it from the installed release (`current/`),
whose copy the verifier wrote: a sealed model that decrypts to the sha256 it
pins is authenticated and needs no probe; one that does not is refused.

Its `binaries` (llama.cpp's tools and the appliance's preload, shipped under
`libexec/`) name each file's sha256: the verifier checks them against the signed
targets, and `doctor` checks the installed copies against them (bundle/binaries.py).

Its `adapters` (LoRA domain adapters, sealed like the model, shipped as
`adapters/NAME.sealed`) name each adapter's plaintext sha256, shape and base
model: the verifier checks that they are exactly the signed `adapters/` targets,
and the home serves the current release's (appliance/adapters.py) from
`releases/V/adapters/`, checking each one's bytes against its sha256 as it opens it.
"""

from __future__ import annotations

import json
import math
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.engine.tools import LIBEXEC
from appliance.errors import ConfigError
from appliance.fsutil import read_limited
from appliance.seal import is_content_id

MANIFEST = "bundle.json"
MAX_MANIFEST = 64 << 10
MAX_RELEASE = 64
# A release is a version and names a folder under PREFIX/releases: never a path.
RELEASE = re.compile(r"\d+(\.\d+){0,3}([-+][0-9A-Za-z.]+)?")
SHA256 = re.compile(r"[0-9a-f]{64}")
MODEL_DIR = "model/"
BINARIES_DIR = f"{LIBEXEC}/"  # in the bundle's targets, and in each installed release
# A shipped file's name: one plain path component, never a path.
BINARY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
ADAPTERS_DIR = "adapters/"  # in the bundle's targets, and in each installed release
# An adapter's name, as policies give it; appliance.adapters.NAME is this pattern.
ADAPTER_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")
MAX_ADAPTERS = 64
ADAPTER_FIELDS = frozenset({"name", "file", "sha256", "bytes", "rank", "alpha", "targets", "base"})
CREATED = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@dataclass(frozen=True)
class ShippedAdapter:
    """One LoRA adapter a release ships, as its manifest describes it."""

    name: str
    file: str  # the target path of the sealed adapter: adapters/NAME.sealed
    sha256: str  # of the adapter's plaintext: what the sealed file must decrypt to
    bytes: int  # of the plaintext
    rank: int
    alpha: float
    targets: int  # base tensors it adapts
    base: str  # the content id of the model it adapts: the release's own model


@dataclass(frozen=True)
class Manifest:
    release: str
    model_file: str  # the target path of the sealed model, under model/
    content_id: str  # what the sealed model must hold
    model_sha256: str  # of the model's plaintext
    data: dict[str, Any]  # the whole document
    binaries: dict[str, str] = field(default_factory=dict)  # libexec/NAME -> its sha256
    adapters: tuple[ShippedAdapter, ...] = ()
    created: str | None = None  # when it was built (required when it ships adapters)


def is_release(text: object) -> bool:
    return isinstance(text, str) and len(text) <= MAX_RELEASE and bool(RELEASE.fullmatch(text))


def parse_manifest(data: bytes) -> Manifest:
    """The manifest, or ValueError saying what is wrong with it."""
    try:
        document = json.loads(data)
        release = document["release"]
        model = document["model"]
        fields = (model["file"], model["content_id"], model["sha256"])
    except (ValueError, TypeError, KeyError):
        raise ValueError("it is incomplete") from None
    except RecursionError:  # json recurses once per nested array or object
        raise ValueError("it is nested too deeply") from None
    if not is_release(release):
        raise ValueError(f"its release {str(release)[:80]!r} is not a version such as 1.4.0")
    model_file, content_id, sha256 = fields
    if not (
        isinstance(model_file, str)
        and model_file.startswith(MODEL_DIR)
        and posixpath.normpath(model_file) == model_file
        and "/" not in model_file.removeprefix(MODEL_DIR)
        and model_file.endswith(".sealed")
    ):
        raise ValueError(f"its model file {str(model_file)[:80]!r} is not model/NAME.sealed")
    if not isinstance(content_id, str) or not is_content_id(content_id):
        raise ValueError("its model content id is malformed")
    if not isinstance(sha256, str) or not SHA256.fullmatch(sha256):
        raise ValueError("its model sha256 is not 64 lowercase hex digits")
    binaries = _binaries(document.get("binaries"))
    adapters = _adapters(document.get("adapters"), content_id)
    created = document.get("created")
    if not (isinstance(created, str) and CREATED.fullmatch(created)):
        if adapters:  # they are listed as added then
            raise ValueError("its created time is not YYYY-MM-DDTHH:MM:SSZ")
        created = None
    return Manifest(release, model_file, content_id, sha256, document, binaries, adapters, created)


def _binaries(section: object) -> dict[str, str]:
    """`binaries.files` as {libexec/NAME: sha256}; empty for a bundle that ships none."""
    if section is None:
        return {}
    files = section.get("files") if isinstance(section, dict) else None
    if not isinstance(files, dict):
        raise ValueError("its binaries list no files")
    found = {}
    for name, entry in files.items():
        if not BINARY_NAME.fullmatch(name):  # (JSON keys are strings)
            raise ValueError(f"its binary {name[:80]!r} is not a plain file name")
        path = f"{BINARIES_DIR}{name}"
        if not isinstance(entry, dict) or entry.get("file") != path:
            raise ValueError(f"its binary {name!r} is not {path}")
        digest = entry.get("sha256")
        if not isinstance(digest, str) or not SHA256.fullmatch(digest):
            raise ValueError(f"its binary {name!r} has no sha256 of 64 lowercase hex digits")
        found[path] = digest
    return found


def _adapters(section: object, base: str) -> tuple[ShippedAdapter, ...]:
    """`adapters`, each entry complete and exact; empty for a bundle that ships none."""
    if section is None:
        return ()
    if not isinstance(section, list):
        raise ValueError("its adapters are not a list")
    if len(section) > MAX_ADAPTERS:
        raise ValueError(f"it lists more than {MAX_ADAPTERS} adapters")
    found: list[ShippedAdapter] = []
    for number, entry in enumerate(section, 1):
        if not isinstance(entry, dict) or set(entry) != ADAPTER_FIELDS:
            fields = ", ".join(sorted(ADAPTER_FIELDS))
            raise ValueError(f"its adapter #{number} does not have exactly the fields {fields}")
        name = entry["name"]
        if not isinstance(name, str) or not ADAPTER_NAME.fullmatch(name):
            raise ValueError(f"its adapter #{number} is not named with a-z, 0-9 and -")
        if any(adapter.name == name for adapter in found):
            raise ValueError(f"it lists the adapter {name!r} twice")
        path = f"{ADAPTERS_DIR}{name}.sealed"
        if entry["file"] != path:
            raise ValueError(f"its adapter {name!r} is not {path}")
        digest = entry["sha256"]
        if not isinstance(digest, str) or not SHA256.fullmatch(digest):
            raise ValueError(f"its adapter {name!r} has no sha256 of 64 lowercase hex digits")
        size, rank, targets = entry["bytes"], entry["rank"], entry["targets"]
        if not all(_positive(value) for value in (size, rank, targets)):
            raise ValueError(f"its adapter {name!r} has no whole, positive bytes, rank and targets")
        alpha = _number(entry["alpha"])
        if alpha is None or not (math.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"its adapter {name!r} has no finite alpha of 0 or more")
        if entry["base"] != base:
            raise ValueError(f"its adapter {name!r} is not for the release's model {base}")
        found.append(ShippedAdapter(name, path, digest, size, rank, alpha, targets, base))
    return tuple(found)


def _number(value: object) -> float | None:
    """A JSON number as a float; None for anything else, or an integer too large."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def _positive(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def model_pin(path: Path) -> Manifest:
    """The manifest of an installed release, for the model it pins."""
    data = read_limited(path, MAX_MANIFEST, "the release manifest")
    try:
        return parse_manifest(data)
    except ValueError as exc:
        raise ConfigError(f"the release manifest {path} is unusable: {exc}") from None
