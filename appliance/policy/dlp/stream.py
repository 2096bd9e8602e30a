"""The output rules on a streamed answer, without showing part of an identifier."""

from __future__ import annotations

from dataclasses import dataclass, field

from appliance.policy.dlp.apply import Checked, apply
from appliance.policy.dlp.detectors import Finding
from appliance.policy.dlp.normalize import Normalised, normalise
from appliance.policy.dlp.scan import findings as scan_normalised
from appliance.policy.schema import Level, Policy


@dataclass
class OutputGuard:
    """Streams an answer through the output rules.

    feed() returns the text that is safe to show now; finish() the rest.
    Nothing within `holdback` characters of the end is shown until more text
    (or the end) proves no identifier runs through it. Characters are counted
    after normalisation, so invisible ones and runs of spaces cannot push an
    identifier out of the window, and a cut never falls inside a character
    that normalisation joins (a decomposed syllable, a letter and its marks).
    The scan also sees the end of what was already shown, where the keyword
    of an anchored identifier (군번, 계좌, 법인) may lie.
    """

    policy: Policy
    label: Level
    _context: str = ""  # the end of what was already released
    _pending: str = ""
    _offset: int = 0  # characters already released
    findings: list[Finding] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    blocked: Finding | None = None

    def feed(self, piece: str) -> str:
        if self.blocked is not None:
            return ""
        self._pending += piece
        window = self._context + self._pending
        norm = normalise(window)
        cut = len(norm.text) - self.policy.holdback
        release = norm.origin(cut) if cut > 0 else 0
        if release <= len(self._context):
            return ""
        found = scan_normalised(window, norm, self.policy)
        for finding in found:  # never cut through an identifier
            if finding.start < release < finding.end:
                release = finding.start
        return self._release(window, norm, release, found)

    def finish(self) -> str:
        if self.blocked is not None:
            return ""
        window = self._context + self._pending
        norm = normalise(window)
        return self._release(window, norm, len(window), scan_normalised(window, norm, self.policy))

    def _release(self, window: str, norm: Normalised, upto: int, found: list[Finding]) -> str:
        """Release window[len(context):upto], applying the findings that end by then."""
        start = len(self._context)
        if upto <= start:
            return ""
        mine = [  # what was shown before was checked before; only its tail can still be in one
            Finding(f.detector, max(f.start, start) - start, f.end - start, f.evidence, f.marking)
            for f in found
            if start < f.end <= upto
        ]
        checked: Checked = apply(self.policy, window[start:upto], mine, "output", self.label)
        self.label = checked.label
        self.findings += [
            Finding(f.detector, f.start + self._offset, f.end + self._offset, f.evidence, f.marking)
            for f in checked.findings
        ]
        self.actions += checked.actions
        if checked.blocked is not None:
            self.blocked = checked.blocked
            return ""
        self._pending = window[upto:]
        self._offset += upto - start
        # the last `holdback` normalised characters of what was shown, as written
        self._context = window[norm.origin(max(0, norm.index(upto) - self.policy.holdback)) : upto]
        return checked.text

    def summary(self) -> list[dict[str, object]]:
        return Checked("", self.findings, self.actions, self.label).summary()
