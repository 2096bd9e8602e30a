"""`appliance bundle build`: one signed offline file from a model, a policy and wheels.

On the connected build station: quantize (optional), seal the weights and any
LoRA adapters (each validated against the shipped model first) to the site
recipients, gather the wheelhouse, llama.cpp's tools and the preload
(`make setup` builds them), the policy, the installer and the docs, write an
SBOM and a manifest, sign TUF metadata over every file, and write the bundle
atomically.
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance import __version__, adapters, catalog, seal
from appliance.bundle import repository, sbom
from appliance.bundle.archive import Progress, write_bundle
from appliance.bundle.keys import load_signer
from appliance.bundle.manifest import (
    ADAPTERS_DIR,
    BINARIES_DIR,
    MANIFEST,
    MAX_ADAPTERS,
    MODEL_DIR,
    is_release,
)
from appliance.engine import GGUFFile, read_gguf, sha256_file
from appliance.engine.adapter import AdapterInfo, read_adapter
from appliance.engine.compare import EVALUATION_TEXTS, compare, evaluation_text
from appliance.engine.info import quantization_of
from appliance.engine.quantize import QuantizeReport, quantize
from appliance.engine.report import Report, write_report
from appliance.engine.tools import CMAKE_FLAGS, SHIPPED_FILES, llama_cpp_version, tools_dir
from appliance.errors import BundleError, ConfigError, UsageError
from appliance.policy import load_policy

SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the checkout the build runs from
DOCS = (
    "README.md",
    "docs/architecture.md",
    "docs/formats/sealed.md",
    "docs/formats/audit.md",
    "docs/formats/policy.md",
    "docs/formats/bundle.md",
    "docs/formats/model-report.md",
)
INSTALLER = ("installer/install.sh", "installer/appliance.service", "installer/README.md")

Stage = Callable[[str], AbstractContextManager[Progress | None]]


@dataclass(frozen=True)
class BuildRequest:
    model: Path
    policy: Path
    recipients: list[seal.Recipient]
    signing_key: Path  # release.key in the signing directory made by `bundle init`
    passphrase: str
    release: str
    out: Path
    quantize: str | None = None
    report_texts: tuple[str, ...] = EVALUATION_TEXTS  # what the quantized model is measured on
    wheelhouse: Path | None = None  # None: collect with pip (needs the package index)
    tools: Path | None = None  # the built SHIPPED_FILES; None: the cache `make setup` fills
    timestamp_days: int = 30
    # LoRA adapters for the shipped model: (file, name), sealed as adapters/NAME.sealed
    adapters: tuple[tuple[Path, str], ...] = ()


@dataclass(frozen=True)
class BuildResult:
    path: Path
    size: int
    inputs: int  # bytes of the model, wheels, policy and documents that went in
    metadata_version: int
    content_id: str
    quantized: QuantizeReport | None
    report: Report | None = None  # the lightweighting report, when the build quantized
    adapters: tuple[dict[str, Any], ...] = ()  # the manifest's entries, one per adapter


def build(request: BuildRequest, stage: Stage) -> BuildResult:
    """Build the bundle `request.out`; `stage(description)` gives each step's progress."""
    _check(request)
    request.out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".bundle-", dir=request.out.parent))
    try:
        return _build(request, work, stage)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check(request: BuildRequest) -> None:
    if not is_release(request.release):
        raise UsageError(f"'{request.release}' is not a release version (like 1.4.0)")
    if not request.recipients:
        raise UsageError("give the site's recipient with --recipient apr1...")
    if request.out.exists():
        raise UsageError(f"{request.out} already exists")
    for relative in INSTALLER:
        if not (SOURCE_ROOT / relative).is_file():
            raise UsageError(f"{SOURCE_ROOT} lacks {relative}: build from a source checkout")
    names = [name for _path, name in request.adapters]
    for name in names:
        adapters.check_name(name)
    if len(set(names)) != len(names):
        twice = sorted({name for name in names if names.count(name) > 1})
        raise UsageError(f"two adapters are named {twice[0]}; give each its own :NAME")
    if len(names) > MAX_ADAPTERS:
        raise UsageError(f"a bundle ships at most {MAX_ADAPTERS} adapters")
    load_signer(request.signing_key, request.passphrase)  # a wrong passphrase fails first
    _shipped(request.tools)


