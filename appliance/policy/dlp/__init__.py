"""Data-loss prevention: find identifiers and markings, then apply the policy.

`scan` returns findings in original-text positions. `check_input` applies
the input rules to a prompt (redact, block, raise the label); `check_added`
the added rules to text the appliance itself puts in a prompt (redact or
allow; its stored label stays); `OutputGuard` applies the output rules to a
streamed answer, holding back the last `holdback` characters so an
identifier split across tokens is caught before any of it is shown.
"""

from __future__ import annotations

from appliance.policy.dlp.apply import Checked, check_added, check_input, mask
from appliance.policy.dlp.detectors import Finding
from appliance.policy.dlp.scan import scan
from appliance.policy.dlp.stream import OutputGuard

__all__ = ["Checked", "Finding", "OutputGuard", "check_added", "check_input", "mask", "scan"]
