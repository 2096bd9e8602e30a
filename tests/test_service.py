"""The appliance service: a real `appliance serve`, real sockets, the real model.

Two users at once, a hostile client speaking the protocol by hand, the
commands as clients, a crash mid-answer, and a bounded load.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path

import pytest

from appliance.errors import AuthenticationError, BlockedError, UsageError
from appliance.seal import Identity, write_identity
from tests.conftest import assert_one_line_error, run_cli
from tests.servicing import Service, add_operator, serving
from tests.staff import as_user, events, make_staffed, password_file

pytestmark = pytest.mark.model

SHORT = {"max_tokens": 12, "temperature": 0.0, "seed": 7}
# A prompt the model goes on answering until max_tokens (greedy): an answer that runs.
COUNTING = "Continue the list: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,"
LONG = {"max_tokens": 300, "temperature": 0.0, "seed": 1}


@pytest.fixture(scope="module")
def staff(tmp_path_factory: pytest.TempPathFactory, officer: Identity) -> Path:
    tmp = tmp_path_factory.mktemp("staff")
    home = make_staffed(tmp, officer)
    add_operator(home, "park")  # 대외비, like kim
    add_operator(home, "choi", "secret-1")  # cleared to the top: answers stream
    return home


@pytest.fixture(scope="module")
def service(staff: Path, model_path: Path):
    with serving(staff, model_path) as running:
        yield running


def _asks_and_answers(home: Path, tmp_path: Path) -> tuple[list[dict], list[dict]]:
    shown = events(home, tmp_path)
    return [e for e in shown if e["action"] == "ask"], [e for e in shown if e["action"] == "answer"]


def test_two_users_in_parallel_get_their_own_answers_and_a_cancel_touches_one(
    service: Service, staff: Path, tmp_path: Path
) -> None:
    results: dict[str, dict] = {}

    def kim() -> None:
        with service.client("kim") as client:
            answer = client.ask("Name three colours.", **SHORT)
            results["kim"] = {"text": answer.text(), **(answer.result or {})}

    def park() -> None:
        with service.client("park") as client:
            answer = client.ask(COUNTING, **LONG)
            answer.wait_started()  # recorded as asked: the cancel stops a running answer
            answer.cancel()
            results["park"] = {"text": answer.text(), **(answer.result or {})}

    threads = [threading.Thread(target=kim), threading.Thread(target=park)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert results["kim"]["outcome"] == "ok"
    assert results["kim"]["text"].strip()
    assert results["kim"]["label"] == "public"
    assert results["park"]["outcome"] == "cancelled"
    asks, answers = _asks_and_answers(staff, tmp_path)
    by_user = {(a["user"], a["outcome"]) for a in answers}
    assert ("kim", "ok") in by_user
    assert ("park", "cancelled") in by_user
    kim_ask = [a for a in asks if a["user"] == "kim"][-1]
    assert kim_ask["details"]["peer_uid"] >= 0  # the client's OS identity beside the account
    assert {a["details"]["ask_seq"] for a in answers} >= {a["seq"] for a in asks}


def test_answers_stream_only_to_a_user_no_marking_can_outrank(service: Service) -> None:
    with service.client("kim") as kim, service.client("choi") as choi:
        assert kim.signed_in["streaming"] is False
        assert choi.signed_in["streaming"] is True
        whole = kim.ask("Write a sentence about rain.", **SHORT)
        assert len(list(whole)) == 1  # sent at its end, once no marking can raise its label
        assert choi.ask("Write a sentence about rain.", **SHORT).text()


def test_the_cli_is_a_client_of_the_running_service(
    service: Service, staff: Path, tmp_path: Path
) -> None:
    asked = run_cli("ask", "Say hello.", "--max-tokens", "8", "--seed", "1",
                    *as_user(tmp_path, "kim"), home=staff)  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout.strip()
    chatted = run_cli("chat", "--max-tokens", "8", *as_user(tmp_path, "kim"), home=staff,
                      stdin="Hello.\nAnd again.\n")  # fmt: skip
    assert chatted.returncode == 0, chatted.stderr
    local = run_cli("ask", "hi", "--model", "x.gguf", *as_user(tmp_path, "kim"), home=staff)
    assert_one_line_error(local, 2, "the appliance service serves its own model")
    blocked = run_cli("ask", "주민번호 900101-1234568", *as_user(tmp_path, "kim"), home=staff)
    assert_one_line_error(blocked, 13, "it contains a resident registration number")
    status = run_cli("service", "status", "--json", *as_user(tmp_path, "root1"), home=staff)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["engine"]["backend"] == "in-process"
    denied = run_cli("service", "status", *as_user(tmp_path, "kim"), home=staff)
    assert_one_line_error(denied, 15, "needs the admin or officer role")


# -- a hostile client, by hand -------------------------------------------------------


def test_nothing_without_a_sign_in_or_with_another_users_session(service: Service) -> None:
    raw = service.raw()
    raw.request("ask", session="guess", prompt="hi")
    assert raw.final()["error"]["code"] == "no_session"
    with service.client("kim") as kim:
        stolen = kim.session
        raw.request("ask", 2, session=stolen, prompt="hi")  # kim's id on another connection
        assert raw.final(2)["error"]["code"] == "no_session"
        raw.request("sign_in", 3, user="park", password="park-password-1")
        assert "session" in raw.final(3)["ok"]
        raw.request("status", 4, session=stolen)
        error = raw.final(4)["error"]
        assert (error["code"], error["exit"]) == ("no_session", AuthenticationError.exit_code)
    raw.request("sign_in", 5, user="kim", password="wrong password")
    assert raw.final(5)["error"]["code"] == "signed_in"  # one sign-in per connection
    raw.close()


def test_policy_holds_on_the_raw_socket(service: Service) -> None:
    raw = service.raw()
    raw.request("sign_in", user="kim", password="operator-pass-1")
    session = raw.final()["ok"]["session"]
    raw.request("ask", 2, session=session, prompt="주민번호 900101-1234568 조회")
    error = raw.final(2)["error"]
    assert error["exit"] == BlockedError.exit_code
    assert "resident registration" in error["message"]
    raw.request("ask", 3, session=session, prompt="Ⅱ급비밀 문서 요약")
    error = raw.final(3)["error"]
    assert error["exit"] == BlockedError.exit_code
    assert "above the clearance" in error["message"]
    raw.request("sign_in", 4, user="kim", password="x", level="secret-1")
    assert raw.final(4)["error"]["code"] == "signed_in"
    raw.close()
    above = service.raw()
    above.request("sign_in", user="kim", password="operator-pass-1", level="secret-1")
    assert above.final()["error"]["code"] == "level_above_clearance"
    above.close()


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ({"v": 1, "id": 1, "op": "launch"}, "unknown_op"),
        ({"v": 1, "id": 1, "op": "hello", "debug": True}, "bad_field"),
        ({"v": 1, "id": 1, "op": "sign_in", "user": ["kim"]}, "bad_field"),
        ({"v": 1, "id": 1, "op": "sign_in", "user": "kim", "password": "x" * 2000}, "bad_field"),
    ],
)
def test_a_malformed_request_is_refused_and_the_connection_kept(
    service: Service, message: dict, code: str
) -> None:
    raw = service.raw()
    raw.send(message)
    error = raw.final()["error"]
    assert (error["code"], error["exit"]) == (code, UsageError.exit_code)
    raw.request("hello", 2)
    assert raw.final(2)["ok"]["protocol"] == 1
    raw.close()


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xfe not json\n",
        b"[1, 2, 3]\n",
        b'{"v": 9, "id": 1, "op": "hello"}\n',
        b'{"v": 1, "id": true, "op": "hello"}\n',
        b'{"v": 1, "id": 1, "op": "hello", "x": NaN}\n',
        b"[" * 100_000 + b"\n",
        b"x" * (1 << 20) + b"\n",  # longer than a message may be
    ],
    ids=["not-utf8", "not-an-object", "version", "bool-id", "nan", "deep", "oversized"],
)
def test_garbage_ends_that_connection_alone(service: Service, data: bytes) -> None:
    raw = service.raw()
    try:
        raw.send(data)
    except BrokenPipeError:  # it stopped reading the oversized message
        pass
    else:
        message = raw.receive()
        assert message is None or message["error"]["exit"] == 19
    assert raw.closed()
    with service.client() as fine:
        assert fine.hello()["protocol"] == 1


def test_a_truncated_request_is_never_acted_on(
    service: Service, staff: Path, tmp_path: Path
) -> None:
    before, _ = _asks_and_answers(staff, tmp_path)
    raw = service.raw()
    raw.request("sign_in", user="kim", password="operator-pass-1")
    session = raw.final()["ok"]["session"]
    raw.send(json.dumps({"v": 1, "id": 2, "op": "ask", "session": session, "prompt": "hi"})
             .encode()[:-3])  # fmt: skip
    raw.close()
    time.sleep(0.5)
    after, _ = _asks_and_answers(staff, tmp_path)
    assert len(after) == len(before)


def test_a_client_that_stops_reading_is_dropped_and_holds_up_no_one(service: Service) -> None:
    slow = service.raw()
    hello = (json.dumps({"v": 1, "id": 1, "op": "hello"}) + "\n").encode()
    with contextlib.suppress(OSError):  # the service hangs up on it part way
        slow.sock.sendall(hello * 80_000)  # ~10 MB of replies it never reads
    with service.client("kim") as kim:
        answer = kim.ask("Say yes.", **SHORT)
        assert answer.text()
        assert answer.result
        assert answer.result["outcome"] == "ok"
    assert slow.closed()  # its replies outgrew the outbox: the service let it go
    with service.client() as fine:
        assert fine.hello()["protocol"] == 1


def test_accounts_are_managed_through_the_service(
    service: Service, staff: Path, tmp_path: Path
) -> None:
    admin = as_user(tmp_path, "root1")
    first = password_file(tmp_path, "jung", "first-password-1")
    added = run_cli("users", "add", "jung", "--role", "operator", "--new-password-file", first,
                    *admin, home=staff)  # fmt: skip
    assert added.returncode == 0, added.stderr
    refused = run_cli("users", "add", "yoon", "--role", "operator", "--new-password-file", first,
                      *as_user(tmp_path, "kim"), home=staff)  # fmt: skip
    assert_one_line_error(refused, 15, "needs the admin role")
    # jung's password was set by an admin: jung may do nothing but set their own.
    jung = as_user(tmp_path, "jung", "first-password-1")
    asked = run_cli("ask", "hi", *jung, home=staff)
    assert_one_line_error(asked, 14, "was set by someone else")
    own = password_file(tmp_path, "jung-new", "jungs-own-password-1")
    changed = run_cli("users", "passwd", "jung", "--new-password-file", own, *jung, home=staff)
    assert changed.returncode == 0, changed.stderr
    locked = run_cli("users", "lock", "jung", *admin, home=staff)
    assert locked.returncode == 0, locked.stderr
    listed = run_cli("users", "list", *admin, home=staff)
    assert listed.returncode == 0, listed.stderr
    assert any(
        line.split()[0] == "jung" and "locked" in line for line in listed.stdout.splitlines()
    )
    shown = events(staff, tmp_path)
    actions = [(e["user"], e["action"]) for e in shown if e["action"].startswith(("user_", "pass"))]
    assert ("root1", "user_add") in actions
    assert ("jung", "password_change") in actions
    assert ("root1", "user_lock") in actions
    peers = [e for e in shown if e["action"] == "start" and e["object"] == "service"]
    assert {e["user"] for e in peers} >= {"root1", "jung"}  # every command was a client


def test_the_audit_commands_go_through_the_service(
    service: Service, staff: Path, tmp_path: Path, officer: Identity
) -> None:
    lee, kim = as_user(tmp_path, "lee"), as_user(tmp_path, "kim")
    key = tmp_path / "officer.key"
    write_identity(key, officer, None)
    with service.client("kim") as client:  # something to read
        client.ask("Say the word 'apple'.", **SHORT).text()
    verified = run_cli("audit", "verify", "--json", *lee, home=staff)
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["events"] > 0
    shown = run_cli("audit", "show", "--json", "--decrypt", "--identity", str(key),
                    "--action", "ask", *lee, home=staff)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    asked = [json.loads(line) for line in shown.stdout.splitlines()]
    assert "apple" in asked[-1]["content"]["prompt"]  # opened here, with the officer's key
    refused = run_cli("audit", "show", *kim, home=staff)
    assert_one_line_error(refused, 15, "needs the admin or officer role")
    out = tmp_path / "audit.jsonl"
    exported = run_cli("audit", "export", "--out", str(out), *lee, home=staff)
    assert exported.returncode == 0, exported.stderr
    public = run_cli("audit", "key", *lee, home=staff).stdout.splitlines()[-1]
    checked = run_cli("audit", "verify-export", str(out), "--pubkey", public, home=staff)
    assert checked.returncode == 0, checked.stderr
    # New officer keys are proved by opening what the service sealed to them.
    second = tmp_path / "second.key"
    write_identity(second, Identity.generate(), None)
    rotated = run_cli("audit", "officer", "--identity", str(key), "--identity", str(second),
                      *lee, home=staff)  # fmt: skip
    assert rotated.returncode == 0, rotated.stderr
    listed = run_cli("audit", "officer", *lee, home=staff)
    assert len(listed.stdout.split()) == 2


def test_officer_keys_need_the_proof_on_the_raw_socket(service: Service) -> None:
    raw = service.raw()
    raw.request("sign_in", user="lee", password="officer-pass-1")
    session = raw.final()["ok"]["session"]
    raw.request("audit", 2, session=session, call="officer_set", answers=["AAAA"])
    assert raw.final(2)["error"]["code"] == "no_proof"
    intruder = str(Identity.generate().recipient)
    raw.request("audit", 3, session=session, call="officer_challenge", recipients=[intruder])
    assert raw.final(3)["ok"]["challenges"]
    raw.request("audit", 4, session=session, call="officer_set", answers=["AAAA"])
    assert raw.final(4)["error"]["code"] == "no_proof"  # a guess, not the sealed secret
    raw.close()


def test_the_air_gap_is_the_services_view(service: Service, staff: Path, tmp_path: Path) -> None:
    status = run_cli("airgap", "status", "--json", *as_user(tmp_path, "kim"), home=staff)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["airgapped"] is True  # the service's namespace, not ours
    denied = run_cli("airgap", "override", "--minutes", "5", "--reason", "test",
                     *as_user(tmp_path, "kim"), home=staff)  # fmt: skip
    assert_one_line_error(denied, 15, "needs the officer role")
    granted = run_cli("airgap", "override", "--minutes", "5", "--reason", "maintenance",
                      *as_user(tmp_path, "lee"), home=staff)  # fmt: skip
    assert granted.returncode == 0, granted.stderr
    (staff / "airgap-override.json").unlink()  # withdrawn again: weakens nothing


def test_a_locked_account_loses_its_open_session_once(
    service: Service, staff: Path, tmp_path: Path
) -> None:
    add_operator(staff, "han")
    with service.client("han") as han:
        assert han.ask("Say yes.", **SHORT).text()
        locked = run_cli("users", "lock", "han", *as_user(tmp_path, "root1"), home=staff)
        assert locked.returncode == 0, locked.stderr
        with pytest.raises(AuthenticationError) as ended:
            han.ask("Say yes.", **SHORT).text()
        assert ended.value.code == "account_changed"
        with pytest.raises(AuthenticationError) as after:
            han.call("status")
        assert after.value.code == "no_session"  # sign in again: the session is over
    logouts = [e for e in events(staff, tmp_path, "--actor", "han") if e["action"] == "logout"]
    assert [e["details"]["reason"] for e in logouts] == ["account changed"]


def test_the_ui_does_not_open_a_home_its_service_owns(service: Service, staff: Path) -> None:
    opened = run_cli("ui", home=staff)
    assert_one_line_error(opened, 19, "the terminal UI does not run as its client yet")
