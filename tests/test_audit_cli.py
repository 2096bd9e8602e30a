"""`appliance audit ...` and the audit records every ask leaves, through the real CLI."""

from __future__ import annotations

import json
import shlex
import sqlite3
import sys
from pathlib import Path

import pytest

from appliance.audit import audit_dir
from appliance.seal import Identity, write_identity
from tests.conftest import assert_one_line_error, in_private_mounts, run_cli, with_officer

ASK = ["ask", "--max-tokens", "8", "--temperature", "0"]


@pytest.fixture
def officer_key(officer: Identity, tmp_path: Path) -> Path:
    path = tmp_path / "officer.key"
    write_identity(path, officer, None)
    return path


@pytest.fixture
def home(tmp_path: Path, officer: Identity) -> Path:
    """A fresh home whose audit content is sealed to the officer."""
    return with_officer(tmp_path / "home", officer)


def pubkey(home: Path) -> str:
    result = run_cli("audit", "key", home=home)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def show(home: Path, *args: str) -> list[dict]:
    result = run_cli("audit", "show", "--json", *args, home=home)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.model
def test_every_ask_is_recorded_and_only_the_officer_reads_it(
    model_path: Path, home: Path, officer_key: Path, tmp_path: Path
) -> None:
    answer = run_cli(*ASK, "--model", str(model_path), "What is 2+2?", home=home)
    assert answer.returncode == 0, answer.stderr
    events = show(home)
    ask, reply = events[-2], events[-1]
    assert (ask["action"], reply["action"]) == ("ask", "answer")
    assert reply["details"]["ask_seq"] == ask["seq"]
    assert reply["details"]["completion_tokens"] >= 1
    assert ask["object"] == model_path.name
    assert ask["content_state"] == reply["content_state"] == "sealed"
    database = (audit_dir(home) / "log.db").read_bytes()
    assert b"What is 2+2?" not in database  # sealed, not stored in clear

    opened = show(home, "--decrypt", "--identity", str(officer_key), "--action", "ask")
    assert opened[-1]["content"] == {"prompt": "What is 2+2?"}
    replies = show(home, "--decrypt", "--identity", str(officer_key), "--action", "answer")
    assert answer.stdout == replies[-1]["content"]["answer"] + "\n"  # exactly what was shown

    operator = tmp_path / "operator.key"
    write_identity(operator, Identity.generate(), None)
    refused = run_cli("audit", "show", "--decrypt", "--identity", str(operator), home=home)
    assert_one_line_error(refused, 9, "sealed to the security officer")

    verified = run_cli("audit", "verify", "--json", home=home)
    assert verified.returncode == 0, verified.stderr
    report = json.loads(verified.stdout)
    assert report["ok"] is True
    assert report["last_seq"] == reply["seq"]
    assert report["unsigned_tail"] == 0  # the command signed its events before it exited


@pytest.mark.model
def test_chat_records_each_turn(model_path: Path, home: Path) -> None:
    script = "Hello\nWhat is the capital of France?\n"
    chat = run_cli("chat", "--max-tokens", "6", "--model", str(model_path), home=home, stdin=script)
    assert chat.returncode == 0, chat.stderr
    actions = [event["action"] for event in show(home)]
    assert actions[-4:] == ["ask", "answer", "ask", "answer"]


@pytest.mark.model
def test_a_read_only_audit_log_fails_the_ask(model_path: Path, home: Path) -> None:
    log_dir = shlex.quote(str(audit_dir(home)))
    command = [sys.executable, "-m", "appliance", *ASK, "--model", str(model_path), "Hi"]
    script = (
        f"mount --bind {log_dir} {log_dir} && mount -o remount,bind,ro {log_dir} && "
        f"exec {shlex.join(command)}"
    )
    result = in_private_mounts(script, home)
    assert_one_line_error(result, 11, "audit log")
    assert result.stdout == ""  # no answer without its record


@pytest.mark.model
def test_a_full_disk_fails_the_ask(model_path: Path, home: Path, tmp_path: Path) -> None:
    log_dir = shlex.quote(str(audit_dir(home)))
    saved = shlex.quote(str(tmp_path / "saved"))
    command = [sys.executable, "-m", "appliance", *ASK, "--model", str(model_path), "Hi"]
    script = " && ".join(
        [
            f"cp -a {log_dir} {saved}",
            f"mount -t tmpfs -o size=1m tmpfs {log_dir}",
            f"cp -a {saved}/. {log_dir}",
            f"(dd if=/dev/zero of={log_dir}/filler bs=4k 2>/dev/null || true)",
            f"exec {shlex.join(command)}",
        ]
    )
    result = in_private_mounts(script, home)
    assert_one_line_error(result, 11, "full")
    assert result.stdout == ""


