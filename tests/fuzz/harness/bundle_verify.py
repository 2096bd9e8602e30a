"""Bundle: the signed metadata (TUF) over the whole bundle."""

from __future__ import annotations

from functools import cache

from appliance.bundle.verify import verify_bundle
from appliance.errors import BundleError
from tests.fuzz.harness.common import BUNDLE_ROOT, as_file, refusals


def fuzz_bundle_verify(data: bytes) -> None:
    path = as_file("fuzz.bundle", data)
    with refusals(BundleError), verify_bundle(path, None, _bundle_root()) as verified:
        assert verified.release
        assert verified.model_file in verified.targets


@cache
def _bundle_root() -> bytes:
    return BUNDLE_ROOT.read_bytes()
