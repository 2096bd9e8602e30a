"""DLP: normaliser, detectors, input rules, streamed output guard (dlp, dlp_stream)."""

from __future__ import annotations

import dataclasses
from functools import cache

from appliance.policy import (
    Finding,
    OutputGuard,
    Policy,
    check_added,
    check_input,
    load_policy,
    mask,
    scan,
    shipped_policy,
)
from appliance.policy.dlp.normalize import fold, normalise
from appliance.policy.schema import DETECTORS, Rule


@cache
def dlp_policies() -> tuple[Policy, ...]:
    """The shipped policies, and defense-kr with every detector redacting or allowing."""
    default = load_policy(shipped_policy("default"))
    defense = load_policy(shipped_policy("defense-kr"))

    def every(action: str) -> Policy:
        rule = Rule(action, action, None, action)
        custom = tuple(dataclasses.replace(c, rule=rule) for c in defense.custom)
        return dataclasses.replace(
            defense, rules=dict.fromkeys(DETECTORS, rule), custom=custom, _by_id={}
        )

    return default, defense, every("redact"), every("allow")


def fuzz_dlp(data: bytes) -> None:
    """First byte: the policy (bits 0-1); the rest is the text, normalised and checked."""
    if data:
        check_text(dlp_policies()[data[0] & 3], _text(data[1:]))


def fuzz_dlp_stream(data: bytes) -> None:
    """First byte: the policy (bits 0-1) and the size of the streamed pieces (bits 2-5)."""
    if data:
        check_stream(dlp_policies()[data[0] & 3], _text(data[1:]), 1 + (data[0] >> 2 & 15))


def _text(data: bytes) -> str:
    # surrogateescape: text read from a terminal or file can carry undecodable bytes
    return data.decode("utf-8", "surrogateescape")


def check_text(policy: Policy, text: str) -> None:
    """Normalise, scan and check `text`: every span inside it, nothing raised."""
    norm = normalise(text)
    assert len(norm.digits) == len(norm.text)
    if norm.starts is not None and norm.ends is not None:
        assert len(norm.starts) == len(norm.ends) == len(norm.text)
        assert all(0 <= s < e <= len(text) for s, e in zip(norm.starts, norm.ends, strict=True))
        assert norm.starts == sorted(norm.starts)

    findings = scan(text, policy)
    _check_spans(findings, len(text))

    lowest = policy.lowest
    checked = check_input(policy, text, lowest)
    assert checked.findings == findings
    assert checked.label.rank >= lowest.rank
    _check_redaction(text, checked.text, findings, checked.actions)
    added = check_added(policy, text, lowest)
    assert added.blocked is None
    assert added.label == lowest
    _check_redaction(text, added.text, findings, added.actions)


def check_stream(policy: Policy, text: str, piece: int) -> None:
    """Stream `text` through the output guard in pieces of `piece` characters."""
    guard = OutputGuard(policy, policy.lowest)
    pieces = [text[i : i + piece] for i in range(0, len(text), piece)]
    shown = "".join(guard.feed(part) for part in pieces) + guard.finish()
    _check_spans(guard.findings, len(text), overlapping=True)
    if guard.blocked is None:
        assert len(shown) <= len(text)
        if "redact" not in guard.actions:
            assert shown == text
    else:
        assert "block" in guard.actions


def _check_spans(findings: list[Finding], size: int, *, overlapping: bool = False) -> None:
    end = 0
    for finding in findings:
        assert 0 <= finding.start < finding.end <= size, finding
        assert overlapping or finding.start >= end, "findings overlap"
        end = finding.end


def _check_redaction(text: str, redacted: str, findings: list[Finding], actions: list[str]) -> None:
    """Masks keep separators, drop invisible characters and never lengthen the text."""
    assert len(actions) == len(findings)
    if "redact" not in actions:
        assert redacted == text
        return
    assert len(redacted) <= len(text)
    for finding, action in zip(findings, actions, strict=True):
        if action == "redact":
            masked = mask(text[finding.start : finding.end])
            assert masked in redacted
            assert not any(part.isalnum() for char in masked if char != "*" for part in fold(char))