def test_export_and_verify_export_advance_the_trusted_checkpoint(
    home: Path, tmp_path: Path
) -> None:
    key = pubkey(home)
    first = tmp_path / "first.jsonl"
    exported = run_cli("audit", "export", "--out", str(first), home=home)
    assert exported.returncode == 0, exported.stderr
    assert first.stat().st_mode & 0o777 == 0o600
    trusted = tmp_path / "trusted.json"
    checked = run_cli(
        "audit", "verify-export", str(first), "--pubkey", key,
        "--save-checkpoint", str(trusted), home=tmp_path,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert "deleted tail cannot be ruled out" in checked.stdout
    first_seq = json.loads(json.loads(trusted.read_text())["checkpoint"])["seq"]

    second = tmp_path / "second.csv"
    run_cli("audit", "export", "--out", str(second), "--format", "csv", home=home)
    again = run_cli(
        "audit", "verify-export", str(second), "--pubkey", key,
        "--trusted-checkpoint", str(trusted), "--json", home=tmp_path,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["trusted_seq"] == first_seq
    assert json.loads(json.loads(trusted.read_text())["checkpoint"])["seq"] == report["last_seq"]

    refused = run_cli("audit", "export", "--out", str(second), home=home)
    assert_one_line_error(refused, 2, "refusing to overwrite")


def test_an_export_with_its_tail_dropped_is_rejected(home: Path, tmp_path: Path) -> None:
    key = pubkey(home)
    for n in range(3):
        run_cli("audit", "export", "--out", str(tmp_path / f"e{n}.jsonl"), home=home)
    trusted = tmp_path / "trusted.json"
    first = run_cli(
        "audit", "verify-export", str(tmp_path / "e2.jsonl"), "--pubkey", key,
        "--save-checkpoint", str(trusted), home=tmp_path,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    conn = sqlite3.connect(audit_dir(home) / "log.db", isolation_level=None)
    conn.execute("DROP TRIGGER events_append_only")
    conn.execute("DROP TRIGGER checkpoints_no_delete")
    conn.execute("DELETE FROM events WHERE seq > 3")
    conn.execute("DELETE FROM checkpoints WHERE seq > 3")
    conn.close()
    later = tmp_path / "later.jsonl"
    assert run_cli("audit", "export", "--out", str(later), home=home).returncode == 0
    rejected = run_cli(
        "audit", "verify-export", str(later), "--pubkey", key,
        "--trusted-checkpoint", str(trusted), "--json", home=tmp_path,
    )  # fmt: skip
    failure = json.loads(rejected.stdout)
    assert (failure["ok"], failure["seq"]) == (False, 5)
    assert_one_line_error(rejected, 6, "before the trusted checkpoint at seq 5")


def test_verify_reports_the_first_bad_seq(home: Path) -> None:
    conn = sqlite3.connect(audit_dir(home) / "log.db", isolation_level=None)
    conn.execute("DROP TRIGGER events_prune_only")
    conn.execute("UPDATE events SET leaf = replace(leaf, 'officer', 'nobody') WHERE seq = 2")
    conn.close()
    result = run_cli("audit", "verify", "--json", home=home)
    assert result.returncode == 6
    assert json.loads(result.stdout)["seq"] == 2
    assert_one_line_error(result, 6, "at seq 2: the event was modified")


def test_prune_keeps_the_log_verifiable(home: Path, officer_key: Path) -> None:
    pruned = run_cli("audit", "prune", "--before", "2999-01-01", home=home)
    assert pruned.returncode == 0, pruned.stderr
    assert "up to seq 2" in pruned.stdout
    assert run_cli("audit", "verify", home=home).returncode == 0
    assert show(home, "--action", "prune")[-1]["details"]["through_seq"] == 2


def test_audit_key_prints_the_public_key_last(home: Path) -> None:
    result = run_cli("audit", "key", home=home)
    lines = result.stdout.strip().splitlines()
    assert lines[-1].startswith("aak1")
    assert any(line.startswith("Device key:") and "SHA256:" in line for line in lines)


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["audit", "verify"], 3, "no audit log"),
        (["audit", "show", "--action", "ask"], 3, "no audit log"),
        (["audit", "verify-export", "x.jsonl", "--pubkey", "aak1nope"], 2, "not a valid"),
        (["audit", "verify-export", "missing.jsonl", "--pubkey", None], 3, "cannot read"),
        (["audit", "officer", "--identity", "missing.key"], 3, "missing.key"),
    ],
)
def test_audit_usage_errors(tmp_path: Path, home: Path, args, code: int, fragment: str) -> None:
    args = [pubkey(home) if arg is None else arg for arg in args]
    assert_one_line_error(run_cli(*args, home=tmp_path / "empty"), code, fragment)


def test_show_rejects_a_bad_time(home: Path) -> None:
    result = run_cli("audit", "show", "--since", "yesterday", home=home)
    assert_one_line_error(result, 2, "not an ISO date")
