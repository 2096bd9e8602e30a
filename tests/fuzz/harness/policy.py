"""Policy files (TOML): loaded, then their detectors run over a probe text."""

from __future__ import annotations

from appliance.errors import InputError, PolicyError
from appliance.policy import load_policy
from appliance.policy.schema import DETECTORS
from tests.fuzz.harness.common import as_file, refusals
from tests.fuzz.harness.dlp import check_stream, check_text

# Custom detectors run over text like this: non-ASCII (so findings are mapped
# back through the normaliser) and a little of everything the detectors know.
_POLICY_PROBE = (
    "작전명 “한빛” 01O-1234-5678 계좌 110-234-567890 "
    "\uff33\uff25\uff23\uff32\uff25\uff34 대외비\u200b."  # full-width SECRET, a zero-width space
)


def fuzz_policy(data: bytes) -> None:
    path = as_file("policy.toml", data)
    with refusals(PolicyError, InputError):  # InputError: larger than a policy may be
        policy = load_policy(path)
        assert [level.rank for level in policy.levels] == list(range(len(policy.levels)))
        policy.level(policy.default_level)
        assert set(policy.rules) == set(DETECTORS)
        check_text(policy, _POLICY_PROBE)
        check_stream(policy, _POLICY_PROBE, 7)
