"""A document's classification: the highest of what the user declared and what it says.

Every block is read, headers and footers included (that is where markings
usually are): a marking always carries its level, and each policy rule with
`input = "label"` that matches (grid references, codenames) raises the label
to the rule's level, exactly as in a prompt. Findings are counted by type,
never by value, for the audit log.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from appliance.documents.model import Parsed
from appliance.policy import Level, Policy, check_input


@dataclass(frozen=True)
class DocumentLabel:
    label: Level  # the highest of declared and found
    found: Level  # what the text itself demands (the policy's lowest if nothing)
    findings: dict[str, int]  # detector -> count
    markings: tuple[str, ...]  # the markings seen, each once

    def raised_by(self) -> str:
        """Why the label is above what was declared, for a refusal's message."""
        if self.markings:
            return "the marking " + ", ".join(self.markings)
        kinds = sorted(self.findings)
        return "findings of " + ", ".join(kinds) if kinds else "the declared level"


def document_label(policy: Policy, parsed: Parsed, declared: Level) -> DocumentLabel:
    found = policy.lowest
    findings: Counter[str] = Counter()
    markings: dict[str, None] = {}
    for block in parsed.blocks:
        if not block.text.strip():
            continue
        checked = check_input(policy, block.text, policy.lowest)
        if checked.label.rank > found.rank:
            found = checked.label
        for finding in checked.findings:
            findings[finding.detector] += 1
            if finding.marking is not None:
                markings[finding.marking] = None
    label = found if found.rank > declared.rank else declared
    return DocumentLabel(label, found, dict(sorted(findings.items())), tuple(markings))
