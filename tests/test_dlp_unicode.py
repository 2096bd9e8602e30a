"""DLP on ordinary Unicode: every evasion class against every identifier kind, the
spellings the detectors used to miss, 법인 before a resident number, clean text,
and linear work on long runs of spaces."""

# ruff: noqa: RUF001 (look-alike characters are the point of these tests)
from __future__ import annotations

import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from appliance.policy import check_input, load_policy, scan, shipped_policy
from appliance.policy.dlp.detectors import corporate_checksum_ok
from appliance.policy.dlp.normalize import normalise
from tests.dlp_corpus import CLEAN_UNICODE, DASHES, EVASIONS, KINDS, SPACES, Kind, evaded

DEFENSE = load_policy(shipped_policy("defense-kr"))
SEPARATORS = set(SPACES + DASHES + "-.() （）")


def _found(text: str) -> set[tuple[str, int, int]]:
    return {
        (f"marking:{f.marking}" if f.marking else f.detector, f.start, f.end)
        for f in scan(text, DEFENSE)
    }


CASES = [
    pytest.param(kind, name, id=f"{name}-{kind.name}")
    for name, evasions in EVASIONS.items()
    for kind in KINDS
    if any(evaded(kind, evasion) for evasion in evasions)
]


@pytest.mark.parametrize(("kind", "evasion"), CASES)
def test_every_evasion_is_caught_at_the_span_the_user_typed(kind: Kind, evasion: str) -> None:
    samples = [s for e in EVASIONS[evasion] if (s := evaded(kind, e)) is not None]
    missed = [s.text for s in samples if s.spans[0] not in _found(s.text)]
    assert missed == [], f"{len(missed)} of {len(samples)} missed"


@pytest.fixture(scope="module")
def redact_all(tmp_path_factory: pytest.TempPathFactory):
    text = shipped_policy("default").read_text(encoding="utf-8")
    for action in ("allow", "label"):
        text = text.replace(f'input = "{action}"', 'input = "redact"')
    path = tmp_path_factory.mktemp("policy") / "redact-all.toml"
    path.write_text(text, encoding="utf-8")
    return load_policy(path)


@pytest.mark.parametrize("evasion", sorted(EVASIONS))
def test_redaction_masks_the_whole_value_as_typed(redact_all, evasion: str) -> None:
    for kind in KINDS:
        for sample in filter(None, (evaded(kind, e) for e in EVASIONS[evasion])):
            _, start, end = sample.spans[0]
            checked = check_input(redact_all, sample.text, redact_all.lowest)
            assert checked.text.startswith(sample.text[:start])
            assert checked.text.endswith(sample.text[end:])
            masked = checked.text[start : len(checked.text) - len(sample.text) + end]
            assert "*" in masked
            assert set(masked) <= SEPARATORS | {"*"}, (sample.text, masked)


@pytest.mark.parametrize(
    ("text", "marking"),
    [
        ("비밀(Ⅱ급)", "secret-2"),
        ("비밀 (2급)", "secret-2"),
        ("비밀 Ⅲ급", "secret-3"),
        ("비밀(제1급)", "secret-1"),
        ("秘密(Ⅱ級)", "secret-2"),
        ("Ⅱ급 비밀", "secret-2"),
        ("Ⅱ級秘密", "secret-2"),
        ("二級秘密", "secret-2"),
        ("貳級秘密", "secret-2"),
        ("一級秘密", "secret-1"),
        ("參級秘密", "secret-3"),
        ("Ⅰ급祕密", "secret-1"),
        ("2급 비밀", "secret-2"),
        ("이급비밀", "secret-2"),
        ("對外秘", "restricted"),
        ("对外秘", "restricted"),
        ("対外秘", "restricted"),
        ("대외秘", "restricted"),
        ("TOP\u00a0SECRET", "secret-1"),
        ("TOP\u200bSECRET", "secret-1"),
        ("ꜱᴇᴄʀᴇᴛ", "secret-2"),
        ("𝐒𝐄𝐂𝐑𝐄𝐓", "secret-2"),
    ],
)
def test_markings_in_the_spellings_people_use(text: str, marking: str) -> None:
    (finding,) = scan(f"문서 등급: {text} 입니다", DEFENSE)
    assert (finding.marking, finding.start, finding.end) == (marking, 7, 7 + len(text))


