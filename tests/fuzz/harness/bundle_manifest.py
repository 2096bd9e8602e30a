"""Bundle: bundle.json, the release manifest."""

from __future__ import annotations

from appliance.bundle.manifest import model_pin, parse_manifest
from appliance.errors import ConfigError, InputError
from tests.fuzz.harness.common import as_file, refusals


def fuzz_bundle_manifest(data: bytes) -> None:
    with refusals(ValueError):  # the documented refusal; callers add the file's name
        manifest = parse_manifest(data)
        assert manifest.model_file.startswith("model/")
    with refusals(ConfigError, InputError):  # InputError: larger than a manifest may be
        model_pin(as_file("bundle.json", data))
