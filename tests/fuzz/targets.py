"""The fuzz targets and the modules whose coverage guides each one.

Kept apart from harnesses.py, which imports the parsers: run.py reads this
first, then imports the harnesses under atheris's instrumentation. Each
target names only its parser and what parses for it (the standard library's
tar, ZIP and TOML readers, python-tuf), since instrumenting costs start-up
time: atheris instruments whole top-level packages, which is why python-hwpx
(its OLE reader sniffs HWP 5 files) is left out of `doc_sniff`.
"""

from __future__ import annotations

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
