"""Apply a policy's rules to findings: redact, block, raise the label."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from appliance.policy.dlp.detectors import Finding
from appliance.policy.dlp.normalize import fold
from appliance.policy.dlp.scan import scan
from appliance.policy.schema import Level, Policy, Rule


def mask(text: str) -> str:
    """Letters and digits become '*'; separators stay, so the shape is visible.

    Invisible characters go: a masked value carries nothing hidden.
    """
    return "".join(_mask(char) for char in text)


def _mask(char: str) -> str:
    folded = fold(char)
    if any(part.isalnum() for part in folded):
        return "*"
    return char if folded else ""


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


def check_input(policy: Policy, text: str, declared: Level) -> Checked:
    """Apply the input rules to a prompt; the label starts at the declared level."""
    return apply(policy, text, scan(text, policy), "input", declared)


def check_added(policy: Policy, text: str, label: Level) -> Checked:
    """Apply the added rules to text the appliance puts in a prompt (a retrieved
    chunk, a file the user asks about): redact or allow, never block.

    The text keeps its stored `label`; a marking inside it does not raise it.
    """
    return apply(policy, text, scan(text, policy), "added", label)


def rule_for(policy: Policy, detector: str) -> Rule:
    for custom in policy.custom:
        if custom.id == detector:
            return custom.rule
    return policy.rules.get(detector, Rule("allow", "allow"))


def action_for(rule: Rule, direction: str) -> str:
    if direction == "added":  # only allow or redact; anything else fails closed
        return "allow" if rule.added == "allow" else "redact"
    return rule.input if direction == "input" else rule.output


def apply(
    policy: Policy, text: str, findings: Iterable[Finding], direction: str, label: Level
) -> Checked:
    """`findings` (positions in `text`) through the rules of `direction`."""
    parts: list[str] = []
    done = 0
    result = Checked(text, [], [], label)
    for finding in findings:
        rule = rule_for(policy, finding.detector)
        action = action_for(rule, direction)
        raised = None if direction == "added" else _raised_level(policy, finding, rule, action)
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