def _shipped(given: Path | None) -> dict[str, Path]:
    """The built binaries the bundle ships (engine/tools.py's SHIPPED_FILES), by name."""
    folder = tools_dir() if given is None else given
    found = {name: folder / name for name in SHIPPED_FILES}
    missing = [name for name, path in found.items() if not path.is_file()]
    if missing:
        raise ConfigError(
            f"{folder} lacks {', '.join(missing)}, which every bundle ships: run make setup"
            + ("" if given is None else ", or give --tools a folder that holds them")
        )
    return found


def _build(request: BuildRequest, work: Path, stage: Stage) -> BuildResult:
    policy = load_policy(request.policy)
    source_info = read_gguf(request.model)  # validated before llama.cpp or sealing reads it
    model, report = request.model, None
    if request.quantize:
        with stage(f"Quantizing to {request.quantize}"):
            model = work / f"model-{request.quantize.lower()}.gguf"
            report = quantize(request.model, model, request.quantize)
    # Each adapter is validated against the model shipped, before anything else reads it.
    checked = _check_adapters(request.adapters, read_gguf(model) if report else source_info)
    model_type = report.result_type if report else quantization_of(source_info)
    digest = sha256_file(model)
    name, content_id = _model_identity(
        digest, source_info.get("general.name") or request.model.stem, model_type, request.release
    )
    files: dict[str, Path] = {}
    sealed = work / f"{name}.sealed"
    with stage(f"Sealing {name} to {len(request.recipients)} recipient(s)") as progress:
        seal.seal_file(model, sealed, list(request.recipients), content_id, progress=progress)
    files[f"{MODEL_DIR}{sealed.name}"] = sealed
    shipped = _seal_adapters(checked, request.recipients, content_id, work / "adapters", stage)
    files.update({entry["file"]: work / entry["file"] for entry in shipped})
    wheels = _wheelhouse(request.wheelhouse, work, stage)
    files.update({f"wheels/{wheel.name}": wheel for wheel in wheels})
    files["policy/policy.toml"] = request.policy
    files.update({path: SOURCE_ROOT / path for path in INSTALLER})
    files.update({path: SOURCE_ROOT / path for path in DOCS if (SOURCE_ROOT / path).is_file()})
    binaries = _copy_binaries(request.tools, work / "libexec")
    files.update({f"{BINARIES_DIR}{path.name}": path for path in binaries})
    inputs = sum(path.stat().st_size for path in files.values()) - sealed.stat().st_size
    inputs += request.model.stat().st_size
    inputs += sum(entry["bytes"] - files[entry["file"]].stat().st_size for entry in shipped)
    measured = None
    if report is not None:
        # Every quantized bundle carries what quantizing cost, measured against its source.
        with stage("Measuring the quantized model against its source") as progress:
            texts = [evaluation_text(text) for text in request.report_texts]
            measured = compare(request.model, model, texts, progress=progress)
        report_path = work / f"{name}.report.json"
        write_report(measured, report_path)
        files[f"{MODEL_DIR}{report_path.name}"] = report_path

    manifest: dict[str, Any] = {
        "release": request.release,
        "appliance": __version__,
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model": {
            "file": f"{MODEL_DIR}{sealed.name}",
            "content_id": content_id,
            "sha256": digest,  # of the plaintext: the host serves only these bytes
            "type": model_type,
            "source": {
                "file": request.model.name,
                "type": quantization_of(source_info),
                "bytes": request.model.stat().st_size,
            },
            "quantized": None
            if report is None
            else {
                "to": report.result_type,
                "bytes": report.result_bytes,
                "requantized": report.requantized,
            },
            "report": f"{MODEL_DIR}{name}.report.json" if measured else None,
            "recipients": [str(recipient) for recipient in request.recipients],
        },
        # LoRA adapters for this model, each sealed to the same recipients as
        # adapters/NAME.sealed; sha256 and bytes are of the plaintext.
        "adapters": shipped,
        "policy": {"name": policy.name, "version": policy.version, "sha256": policy.sha256},
        "platform": _platform(wheels),
        "binaries": {  # installed as releases/V/libexec/NAME; doctor checks these sha256
            "llama_cpp_python": llama_cpp_version(),  # whose vendored llama.cpp was built
            "cmake_flags": list(CMAKE_FLAGS),
            "files": {
                path.name: {
                    "file": f"{BINARIES_DIR}{path.name}",
                    "sha256": sha256_file(path),
                    "bytes": path.stat().st_size,
                }
                for path in binaries
            },
        },
    }
    manifest_path = work / MANIFEST
    manifest_path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    files[MANIFEST] = manifest_path
    sbom_path = work / "sbom.cdx.json"
    sbom_path.write_text(sbom.document(manifest, files))
    files["sbom.cdx.json"] = sbom_path

    signed = repository.sign_release(
        request.signing_key.parent,
        request.passphrase,
        files,
        timestamp_days=request.timestamp_days,
    )
    with stage(f"Writing {request.out.name}") as progress:
        write_bundle(request.out, signed.members(), files, progress)
    return BuildResult(
        request.out,
        request.out.stat().st_size,
        inputs,
        signed.version,
        content_id,
        report,
        measured,
        tuple(shipped),
    )


