"""Data-loss prevention: find identifiers and markings, then apply the policy.

`scan` returns findings in original-text positions. `check_input` applies
the input rules to a prompt (redact, block, raise the label); `OutputGuard`
applies the output rules to a streamed answer, holding back the last
`holdback` characters so an identifier split across tokens is caught before
any of it is shown.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from appliance.policy.dlp.detectors import BUILTIN, Finding
from appliance.policy.dlp.normalize import normalise
from appliance.policy.schema import Level, Policy, Rule

__all__ = ["Checked", "Finding", "OutputGuard", "check_input", "mask", "scan"]


def scan(text: str, policy: Policy | None = None) -> list[Finding]:
    """Every finding in `text`, in order, overlaps resolved (longest first)."""
    norm = normalise(text)
    found: list[Finding] = []
    for detector in BUILTIN:
        found.extend(detector(norm.text))
    for custom in policy.custom if policy else ():
        found.extend(
            Finding(custom.id, m.start(), m.end(), "pattern")
            for m in custom.pattern.finditer(norm.text)
        )
    result: list[Finding] = []
    taken_until = -1
    for finding in sorted(found, key=lambda f: (f.start, -(f.end - f.start))):
        if finding.start < taken_until:
            continue  # inside a longer finding that starts earlier
        start, end = norm.span(finding.start, finding.end)
        result.append(Finding(finding.detector, start, end, finding.evidence, finding.marking))
        taken_until = finding.end
    return result


def mask(text: str) -> str:
    """Letters and digits become '*'; separators stay, so the shape is visible."""
    return "".join("*" if char.isalnum() else char for char in text)


@dataclass
class Checked:
    """A text after the policy: what to show, what was found, and the label."""

    text: str
    findings: list[Finding]
    actions: list[str]  # the action taken for each finding
    label: Level
    blocked: Finding | None = None

    def summary(self) -> list[dict[str, object]]:
        """Findings by type and position, never by value (for the audit log)."""
        return [
            {"type": f.detector, "start": f.start, "end": f.end, "action": action}
            for f, action in zip(self.findings, self.actions, strict=True)
        ]


def _rule(policy: Policy, detector: str) -> Rule:
    for custom in policy.custom:
        if custom.id == detector:
            return custom.rule
    return policy.rules.get(detector, Rule("allow", "allow"))


def _apply(
    policy: Policy, text: str, findings: Iterable[Finding], direction: str, label: Level
) -> Checked:
    parts: list[str] = []
    done = 0
    result = Checked(text, [], [], label)
    for finding in findings:
        rule = _rule(policy, finding.detector)
        action = rule.input if direction == "input" else rule.output
        raised = _raised_level(policy, finding, rule, action)
        if raised is not None and raised.rank > result.label.rank:
            result.label = raised
        if action == "block" and result.blocked is None:
            result.blocked = finding
        result.findings.append(finding)
        result.actions.append(action)
        if action == "redact":
            parts += [text[done : finding.start], mask(text[finding.start : finding.end])]
            done = finding.end
    result.text = "".join([*parts, text[done:]])
    return result


def _raised_level(policy: Policy, finding: Finding, rule: Rule, action: str) -> Level | None:
    """A marking always carries its level; other findings only with action "label"."""
    if finding.marking is not None:
        return policy.level_for_marking(finding.marking)
    if action == "label" and rule.level is not None:
        return policy.level(rule.level)
    return None


def check_input(policy: Policy, text: str, declared: Level) -> Checked:
    """Apply the input rules to a prompt; the label starts at the declared level."""
    return _apply(policy, text, scan(text, policy), "input", declared)


@dataclass
class OutputGuard:
    """Streams an answer through the output rules.

    feed() returns the text that is safe to show now; finish() the rest.
    Nothing within `holdback` characters of the end is shown until more text
    (or the end) proves no identifier runs through it.
    """

    policy: Policy
    label: Level
    _pending: str = ""
    _offset: int = 0  # characters already released
    findings: list[Finding] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    blocked: Finding | None = None

    def feed(self, piece: str) -> str:
        if self.blocked is not None:
            return ""
        self._pending += piece
        release = len(self._pending) - self.policy.holdback
        if release <= 0:
            return ""
        findings = scan(self._pending, self.policy)
        for finding in findings:  # never cut through an identifier
            if finding.start < release < finding.end:
                release = finding.start
        return self._release(release, [f for f in findings if f.end <= release])

    def finish(self) -> str:
        if self.blocked is not None:
            return ""
        return self._release(len(self._pending), scan(self._pending, self.policy))

    def _release(self, upto: int, findings: list[Finding]) -> str:
        checked = _apply(self.policy, self._pending[:upto], findings, "output", self.label)
        self.label = checked.label
        shift = self._offset
        self.findings += [
            Finding(f.detector, f.start + shift, f.end + shift, f.evidence, f.marking)
            for f in checked.findings
        ]
        self.actions += checked.actions
        if checked.blocked is not None:
            self.blocked = checked.blocked
            return ""
        self._pending = self._pending[upto:]
        self._offset += upto
        return checked.text

    def summary(self) -> list[dict[str, object]]:
        return Checked("", self.findings, self.actions, self.label).summary()
