"""Run every detector over the normalised text and map the findings back."""

from __future__ import annotations

import re

from appliance.policy.dlp.detectors import NUMBERS, WORDS, Finding
from appliance.policy.dlp.normalize import Normalised, normalise, remap
from appliance.policy.schema import Policy

# A right-to-left override shows what follows, up to its pop or the end of the
# line, in reverse: 8654321-101009 after U+202E reads 900101-1234568.
_OVERRIDE = re.compile("\u202e[^\u202c\n]*")


def scan(text: str, policy: Policy | None = None) -> list[Finding]:
    """Every finding in `text`, in order, overlaps resolved (longest first)."""
    return findings(text, normalise(text), policy)


def findings(text: str, norm: Normalised, policy: Policy | None) -> list[Finding]:
    """`scan`, given `normalise(text)`."""
    found = _detect(norm, policy)
    shown = _as_shown(text)
    if shown is not None:
        found += _detect(shown, policy)
    result: list[Finding] = []
    taken_until = -1
    for finding in sorted(found, key=lambda f: (f.start, -(f.end - f.start))):
        if finding.start < taken_until:
            continue  # inside a longer finding that starts earlier
        result.append(finding)
        taken_until = finding.end
    return result


def _detect(norm: Normalised, policy: Policy | None) -> list[Finding]:
    # Words first: on a tie they win over a number that needed O or l read as a digit.
    found = [f for detector in WORDS for f in detector(norm.text)]
    found += [f for detector in NUMBERS for f in detector(norm.digits)]
    for custom in policy.custom if policy else ():
        found += [  # a pattern may still match nothing somewhere (\b, a lookahead): no finding
            Finding(custom.id, m.start(), m.end(), "pattern")
            for m in custom.pattern.finditer(norm.text)
            if m.end() > m.start()
        ]
    mapped = []
    for f in found:
        start, end = norm.span(f.start, f.end)
        mapped.append(Finding(f.detector, start, end, f.evidence, f.marking))
    return mapped


def _as_shown(text: str) -> Normalised | None:
    """The text in the order it is shown, where an override reverses it; else None."""
    if "\u202e" not in text:
        return None
    parts: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    done = 0
    for match in _OVERRIDE.finditer(text):
        start, end = match.span()
        parts += [text[done:start], text[start:end][::-1]]
        starts += [*range(done, start), *[start] * (end - start)]  # reversed: one span
        ends += [*range(done + 1, start + 1), *[end] * (end - start)]
        done = end
    parts.append(text[done:])
    starts += range(done, len(text))
    ends += range(done + 1, len(text) + 1)
    return remap(normalise("".join(parts)), starts, ends, len(text))