def _check_adapters(
    given: tuple[tuple[Path, str], ...], model: GGUFFile
) -> list[tuple[Path, str, AdapterInfo]]:
    """Each adapter validated against the shipped model (ModelFormatError, one sentence)."""
    return [(path, name, read_adapter(path, model)) for path, name in given]


def _seal_adapters(
    checked: list[tuple[Path, str, AdapterInfo]],
    recipients: list[seal.Recipient],
    base: str,
    folder: Path,
    stage: Stage,
) -> list[dict[str, Any]]:
    """Seal each adapter to the site like the model; the manifest's entries for them."""
    entries = []
    for path, name, info in checked:
        folder.mkdir(exist_ok=True)
        digest = sha256_file(path)
        target = folder / f"{name}.sealed"
        with stage(f"Sealing the adapter {name} to {len(recipients)} recipient(s)") as progress:
            sealed_as = adapters.content_id(name)
            seal.seal_file(path, target, list(recipients), sealed_as, progress=progress)
        if sha256_file(path) != digest:  # what was sealed is what the manifest pins
            raise BundleError(f"the adapter {path} changed while it was sealed; build again")
        entries.append(
            {
                "name": name,
                "file": f"{ADAPTERS_DIR}{name}.sealed",
                "sha256": digest,
                "bytes": info.file_size,
                "rank": info.rank,
                "alpha": info.alpha,
                "targets": len(info.targets),
                "base": base,
            }
        )
    return entries


def _model_identity(
    digest: str, general_name: str, model_type: str, release: str
) -> tuple[str, str]:
    """The sealed model's name and content id.

    A catalogued model (by its sha256) keeps the catalogue's id and content id,
    so that a host knows it as that model; any other model is named from its
    metadata and the bundle's release, and may not claim a catalogued id.
    """
    known = catalog.load_catalog()
    entry = known.by_sha256(digest)
    if entry is not None:
        return entry.id, entry.content_id
    slug = re.sub(r"[^a-z0-9]+", "-", general_name.lower()).strip("-") or "model"
    name = f"{slug[:80]}-{model_type.lower()}"
    content_id = f"{name}@{release}"
    if known.by_content_id(content_id) is not None:
        raise UsageError(
            f"the model would be named {content_id}, a catalogued model it is not; "
            "give it another general.name or release"
        )
    return name, content_id


def _copy_binaries(given: Path | None, work: Path) -> list[Path]:
    """Copies of the shipped binaries, so that what is hashed is what is signed and packed."""
    work.mkdir()
    copies = []
    for name, path in _shipped(given).items():
        copies.append(work / name)
        shutil.copyfile(path, work / name)
    return copies


def _wheelhouse(given: Path | None, work: Path, stage: Stage) -> list[Path]:
    """The wheels that install the appliance with no index: given, or collected by pip.

    A given wheelhouse without the appliance's own wheel (as `make wheelhouse`
    leaves it) gets one built now from this checkout, offline.
    """
    if given is None:
        given = work / "wheels"
        with stage("Collecting wheels (package index)"):
            _pip("wheel", "--quiet", "--wheel-dir", str(given), str(SOURCE_ROOT))
    wheels = sorted(given.glob("*.whl"))
    if not any(wheel.name.startswith("appliance-") for wheel in wheels):
        own = work / "own"
        with stage("Building the appliance wheel"):
            _pip(
                "wheel",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                "--no-index",
                "--wheel-dir",
                str(own),
                str(SOURCE_ROOT),
            )
        wheels += sorted(own.glob("appliance-*.whl"))
    return wheels


def _pip(*args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", *args], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise BundleError(f"pip {args[0]} failed while building the bundle: {last}")


def _platform(wheels: list[Path]) -> dict[str, object]:
    """Which hosts the wheelhouse serves: this Python and the wheels' platform tags."""
    tags = sorted({w.stem.rsplit("-", 1)[-1] for w in wheels} - {"any"})
    return {
        "python": f"{sys.implementation.name} {platform.python_version()}",
        "machine": platform.machine(),
        "wheel_platforms": tags,
    }
