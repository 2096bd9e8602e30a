"""The appliance service: a real `appliance serve`, real sockets, the real model.

Two users at once, a hostile client speaking the protocol by hand, the
commands as clients, a crash mid-answer, and a bounded load.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.audit import Actor, AuditLog, audit_dir
from appliance.conversations import Conversations
from appliance.engine import Engine, Message
from appliance.errors import AuthenticationError, BlockedError, UsageError
from appliance.homestate import record_state
from appliance.identity import Users
from appliance.policy import load_policy, shipped_policy
from appliance.seal import Identity, write_identity
from appliance.service import Server, listen
from tests.conftest import assert_one_line_error, run_cli
from tests.servicing import Raw, Service, add_operator, serving
from tests.staff import PASSWORDS, as_user, events, make_staffed, password_file

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
    assert json.loads(status.stdout)["engine"]["backend"] == "local"
    denied = run_cli("service", "status", *as_user(tmp_path, "kim"), home=staff)
    assert_one_line_error(denied, 15, "needs the admin or officer role")


def test_doctor_through_the_service_reports_the_model_it_serves(
    service: Service, staff: Path, tmp_path: Path
) -> None:
    served = run_cli("doctor", "--json", *as_user(tmp_path, "lee"), home=staff)
    assert served.returncode == 0, served.stderr
    checks = {c["name"]: c for c in json.loads(served.stdout)["checks"]}
    assert "served by this service" in checks["model"]["detail"]
    assert checks["airgap"]["ok"]  # the service's own namespace
    assert checks["audit"]["ok"]
    assert checks["state"]["ok"]
    # No --user: this process loads the model (on this host's network: airgap fails).
    here = run_cli("doctor", "--json", home=staff)
    assert here.returncode == 17, here.stderr
    in_process = {c["name"]: c for c in json.loads(here.stdout)["checks"]}
    assert list(in_process) == list(checks)
    assert "generated 1 token" in in_process["model"]["detail"]
    denied = run_cli("doctor", *as_user(tmp_path, "kim"), home=staff)
    assert_one_line_error(denied, 15, "needs the admin or officer role")
    local = run_cli("doctor", "--model", "x.gguf", *as_user(tmp_path, "root1"), home=staff)
    assert_one_line_error(local, 2, "the appliance service serves its own model")


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
    delivered = [e["details"]["delivered"] for e in events(staff, tmp_path, "--action", "export")
                 if "delivered" in e["details"]]  # fmt: skip
    assert delivered[-1] == {  # the service recorded what the client wrote
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "bytes": out.stat().st_size,
    }
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


def test_the_terminal_ui_is_a_client_of_the_service(
    service: Service, staff: Path, tmp_path: Path
) -> None:
    """The UI on a home its service owns: kim signs in there, and the service answers and
    records the question as the UI asked it."""
    from appliance.tui import AppContext, ApplianceApp
    from appliance.tui.chat import ChatScreen
    from appliance.tui.prompt import PromptArea

    app = ApplianceApp(AppContext(service.socket, max_tokens=7))

    async def scenario(pilot: Any) -> None:
        screen = app.screen
        screen.query_one("#user").value = "kim"
        screen.query_one("#password").value = PASSWORDS["kim"]
        screen.query_one("#password").focus()
        await pilot.press("enter")
        assert isinstance(app.screen, ChatScreen)
        prompt = app.screen.query_one("#prompt", PromptArea)
        prompt.text = "What is the capital of France?"
        prompt.focus()
        await pilot.press("enter")
        deadline = time.monotonic() + 120
        while app.screen.turns == 0:
            assert time.monotonic() < deadline, "no answer came"
            await pilot.pause(0.1)

    asyncio.run(_pilot(app, scenario))
    asks, answers = _asks_and_answers(staff, tmp_path)
    mine = [e for e in asks if e["details"]["max_tokens"] == 7]  # the UI's, as given it
    assert [e["user"] for e in mine] == ["kim"]
    outcomes = [a["outcome"] for a in answers if a["details"].get("ask_seq") == mine[0]["seq"]]
    assert outcomes == ["ok"]


async def _pilot(app: Any, scenario: Any) -> None:
    async with app.run_test(size=(80, 24)) as pilot:
        await scenario(pilot)


# -- saved conversations, check-ins and idleness ----------------------------------------


class Signed(Raw):
    """A raw connection, signed in (`fields` as sign_in takes them)."""

    def __init__(self, path: Path, **fields: Any) -> None:
        super().__init__(path)
        self.request("sign_in", **fields)
        self.signed_in = self.final()["ok"]


def _sign_in(service: Service, user: str, password: str | None = None, **fields: Any) -> Signed:
    return Signed(service.socket, user=user, password=password or PASSWORDS[user], **fields)


def _call(raw: Signed, request_id: int, op: str, **fields: Any) -> list[dict]:
    """Every message the request is answered with, its final one last."""
    raw.request(op, request_id, session=raw.signed_in["session"], **fields)
    replies = []
    while True:
        message = raw.receive()
        assert message is not None, "the service closed the connection"
        if message["id"] in (request_id, 0):
            replies.append(message)
            if "ok" in message or "error" in message:
                return replies


def _ok(raw: Signed, request_id: int, op: str, **fields: Any) -> dict:
    final = _call(raw, request_id, op, **fields)[-1]
    assert "ok" in final, final
    return final["ok"]


def _refused(raw: Signed, request_id: int, op: str, **fields: Any) -> dict:
    """The error of a request refused before anything was queued or started."""
    replies = _call(raw, request_id, op, **fields)
    assert len(replies) == 1, replies
    return replies[0]["error"]


def test_a_conversation_is_saved_listed_reopened_continued_and_deleted(service: Service) -> None:
    add_operator(service.home, "yoo")
    first = _sign_in(service, "yoo")
    assert (first.signed_in["conversations"], first.signed_in["notice"]) == (True, None)
    asked = _ok(first, 2, "ask", prompt="Name a colour.", conversation="c", save=True, **SHORT)
    again = _ok(first, 3, "ask", prompt="And another.", conversation="c", save=True, **SHORT)
    assert asked["outcome"] == again["outcome"] == "ok"
    saved = asked["saved"]
    assert again["saved"] == saved  # the same record, replaced
    (listed,) = _ok(first, 4, "conversations", call="list")["conversations"]
    assert (listed["id"], listed["title"], listed["label"]) == (saved, "Name a colour.", "public")
    assert listed["label_name"] == "공개"
    first.close()

    second = _sign_in(service, "yoo")
    opened = _ok(second, 2, "conversations", call="open", saved_id=saved, conversation="d")
    assert [m["role"] for m in opened["messages"]] == ["user", "assistant"] * 2
    assert opened["messages"][0]["content"] == "Name a colour."
    assert opened["label"] == "public"
    go_on = _ok(second, 3, "ask", prompt="One more.", conversation="d", save=True, **SHORT)
    assert go_on["saved"] == saved
    assert go_on["prompt_tokens"] > asked["prompt_tokens"]  # the model saw the history
    reopened = _ok(second, 4, "conversations", call="open", saved_id=saved, conversation="e")
    assert len(reopened["messages"]) == 6
    _ok(second, 5, "reset", conversation="d")  # forgets its record: the next save is a new one
    fresh = _ok(second, 6, "ask", prompt="Say yes.", conversation="d", save=True, **SHORT)
    assert fresh["saved"] != saved
    listing = _ok(second, 7, "conversations", call="list")["conversations"]
    assert [c["id"] for c in listing] == [fresh["saved"], saved]  # newest first
    for request_id, saved_id in enumerate((saved, fresh["saved"]), 8):
        assert _ok(second, request_id, "conversations", call="delete", saved_id=saved_id) == {}
    assert _ok(second, 10, "conversations", call="list") == {"conversations": []}
    second.close()


def test_saving_is_refused_before_anything_is_queued(service: Service, staff: Path) -> None:
    kim = _sign_in(service, "kim")
    error = _refused(kim, 2, "ask", prompt="hi", save=True, **SHORT)  # no conversation named
    assert (error["code"], error["exit"]) == ("bad_field", UsageError.exit_code)
    error = _refused(kim, 3, "conversations", call="rename")
    assert error["code"] == "unknown_op"
    error = _refused(kim, 4, "conversations", call="open", saved_id="../../etc", conversation="c")
    assert error["code"] == "bad_field"
    error = _refused(kim, 5, "conversations", call="open", saved_id="0" * 32, conversation="c")
    assert error["code"] == "no_conversation"
    kim.close()
    admin = _sign_in(service, "root1")  # may not ask: nothing to save
    assert admin.signed_in["conversations"] is False
    assert _refused(admin, 2, "conversations", call="list")["code"] == "not_saved"
    error = _refused(admin, 3, "ask", prompt="hi", conversation="c", save=True, **SHORT)
    assert (error["code"], error["message"]) == (
        "not_saved",
        "conversations are saved only for a user signed in with a password",
    )
    admin.close()
    # A password someone else set opens nothing; the user's own, set first, does.
    with Users(staff) as users:
        users.add("bae", "operator", "restricted", "set-by-an-admin-1", 8, must_change=True)
    with AuditLog(audit_dir(staff)) as log:
        record_state(staff, log, Actor("root1", "admin"), "user_add")
    bae = _sign_in(service, "bae", "set-by-an-admin-1")
    assert (bae.signed_in["must_change"], bae.signed_in["conversations"]) == (True, False)
    assert _refused(bae, 2, "conversations", call="list")["code"] == "must_change"
    error = _refused(bae, 3, "ask", prompt="hi", conversation="c", save=True, **SHORT)
    assert error["code"] == "must_change"
    assert _ok(bae, 4, "check")["idle_seconds"] > 0  # checking in is allowed meanwhile
    _ok(bae, 5, "passwd", password="baes-own-password-1")
    bae.request("sign_in", 6, user="bae", password="baes-own-password-1")
    assert bae.final(6)["ok"]["conversations"] is True
    bae.close()


def test_a_conversation_above_the_users_clearance_is_neither_listed_nor_opened(
    service: Service, staff: Path, tmp_path: Path
) -> None:
    add_operator(staff, "seo")  # cleared to 대외비
    # Saved while the user was cleared higher (clearances are lowered; labels stay).
    store, _ = Conversations.open(staff, "seo", PASSWORDS["seo"])
    exchange = [Message("user", "Status?"), Message("assistant", "Green.")]
    above = store.save(None, exchange, "secret-2")
    within = store.save(None, exchange, "restricted")
    store.close()
    seo = _sign_in(service, "seo", level="public")
    listed = _ok(seo, 2, "conversations", call="list")["conversations"]
    assert [c["id"] for c in listed] == [within]
    error = _refused(seo, 3, "conversations", call="open", saved_id=above, conversation="c")
    assert error["exit"] == BlockedError.exit_code
    assert "above the clearance of seo" in error["message"]
    opened = _ok(seo, 4, "conversations", call="open", saved_id=within, conversation="c")
    assert opened["label"] == "restricted"  # a session at 공개 carries the conversation's label
    seo.close()
    refusals = [e for e in events(staff, tmp_path, "--actor", "seo") if e["outcome"] == "denied"]
    assert refusals[-1]["details"]["what"] == "saved conversation"


def test_a_check_ends_the_session_of_an_account_locked_since(service: Service) -> None:
    add_operator(service.home, "moon")
    moon, admin = _sign_in(service, "moon"), _sign_in(service, "root1")
    assert _ok(moon, 2, "check")["idle_seconds"] > 0
    _ok(admin, 2, "users", call="set_locked", name="moon", locked=True)
    error = _refused(moon, 3, "check")
    assert (error["code"], error["exit"]) == ("account_changed", AuthenticationError.exit_code)
    assert _refused(moon, 4, "check")["code"] == "no_session"
    moon.close()
    admin.close()


@contextlib.contextmanager
def _in_process(home: Path, engine: Engine, idle_seconds: float) -> Iterator[Path]:
    """The service's `Server` in this process on a development home, with an idle timeout
    in seconds (a policy file says at least a minute); yields its socket."""
    home.mkdir()
    policy = load_policy(shipped_policy("default"))
    policy = dataclasses.replace(policy, idle_timeout_minutes=idle_seconds / 60)
    with AuditLog(audit_dir(home)) as log:
        server = Server(home, policy, log, engine, "model", listen(home / "service.sock"))
        thread = threading.Thread(target=server.serve, daemon=True)
        thread.start()
        try:
            yield home / "service.sock"
        finally:
            server.stop("test")
            thread.join()


def test_development_mode_saves_nothing(tmp_path: Path, engine: Engine) -> None:
    with _in_process(tmp_path / "home", engine, 60) as path:
        dev = Signed(path)
        assert (dev.signed_in["development"], dev.signed_in["conversations"]) == (True, False)
        assert _refused(dev, 2, "conversations", call="list")["code"] == "not_saved"
        error = _refused(dev, 3, "ask", prompt="hi", conversation="c", save=True, **SHORT)
        assert error["code"] == "not_saved"
        dev.close()


def test_a_clients_check_is_not_the_users_activity(tmp_path: Path, engine: Engine) -> None:
    """Only a check that says the person at the client was active keeps a session open."""
    with _in_process(tmp_path / "home", engine, 3) as path:
        person = Signed(path)  # signed in first, and outlives the client's session
        client = Signed(path)
        for request_id in range(2, 200):
            time.sleep(0.3)
            assert _ok(person, request_id, "check", active=True)["idle_seconds"] == 3
            with contextlib.suppress(BrokenPipeError):  # told `idle` and closed meanwhile
                client.request("check", request_id, session=client.signed_in["session"])
            final = client.final(request_id)
            if "error" in final:
                break
            assert final["ok"]["idle_seconds"] <= 3
        assert final["error"]["code"] == "idle"
        assert _ok(person, request_id + 1, "check", active=True)["idle_seconds"] == 3
        person.close()
        client.close()
