"""The fuzz targets, the module holding each one's harness, and the modules whose
coverage guides each one.

Kept apart from the harnesses, which import the parsers: run.py reads this
first, then imports only the target's harness module (HARNESS) under
atheris's instrumentation. Each target names only its parser and what parses
for it (the standard library's tar, ZIP and TOML readers, python-tuf), since
instrumenting costs start-up time. atheris itself instruments whole top-level
packages (a name like `appliance.engine.gguf` would instrument all of
`appliance` that is imported); `not_instrumented` lists the rest of such a
package so that only the modules named here are instrumented. python-hwpx (its
OLE reader sniffs HWP 5 files) is left out of `doc_sniff` for that cost.
"""

from __future__ import annotations

import importlib.util
import pkgutil
from collections.abc import Iterator, Sequence

INSTRUMENT: dict[str, tuple[str, ...]] = {
    "gguf": ("appliance.engine.gguf", "appliance.engine.hparams", "appliance.engine.info"),
    "sealed": ("appliance.seal",),
    "bundle_archive": ("appliance.bundle.archive", "tarfile"),
    "bundle_verify": ("appliance.bundle", "tarfile", "tuf"),
    "bundle_manifest": ("appliance.bundle.manifest",),
    "policy": ("appliance.policy", "tomllib"),
    "config": ("appliance.config", "tomllib"),
    "audit_export": ("appliance.audit",),
    "dlp": ("appliance.policy.dlp",),
    "dlp_stream": ("appliance.policy.dlp",),
    "protocol": ("appliance.service.protocol", "json"),
    "doc_sniff": ("appliance.documents.formats", "zipfile"),
    "doc_answer": ("appliance.documents.sandbox", "json"),
}

# The module that defines each target's harness, `fuzz_<target>`.
HARNESS: dict[str, str] = {
    target: f"tests.fuzz.harness.{'dlp' if target == 'dlp_stream' else target}"
    for target in INSTRUMENT
}


def not_instrumented(include: Sequence[str]) -> list[str]:
    """Every module of the packages `include` names a part of (found on disk, nothing
    imported) that is neither a named module nor inside a named package."""

    def named(module: str) -> bool:
        return any(module == name or module.startswith(f"{name}.") for name in include)

    packages = {name.partition(".")[0] for name in include} - set(include)
    return sorted(
        module for package in sorted(packages) for module in _modules(package) if not named(module)
    )


def _modules(package: str) -> Iterator[str]:
    spec = importlib.util.find_spec(package)
    yield package
    if spec is not None and spec.submodule_search_locations is not None:
        yield from _submodules(list(spec.submodule_search_locations), f"{package}.")


def _submodules(path: list[str], prefix: str) -> Iterator[str]:
    for info in pkgutil.iter_modules(path, prefix):
        yield info.name
        if info.ispkg:
            location = getattr(info.module_finder, "path", None)
            if location is not None:
                yield from _submodules(
                    [f"{location}/{info.name.rpartition('.')[2]}"], f"{info.name}."
                )
