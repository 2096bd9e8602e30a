"""Policy files: the shipped ones are valid; every schema violation names its file and key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.errors import PolicyError
from appliance.policy import load_policy, shipped_policy
from tests.conftest import assert_one_line_error, run_cli

DEFAULT = shipped_policy("default").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["default", "defense-kr"])
def test_the_shipped_policies_are_valid(name: str) -> None:
    policy = load_policy(shipped_policy(name))
    assert policy.name == name
    assert [level.rank for level in policy.levels] == list(range(len(policy.levels)))


def test_defense_kr_has_the_national_levels_in_order() -> None:
    policy = load_policy(shipped_policy("defense-kr"))
    assert [level.ko for level in policy.levels] == [
        "공개",
        "대외비",
        "Ⅲ급비밀",
        "Ⅱ급비밀",
        "Ⅰ급비밀",
    ]
    assert policy.allow_dev_mode is False
    assert policy.require_airgap is True
    assert policy.level_for_marking("secret-2").id == "secret-2"


@pytest.mark.parametrize(
    ("edit", "key", "problem"),
    [
        (lambda t: t + "\n[extra]\nx = 1\n", "extra", "unknown key"),
        (lambda t: t.replace("lockout_failures = 5", "lockout_failures = true"),
         "identity.lockout_failures", "must be int"),
        (lambda t: t.replace("lockout_failures = 5", "lockout_failures = 0"),
         "identity.lockout_failures", "between 1 and 100"),
        (lambda t: t.replace('rrn = { input = "redact"', 'rrn = { input = "shred"'),
         "dlp.detectors.rrn.input", "must be one of"),
        (lambda t: t.replace('default = "public"', 'default = "nope"'),
         "classification.default", "no level 'nope'"),
        (lambda t: t.replace('mgrs = { input = "allow"', 'mgrs = { input = "label"'),
         "dlp.detectors.mgrs.level", "required"),
        (lambda t: t + '\n[[dlp.custom]]\nid = "x"\npattern = "("\n', "dlp.custom[0].pattern",
         "not a valid regular expression"),
        (lambda t: t + '\n[[dlp.custom]]\nid = "x"\npattern = "a*"\n', "dlp.custom[0].pattern",
         "matches the empty string"),
        (lambda t: t.replace('name = "default"', 'name = "Bad Name"'), "policy.name", "lower-case"),
        (lambda t: t.replace("[network]\nrequire_airgap = false\n", ""), "network", "missing"),
        (lambda t: t.replace('added = "redact" }', 'added = "block" }', 1),
         "dlp.detectors.rrn.added", "must be one of allow, redact"),
        (lambda t: t.replace('marking = { input = "label", output = "label", added = "allow" }',
                             'marking = { input = "label", output = "label", added = "label" }'),
         "dlp.detectors.marking.added", "must be one of allow, redact"),
        (lambda t: t + '\n[[dlp.custom]]\nid = "x"\npattern = "x"\nadded = "block"\n',
         "dlp.custom[0].added", "must be one of allow, redact"),
    ],
)  # fmt: skip
def test_schema_violations_name_the_file_and_key(tmp_path: Path, edit, key, problem) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(edit(DEFAULT), encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert str(caught.value).startswith(f"{path}: {key}: ")
    assert problem in str(caught.value)


def test_added_is_redact_unless_a_rule_says_allow(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    text = DEFAULT.replace(', added = "allow" }', " }").replace(', added = "redact" }', " }")
    path.write_text(text + '\n[[dlp.custom]]\nid = "x"\npattern = "x"\n', encoding="utf-8")
    policy = load_policy(path)
    assert {rule.added for rule in policy.rules.values()} == {"redact"}
    assert policy.custom[0].rule.added == "redact"
    shipped = load_policy(shipped_policy("default"))
    assert shipped.rules["marking"].added == "allow"
    assert shipped.rules["rrn"].added == "redact"


def test_policy_check_and_scan_on_the_command_line(tmp_path: Path) -> None:
    good = run_cli("policy", "check", str(shipped_policy("defense-kr")), home=tmp_path)
    assert good.returncode == 0, good.stderr
    assert "공개 < 대외비 < Ⅲ급비밀 < Ⅱ급비밀 < Ⅰ급비밀" in good.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[policy]\nname = 1\n", encoding="utf-8")
    assert_one_line_error(run_cli("policy", "check", str(bad), home=tmp_path), 12, str(bad))
    scan = run_cli(
        "policy", "scan", "--policy", str(shipped_policy("defense-kr")), "--json",
        "주민번호 900101-1234568 과 Ⅱ급비밀", home=tmp_path,
    )  # fmt: skip
    result = json.loads(scan.stdout)
    assert result["blocked"] is True
    assert result["label"] == "secret-2"
    assert [f["type"] for f in result["findings"]] == ["rrn", "marking"]
    assert result["text"] is None  # blocked: nothing goes on
    assert "900101" not in scan.stdout  # findings are shown masked, never by value
