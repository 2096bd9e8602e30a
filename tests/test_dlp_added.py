"""The `added` direction: text the appliance puts in a prompt is redacted or
allowed, never blocked, and keeps its stored label."""

from __future__ import annotations

from pathlib import Path

from appliance.policy import check_input, load_policy, shipped_policy
from appliance.policy.dlp import check_added

DEFENSE = load_policy(shipped_policy("defense-kr"))
CHUNK = (
    "담당자 주민번호 900101-1234568, 연락처 010-2345-6789, 문서 등급 Ⅱ급비밀, "
    "좌표 52S CG 12345 67890"
)

MINIMAL = """
[policy]
name = "minimal"
version = 1
language = "en"
[identity]
allow_dev_mode = true
lockout_failures = 5
lockout_minutes = 15
idle_timeout_minutes = 60
min_password_length = 10
[audit]
require_content = false
[network]
require_airgap = false
[classification]
default = "public"
[[classification.levels]]
id = "public"
ko = "공개"
en = "UNCLASSIFIED"
colour = "green"
[[classification.levels]]
id = "secret"
ko = "비밀"
en = "SECRET"
colour = "red"
markings = ["secret-2"]
[dlp.detectors]
rrn = { input = "allow", output = "allow" }
marking = { input = "label", output = "label" }
[[dlp.custom]]
id = "codename"
pattern = "작전명 \\\\S+"
input = "label"
level = "secret"
"""


def test_added_text_is_redacted_never_blocked_and_keeps_its_stored_label() -> None:
    stored = DEFENSE.level("secret-3")
    checked = check_added(DEFENSE, CHUNK, stored)
    assert checked.blocked is None  # rrn blocks a prompt, not added text
    assert checked.label is stored  # the Ⅱ급비밀 inside raises nothing
    assert checked.text == (
        "담당자 주민번호 ******-*******, 연락처 ***-****-****, 문서 등급 Ⅱ급비밀, "
        "좌표 *** ** ***** *****"
    )
    assert checked.actions == ["redact", "redact", "allow", "redact"]
    prompt = check_input(DEFENSE, CHUNK, DEFENSE.lowest)
    assert prompt.blocked is not None
    assert prompt.label.id == "secret-2"  # the marking raises a prompt's label


def test_added_is_redact_when_a_rule_does_not_say(tmp_path: Path) -> None:
    path = tmp_path / "minimal.toml"
    path.write_text(MINIMAL, encoding="utf-8")
    policy = load_policy(path)
    text = "작전명 번개, 주민번호 900101-1234568, 연락처 010-2345-6789, Ⅱ급비밀"
    assert check_input(policy, text, policy.lowest).text == text  # allowed in a prompt
    checked = check_added(policy, text, policy.lowest)
    assert checked.text == "*** **, 주민번호 ******-*******, 연락처 ***-****-****, ****"
    assert checked.label is policy.lowest
    assert set(checked.actions) == {"redact"}


def test_summary_of_added_text_names_types_not_values() -> None:
    checked = check_added(DEFENSE, CHUNK, DEFENSE.lowest)
    assert "900101" not in str(checked.summary())
    assert [row["type"] for row in checked.summary()] == ["rrn", "phone", "marking", "mgrs"]
