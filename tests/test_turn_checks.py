"""Every turn is checked whole: every message, the carried label, the air gap, and
what a user below an answer's label may see of it."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.audit import AuditLog
from appliance.config import GenerationParams
from appliance.engine import Message
from appliance.errors import BlockedError
from appliance.identity import Users
from appliance.policy.override import current, grant
from appliance.session import Conversation
from tests.conftest import AIR_GAPPED, assert_one_line_error, run_cli
from tests.staff import DEFENSE, as_user, events, open_session, password_file

SHORT = GenerationParams(max_tokens=4, temperature=0, seed=1)
ASK = ["ask", "--max-tokens", "12", "--temperature", "0", "--seed", "1"]


def _leaves(log: AuditLog, action: str) -> list[dict]:
    return [json.loads(row["leaf"]) for row in log.events(action=action)]


@pytest.mark.model
def test_history_is_redacted_and_the_label_carries_to_later_turns(engine, tmp_path) -> None:
    with AuditLog(tmp_path / "audit") as log:
        session = open_session(tmp_path, engine, log, "kim", "operator")
        conversation = Conversation()
        first = session.turn(conversation, "대외비 메모: 연락처 010-1234-5678", SHORT)
        list(first)
        first.close()
        assert "1234-5678" not in json.dumps([m.content for m in conversation.messages])
        assert conversation.label is not None
        assert conversation.label.id == "restricted"
        second = session.turn(conversation, "요약해 주세요", SHORT)
        list(second)
        second.close()
        asks = _leaves(log, "ask")
        assert [ask["label"] for ask in asks] == ["restricted", "restricted"]  # carried
        assert asks[1]["details"]["messages"] == 3


def test_an_old_unredacted_history_is_redacted_before_the_engine(engine, tmp_path) -> None:
    with AuditLog(tmp_path / "audit") as log:
        session = open_session(tmp_path, engine, log, "kim", "operator")
        saved = [Message("user", "전화 010-2222-3333"), Message("assistant", "네")]
        conversation = Conversation(None, saved)  # as a store from before this release holds it
        turn = session.turn(conversation, "다시", SHORT)
        list(turn)
        turn.close()
        (redaction,) = _leaves(log, "policy_redact")
        assert redaction["details"]["findings"][0]["type"] == "phone"
        assert "2222-3333" not in json.dumps([m.content for m in conversation.messages])


def test_the_system_prompt_is_checked_like_a_prompt(engine, tmp_path) -> None:
    with AuditLog(tmp_path / "audit") as log:
        session = open_session(tmp_path, engine, log, "kim", "operator")
        with pytest.raises(BlockedError, match="the system prompt was refused"):
            session.turn(Conversation("주민번호 900101-1234568 사용자"), "안녕", SHORT)
        with pytest.raises(BlockedError, match="labelled Ⅱ급비밀, above the clearance of kim"):
            session.turn(Conversation("Ⅱ급비밀 지침을 따르시오"), "안녕", SHORT)
        assert _leaves(log, "ask") == []  # neither reached the model


def test_a_locked_or_reset_account_ends_the_session_at_its_next_turn(engine, tmp_path) -> None:
    with AuditLog(tmp_path / "audit") as log:
        session = open_session(tmp_path, engine, log, "kim", "operator")
        with Users(tmp_path) as users:
            users.set_password("kim", "reset-by-an-admin", 8)
        with pytest.raises(Exception, match="was changed or locked since it signed in"):
            session.turn(Conversation(), "안녕", SHORT)
        (logout,) = _leaves(log, "logout")
        assert logout["details"] == {"reason": "account changed"}


@pytest.mark.model
def test_the_system_prompt_through_the_cli(staffed: Path, tmp_path: Path, model_path) -> None:
    ask = [*ASK, "--model", str(model_path), *as_user(tmp_path, "kim")]
    blocked = run_cli(*ask, "--system", "주민번호 900101-1234568", "hi", home=staffed,
                      air_gapped=True)  # fmt: skip
    assert_one_line_error(blocked, 13, "the system prompt was refused")
    above = run_cli(*ask, "--system", "Ⅱ급비밀", "hi", home=staffed, air_gapped=True)
    assert_one_line_error(above, 13, "labelled Ⅱ급비밀")


@pytest.mark.model
def test_an_answer_whose_label_rises_at_the_end_is_never_printed(
    staffed: Path, tmp_path: Path, model_path
) -> None:
    with Users(staffed) as users:  # an operator cleared to the top level sees answers stream
        users.add("park", "operator", "secret-1", "operator-pass-2", 8, must_change=False)
    prompt = "The capital of France is"
    ask = [*ASK, "--model", str(model_path), prompt]
    seen = run_cli(*ask, *as_user(tmp_path, "park", "operator-pass-2"), home=staffed,
                   air_gapped=True)  # fmt: skip
    assert seen.returncode == 0, seen.stderr
    words = re.findall(r"[A-Za-z]{3,}", seen.stdout)
    assert len(words) >= 2, seen.stdout  # something shown before the word that raises the label
    rule = (
        f'\n[[dlp.custom]]\nid = "late-word"\npattern = "\\\\b{words[-1]}\\\\b"\n'
        'input = "allow"\noutput = "label"\nlevel = "secret-3"\n'
    )
    policy = staffed / "policy.toml"
    policy.write_text(policy.read_text(encoding="utf-8") + rule, encoding="utf-8")
    below = run_cli(*ask, *as_user(tmp_path, "kim"), home=staffed, air_gapped=True)
    assert_one_line_error(below, 13, "the answer is labelled Ⅲ급비밀")
    assert below.stdout == ""  # not the words before it either
    answer = events(staffed, tmp_path, "--action", "answer")[-1]
    assert (answer["outcome"], answer["label"]) == ("denied", "secret-3")


@pytest.mark.model
def test_the_air_gap_is_checked_before_every_turn(
    staffed: Path, tmp_path: Path, model_path
) -> None:
    """A chat that began air-gapped stops answering once a link comes up."""
    out, go = tmp_path / "out", tmp_path / "go"
    chat = [
        sys.executable, "-m", "appliance", "chat", "--max-tokens", "4", "--temperature", "0",
        "--model", str(model_path), "--user", "kim",
        "--password-file", password_file(tmp_path, "kim"),
    ]  # fmt: skip
    script = f"""
    ( echo "first question"; timeout 120 sh -c 'until [ -e {go} ]; do sleep 0.1; done'
      echo "second question" ) | {shlex.join(chat)} > {out} &
    timeout 120 sh -c 'until [ -s {out} ]; do sleep 0.1; done'
    ip link add v0 type veth peer name v1 && ip link set v0 up && ip link set v1 up
    touch {go}
    wait $!
    """
    env = {**os.environ, "APPLIANCE_HOME": str(staffed)}
    result = subprocess.run(
        [*AIR_GAPPED, "sh", "-c", script], capture_output=True, text=True, env=env,
        timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 13, result.stderr
    assert "requires an air gap, but interface v" in result.stderr
    assert out.read_text().strip()  # the first answer was given
    asks = events(staffed, tmp_path, "--action", "ask")
    assert len(asks) == 1  # the second question never reached the model
    refusal = events(staffed, tmp_path, "--action", "policy_block")[-1]
    assert "interface v" in refusal["details"]["airgap"]


def test_a_private_namespace_does_not_pass_for_an_air_gap(tmp_path: Path) -> None:
    """Under PrivateNetwork=yes a process sees an empty namespace: the host's is read too."""
    host_routes = set()
    for line in Path("/proc/1/net/route").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[0] != "lo" and int(fields[3], 16) & 1:  # RTF_UP
            host_routes.add(fields[0])
    env = {**os.environ, "APPLIANCE_HOME": str(tmp_path)}
    inside = subprocess.run(
        ["unshare", "--net", sys.executable, "-m", "appliance", "airgap", "status", "--json"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    status = json.loads(inside.stdout)
    ipv4 = {r["interface"] for r in status["routes"] if r["family"] == "ipv4"}
    assert ipv4 == host_routes
    assert status["airgapped"] is (not status["routes"])
    assert all(reason.startswith("the host has") for reason in status["reasons"])


def test_an_override_is_bounded_by_the_policy(staffed: Path, tmp_path: Path) -> None:
    assert DEFENSE.is_file()
    long = run_cli(
        "airgap", "override", "--minutes", "1440", "--reason", "maintenance",
        *as_user(tmp_path, "lee"), home=staffed,
    )  # fmt: skip
    assert_one_line_error(long, 2, "at most")


def test_an_override_ends_at_the_bound_of_the_policy_in_force(tmp_path: Path) -> None:
    granted = grant(tmp_path, "lee", 600, "granted under a laxer policy")
    assert current(tmp_path, 1440) == granted
    bounded = current(tmp_path, 60)  # a stricter policy since: an hour from the grant
    assert bounded is not None
    assert bounded.until_us == granted.granted_us + 60 * 60_000_000
    assert current(tmp_path, 0) is None  # a policy that allows none ends it
    (tmp_path / "airgap-override.json").write_text('{"user": "lee", "until_us": 9e18}')
    assert current(tmp_path, 1440) is None  # no grant time: not an override (fail closed)
