"""`ask --file` and `chat --file`: one file grounds the answer and joins no collection.

A real service on the home's own socket (so that a command finds it, as on a
service host) with a scripted engine, whose recorded prompts show exactly what
the model would have been given; the parser child, the labels and the audit
log are the real ones. The last test runs the command in-process on the real
model.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.audit import AuditLog, audit_dir
from appliance.documents.onefile import FILE_CHARS, FILE_CHUNKS, RANKED, read_file
from appliance.documents.sandbox import children_started
from appliance.errors import BlockedError, UsageError
from appliance.identity import Principal
from appliance.policy import load_policy
from appliance.service import Client, RemoteDocuments, home_socket
from appliance.service.endpoint import listen
from appliance.service.server import Server
from tests import docfiles
from tests.conftest import TEST_SETTINGS, assert_one_line_error, run_cli
from tests.staff import DEFENSE, PASSWORDS, as_user
from tests.test_grounded import source_block
from tests.test_tui import ScriptedEngine, signed

LEAVE = "연가는 휴가 시작일 칠 일 전까지 신청한다."
SECRET = "알파 작전의 기동 부대는 새벽 네 시에 제3 집결지로 이동한다."


@contextlib.contextmanager
def served(home: Path, engine: ScriptedEngine) -> Iterator[Path]:
    """The staffed defense-kr home served from a thread of this process on the home's
    socket, where a command looks for it (its air-gap requirement lifted)."""
    text = (home / "policy.toml").read_text(encoding="utf-8")
    (home / "policy.toml").write_text(
        text.replace("require_airgap = true", "require_airgap = false"), encoding="utf-8"
    )
    signed(home)
    policy = load_policy(home / "policy.toml")
    with AuditLog(audit_dir(home)) as log:
        server = Server(home, policy, log, engine, "m", listen(home_socket(home)))
        thread = threading.Thread(target=server.serve, name="service", daemon=True)
        thread.start()
        try:
            yield home_socket(home)
        finally:
            server.stop("closed")
            thread.join()


@contextlib.contextmanager
def kim_on(path: Path) -> Iterator[Client]:
    with Client(path, timeout=120) as client:
        client.sign_in("kim", PASSWORDS["kim"])
        yield client


def ask_file(client: Client, name: str, data: bytes, question: str, **fields: Any) -> dict:
    sent = RemoteDocuments(client).upload(data)
    named = {"file": name, "file_size": sent["size"], "file_sha256": sent["sha256"]}
    answer = client.ask(question, seed=1, **{**named, **fields})
    answer.text()
    assert answer.result is not None
    return answer.result


def logged(home: Path, action: str) -> list[dict]:
    with AuditLog(audit_dir(home)) as log:
        return [json.loads(row["leaf"]) for row in log.events(action=action)]


def test_a_file_grounds_the_answer_at_its_label_and_joins_no_collection(staffed: Path) -> None:
    engine = ScriptedEngine(["답변입니다."])
    marked = docfiles.hwpx_bytes([LEAVE, "병가는 진단서를 첨부하여 신청한다."], footer="대외비")
    with served(staffed, engine) as path, kim_on(path) as kim:
        result = ask_file(kim, "휴가지침.hwpx", marked, "연가는 언제까지 신청하나요?")
        prompt = engine.prompts[-1]
        # The whole (short) file, as numbered sources delimited as data, then the question.
        assert any(LEAVE in source_block(prompt, s["n"]) for s in result["sources"])
        assert prompt.index("데이터") < prompt.index(LEAVE)
        assert prompt.rstrip().endswith("질문: 연가는 언제까지 신청하나요?")
        assert {s["title"] for s in result["sources"]} == {"휴가지침.hwpx"}
        assert all(s["place"] == "section 1" for s in result["sources"])
        # The 대외비 footer labels the file, every source and so the answer.
        assert {s["label"] for s in result["sources"]} == {"restricted"}
        assert result["label"] == "restricted"
        assert result["declined"] is False

        plain = ask_file(kim, "당직.txt", "당직 사관은 22시에 순찰한다.\n".encode(), "순찰은?")
        assert plain["label"] == "public"  # the session's level: nothing raised it
        assert "22시에 순찰" in engine.prompts[-1]
        assert "연가" not in engine.prompts[-1]  # each ask is given its own file only

        # `chat --file` through the service: the command sends the file for every turn.
        document = staffed.parent / "휴가지침.docx"
        document.write_bytes(docfiles.docx_bytes([LEAVE]))
        asked = len(engine.prompts)
        chat = run_cli(
            "chat", "--file", str(document), *as_user(staffed.parent, "kim"),
            home=staffed, stdin="연가는 언제 신청하나요?\n병가는요?\n",
        )  # fmt: skip
        assert chat.returncode == 0, chat.stderr
        assert len(engine.prompts) == asked + 2
        assert all(LEAVE in prompt for prompt in engine.prompts[asked:])
        assert chat.stdout.count("[1] 휴가지침.docx") == 2

        # No file joined a collection: the store was never even opened.
        assert not (staffed / "documents").exists()
        assert RemoteDocuments(kim).list()["documents"] == []
    for path in (p for p in staffed.rglob("*") if p.is_file()):
        data = path.read_bytes()
        assert LEAVE.encode() not in data, path
        assert LEAVE.encode("utf-16-le") not in data, path

    reads = logged(staffed, "doc_ask")
    assert [(e["outcome"], e["label"]) for e in reads] == [
        ("ok", "restricted"), ("ok", "public"), ("ok", "public"), ("ok", "public")
    ]  # fmt: skip
    assert reads[0]["details"]["markings"] == ["restricted"]
    assert reads[0]["details"]["format"] == "hwpx"
    asked = logged(staffed, "ask")[0]["details"]["documents"]
    assert {s["document"] for s in asked["sources"]} == {reads[0]["object"]}
    assert asked["file"] == reads[0]["object"]


def test_refusals_come_before_the_model_and_before_parsing(staffed: Path, tmp_path: Path) -> None:
    engine = ScriptedEngine(["답."])
    secret = docfiles.hwpx_bytes([SECRET], footer="Ⅱ급비밀")
    with served(staffed, engine) as path, kim_on(path) as kim:
        with pytest.raises(BlockedError) as above:
            ask_file(kim, "작전계획.hwpx", secret, "기동 부대는 언제 이동하나요?")
        assert above.value.code == "above_clearance"
        assert above.value.params["label"] == "secret-2"

        parsed = children_started()
        for wrong in ({"file_sha256": "0" * 64}, {"file_size": len(secret) + 1}):
            with pytest.raises(UsageError) as mismatch:
                ask_file(kim, "작전계획.hwpx", secret, "언제?", **wrong)
            assert mismatch.value.code == "upload_mismatch"
        with pytest.raises(UsageError) as both:
            ask_file(kim, "작전계획.hwpx", secret, "언제?", docs=True)
        assert both.value.code == "bad_field"
        # Each refusal wiped the upload: naming it again without sending it finds nothing.
        named = {"file_size": len(secret), "file_sha256": hashlib.sha256(secret).hexdigest()}
        with pytest.raises(UsageError, match=r"not 작전계획\.hwpx"):
            kim.ask("언제?", file="작전계획.hwpx", **named).text()
        assert children_started() == parsed
        assert engine.prompts == []

    denied = logged(staffed, "doc_ask")
    assert [(e["outcome"], e["label"]) for e in denied] == [("denied", "secret-2")]
    assert denied[0]["details"]["code"] == "above_clearance"
    assert denied[0]["details"]["markings"]

    both_given = run_cli("ask", "--docs", "--file", str(tmp_path), "언제?", home=tmp_path)
    assert_one_line_error(both_given, 2, "--file")
    folder = run_cli("ask", "--file", str(tmp_path), "언제?", home=tmp_path)
    assert_one_line_error(folder, 3, "not a regular file")


def test_a_long_file_gives_the_chunks_that_answer_in_document_order(tmp_path: Path) -> None:
    topics = ["예산", "보급", "훈련", "당직", "연가", "병가", "출장", "보안", "교육", "장비"]
    text = "\n\n".join(
        f"{topic} 규정 제{n}조. " + f"{topic} 업무는 담당 부서가 처리한다. " * 30
        for n, topic in enumerate(topics, start=1)
    )
    policy = load_policy(DEFENSE)
    kim = Principal("kim", "operator", "restricted")
    with AuditLog(tmp_path / "audit") as log:
        one = read_file(
            "규정.txt", text.encode(), policy=policy, principal=kim, log=log, level=policy.lowest
        )
    assert len(one.chunks) > FILE_CHUNKS
    ranked = one.ground("출장 업무는 누가 처리하나요?")
    assert ranked.details["given"] == "ranked"
    assert any("출장 규정" in s.text for s in ranked.sources)
    assert len(ranked.sources) <= RANKED
    assert sum(len(s.text) for s in ranked.sources) <= FILE_CHARS
    assert [s.chunk_id for s in ranked.sources] == sorted(s.chunk_id for s in ranked.sources)
    assert [s.number for s in ranked.sources] == list(range(1, len(ranked.sources) + 1))
    opening = one.ground("요약해 주세요")
    assert opening.details["given"] == "opening"
    assert opening.sources[0].chunk_id == 1


@pytest.mark.model
def test_ask_file_in_process_on_the_real_model(
    model_home: Path, model_path: Path, tmp_path: Path
) -> None:
    document = tmp_path / "leave.hwpx"
    document.write_bytes(docfiles.hwpx_bytes([LEAVE]))
    result = run_cli(
        "ask", "--file", str(document), "--model", str(model_path), "--max-tokens", "8",
        "--context", "1024", "--threads", str(TEST_SETTINGS.threads), "--temperature", "0",
        "연가는 언제까지 신청하나요?",
        home=model_home,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "[1] leave.hwpx, section 1" in result.stdout
    assert logged(model_home, "doc_ask")[-1]["outcome"] == "ok"