@pytest.mark.parametrize(
    "text", ["02) 748-1234", "(02) 748-1234", "(031)123-4567", "010)2345-6789", "+82 (0)2 748 1234"]
)
def test_a_landline_with_its_area_code_in_brackets(text: str) -> None:
    (finding,) = scan(f"연락처 {text} 입니다", DEFENSE)
    assert finding.detector == "phone"
    assert f"연락처 {text}"[finding.start : finding.end] == text.lstrip("(")


def _resident_numbers_passing_the_corporate_checksum(count: int) -> list[str]:
    rng, found = random.Random(7), []
    while len(found) < count:
        year, month, day = rng.randint(1950, 2019), rng.randint(1, 12), rng.randint(1, 28)
        gender = rng.choice((1, 2) if year < 2000 else (3, 4))
        front = f"{year % 100:02d}{month:02d}{day:02d}{gender}"
        digits = [int(d) for d in front + "".join(str(rng.randint(0, 9)) for _ in range(6))]
        if corporate_checksum_ok(digits):
            number = "".join(map(str, digits))
            found.append(f"{number[:6]}-{number[6:]}")
    return found


@pytest.mark.parametrize("number", _resident_numbers_passing_the_corporate_checksum(20))
@pytest.mark.parametrize("prefix", ["법인등록번호 ", "법인 ", "法人 번호: "])
def test_a_valid_resident_number_stays_one_after_the_word_corporate(
    prefix: str, number: str
) -> None:
    (finding,) = scan(f"{prefix}{number}", DEFENSE)
    assert finding.detector == "rrn"
    assert check_input(DEFENSE, f"{prefix}{number}", DEFENSE.lowest).blocked is not None


def test_a_corporate_number_that_is_no_resident_number_stays_corporate() -> None:
    digits = [1, 1, 0, 1, 1, 1, 0, 1, 2, 3, 4, 5]  # the 7th, 0, is no gender digit
    check = next(d for d in range(10) if corporate_checksum_ok([*digits, d]))
    number = f"110111-012345{check}"
    (finding,) = scan(f"법인등록번호 {number}", DEFENSE)
    assert finding.detector == "corporate_rn"
    assert scan(number, DEFENSE) == []  # without the word it is nothing


def test_clean_text_in_ordinary_unicode_has_no_findings() -> None:
    noisy = {text: scan(text, DEFENSE) for text in CLEAN_UNICODE if scan(text, DEFENSE)}
    assert noisy == {}


@pytest.mark.parametrize("size", [1_000, 16_000, 64_000])
def test_a_run_of_spaces_reaches_the_detectors_as_one_space(size: int) -> None:
    """The detectors' input does not grow with the run, so neither does their work."""
    text = "900101" + " " * size + "\u00a0\t\u3000" * size + "x"
    norm = normalise(text)
    assert norm.text == "900101 x"
    assert norm.span(6, 7) == (6, 6 + 4 * size)  # the one space stands for the whole run


LONG_RUNS = """
    import resource, sys
    resource.setrlimit(resource.RLIMIT_CPU, (20, 20))
    from appliance.policy import OutputGuard, load_policy, scan, shipped_policy
    policy = load_policy(shipped_policy("defense-kr"))
    n = 100_000
    for text in (
        "900101" + " " * n + "x", "1 " * n, "1-" * n, "1\\u00a0-" * n, "12" + "\\u200b " * n,
        "군번 12" + " " * n, "계좌 12" + " 1" * n, "비밀(" + " " * n, "대 " * n,
        "TOP" + " " * n, "SECRET//" + "A " * n, "9O" * n, "\\u202e" + "1 " * n,
        "\\u1100" * n, "a\\u0301" * n,
    ):
        scan(text, policy)
    guard = OutputGuard(policy, policy.lowest)
    for _ in range(2_000):
        guard.feed("900101" + " " * 50)
    guard.finish()
    print("ok")
"""


def test_long_runs_scan_in_linear_time() -> None:
    """Fifteen shapes of 100,000-character runs: linear work takes a few seconds
    of CPU; a quadratic pattern (1.7 s for 16,000 spaces) would take minutes for
    each and is killed by the CPU limit."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(LONG_RUNS)],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.stdout.strip() == "ok", result.stderr[-2000:]
