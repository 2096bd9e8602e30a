"""The bundle's SBOM: CycloneDX JSON listing every wheel, the shipped binaries (llama.cpp's
tools and the preload), the model, its LoRA adapters and the policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from appliance.bundle.manifest import ADAPTERS_DIR, BINARIES_DIR
from appliance.engine import sha256_file
from appliance.engine.tools import TOOLS
from appliance.errors import ConfigError


def document(manifest: dict[str, Any], files: dict[str, Path]) -> str:
    """CycloneDX 1.6 JSON for the bundle described by `manifest` and holding `files`."""
    try:
        from cyclonedx.model import HashAlgorithm, HashType, Property
        from cyclonedx.model.bom import Bom
        from cyclonedx.model.component import Component, ComponentType
        from cyclonedx.output.json import JsonV1Dot6
        from packageurl import PackageURL
    except ImportError:
        raise ConfigError(
            "building a bundle needs the 'build' extra (cyclonedx-python-lib): "
            "pip install 'appliance[build]'"
        ) from None

    def hashes(path: Path) -> list[HashType]:
        return [HashType(alg=HashAlgorithm.SHA_256, content=sha256_file(path))]

    bom = Bom()
    root = Component(
        name="appliance-bundle",
        version=str(manifest["release"]),
        type=ComponentType.APPLICATION,
        bom_ref="bundle",
    )
    bom.metadata.component = root
    adapted: list[Component] = []  # the adapters, each depending on the model it adapts
    for name, path in sorted(files.items()):
        if name.startswith("wheels/"):
            package, version = path.name.split("-")[:2]
            bom.components.add(
                Component(
                    name=package,
                    version=version,
                    type=ComponentType.LIBRARY,
                    purl=PackageURL(
                        "pypi", name=package.lower().replace("_", "-"), version=version
                    ),
                    hashes=hashes(path),
                    bom_ref=name,
                )
            )
        elif name.startswith(BINARIES_DIR):
            binaries = manifest["binaries"]
            tool = path.name in TOOLS  # else the appliance's own preload, a shared library
            flags = " ".join(binaries["cmake_flags"])  # how llama.cpp was configured
            bom.components.add(
                Component(
                    name=path.name,
                    version=str(binaries["llama_cpp_python"]),
                    type=ComponentType.APPLICATION if tool else ComponentType.LIBRARY,
                    description=(
                        "llama.cpp tool, built from the llama.cpp that llama-cpp-python "
                        f"{binaries['llama_cpp_python']} vendors"
                        if tool
                        else "the appliance's preload for llama-server, built with its tools"
                    ),
                    hashes=hashes(path),
                    properties=[
                        Property(name="appliance:installed_as", value=f"releases/V/{name}"),
                        *([Property(name="appliance:cmake_flags", value=flags)] if tool else []),
                    ],
                    bom_ref=name,
                )
            )
        elif name.startswith("model/"):
            model = manifest["model"]
            bom.components.add(
                Component(
                    name=str(model["content_id"]),
                    type=ComponentType.MACHINE_LEARNING_MODEL,
                    description=f"GGUF {model['type']}, sealed to the site recipients",
                    hashes=hashes(path),
                    bom_ref=name,
                )
            )
        elif name.startswith(ADAPTERS_DIR):
            adapter = next(item for item in manifest["adapters"] if item["file"] == name)
            adapted.append(
                Component(
                    name=str(adapter["name"]),
                    type=ComponentType.MACHINE_LEARNING_MODEL,
                    description=(
                        f"LoRA adapter in GGUF (rank {adapter['rank']}, alpha "
                        f"{adapter['alpha']:g}, {adapter['targets']} tensors) for "
                        f"{adapter['base']}, sealed to the site recipients"
                    ),
                    hashes=hashes(path),
                    properties=[
                        Property(name="appliance:base_model", value=str(adapter["base"])),
                        Property(name="appliance:plaintext_sha256", value=str(adapter["sha256"])),
                        Property(name="appliance:plaintext_bytes", value=str(adapter["bytes"])),
                        Property(name="appliance:installed_as", value=f"releases/V/{name}"),
                    ],
                    bom_ref=name,
                )
            )
            bom.components.add(adapted[-1])
        elif name.startswith("policy/"):
            bom.components.add(
                Component(
                    name="policy",
                    type=ComponentType.DATA,
                    hashes=hashes(path),
                    bom_ref=name,
                )
            )
    bom.register_dependency(root, list(bom.components))
    model = [c for c in bom.components if str(c.bom_ref) == manifest["model"]["file"]]
    for component in adapted:
        bom.register_dependency(component, model)
    return str(JsonV1Dot6(bom).output_as_string(indent=2))
