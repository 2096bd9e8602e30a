"""Drafts and task presets through a real service on a real socket.

The engine is scripted so that what it was given (the system prompt of a
preset) can be checked exactly, and its answer holds Markdown structure to
render. The files are read back with python-hwpx and python-docx; the audit
log, the policy and the service are the real ones. One save goes end to end
on the real model (`ask --save`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import stat
from collections.abc import Iterator
from pathlib import Path

import docx
import pytest
from hwpx.document import HwpxDocument

from appliance.audit import AuditLog, audit_dir
from appliance.drafting import save_draft
from appliance.engine import Message
from appliance.errors import BlockedError, PolicyError, UsageError
from appliance.policy import load_policy
from appliance.service import Client
from appliance.session import Conversation
from tests.conftest import assert_one_line_error, run_cli
from tests.servicing import add_operator, defense_served
from tests.staff import PASSWORDS, open_session
from tests.test_tui import ScriptedEngine

ANSWER = """# 훈련 일정 변경

1. 관련: 가. 예비군 훈련 계획

- 일정은 **다음 주**로 옮깁니다.
  - 세부 시간은 추후 통보

| 부대 | 날짜 |
|---|---|
| 제1대대 | 12. 9. |
"""


class RecordingEngine(ScriptedEngine):
    """Also records the system prompt and the sampling each turn was given."""

    def __init__(self, pieces: list[str]) -> None:
        super().__init__(pieces)
        self.systems: list[str | None] = []
        self.params: list = []

    def chat(self, messages, params, *, adapter=None):
        self.systems.append(messages[0].content if messages[0].role == "system" else None)
        self.params.append(params)
        return super().chat(messages, params, adapter=adapter)


@contextlib.contextmanager
def signed_in(path: Path, user: str) -> Iterator[Client]:
    with Client(path, timeout=120) as client:
        client.sign_in(user, PASSWORDS[user])
        yield client


def asked(client: Client, prompt: str, **options) -> dict:
    answer = client.ask(prompt, conversation="c", seed=1, **options)
    answer.text()
    assert answer.result is not None
    assert answer.result["outcome"] == "ok", answer.result
    return answer.result


def draft_events(home: Path) -> list[dict]:
    with AuditLog(audit_dir(home)) as log:
        leaves = [json.loads(row["leaf"]) for row in log.events(action="draft")]
    return leaves


def section_xml(data: bytes) -> str:
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as package:
        names = [n for n in package.namelist() if n.startswith("Contents/section")]
        return "".join(package.read(n).decode("utf-8") for n in names)


def test_a_preset_reaches_the_engine_as_its_system_prompt_and_is_audited(staffed) -> None:
    engine = RecordingEngine(["초안입니다."])
    policy = load_policy(staffed / "policy.toml")
    with defense_served(staffed, engine) as path, signed_in(path, "kim") as kim:
        asked(kim, "훈련 일정 변경 공문", task="letter")
        assert engine.systems[-1] == policy.task("letter").system
        assert engine.params[-1].max_tokens == 1024  # the preset's, none was asked for
        assert engine.params[-1].temperature == pytest.approx(0.3)
        asked(kim, "이어서", max_tokens=64)  # the conversation keeps its preset
        assert engine.systems[-1] == policy.task("letter").system
        assert engine.params[-1].max_tokens == 64
        with pytest.raises(UsageError, match="keeps the system prompt"):
            kim.ask("다른 작업", conversation="c", task="summary").text()
        with pytest.raises(UsageError, match="not both"):
            kim.ask("둘 다", task="summary", system="mine").text()
        with pytest.raises(UsageError, match="no task 'nonsense'"):
            kim.ask("없는 작업", task="nonsense").text()
    with AuditLog(audit_dir(staffed)) as log:
        asks = [json.loads(row["leaf"]) for row in log.events(action="ask")]
    assert [a["details"].get("task") for a in asks] == ["letter", "letter"]


def test_a_draft_carries_the_label_the_conversation_rose_to(staffed, tmp_path) -> None:
    engine = RecordingEngine([ANSWER])
    exports = tmp_path / "exports"
    exports.mkdir()
    with defense_served(staffed, engine) as path, signed_in(path, "kim") as kim:
        first = asked(kim, "훈련 일정을 정리해 주십시오.")
        assert first["label"] == "public"
        raised = asked(kim, "이 내용은 대외비로 취급합니다. 표로 정리해 주십시오.")
        assert raised["label"] == "restricted"  # the marking in the prompt raised it
        saved = {
            fmt: kim.draft_to(exports / f"draft.{fmt}", conversation="c", format=fmt)
            for fmt in ("hwpx", "docx", "md")
        }
    for fmt, result in saved.items():
        target = exports / f"draft.{fmt}"
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        assert result["sha256"] == hashlib.sha256(target.read_bytes()).hexdigest()
        assert result["label"] == "restricted"
        assert result["copy"] is None  # 대외비 carries no 예고문 under defense-kr
        check_structure(fmt, target.read_bytes())
    events = draft_events(staffed)
    assert [(e["user"], e["label"], e["details"]["format"]) for e in events] == [
        ("kim", "restricted", fmt) for fmt in saved
    ]
    assert [e["details"]["sha256"] for e in events] == [r["sha256"] for r in saved.values()]


def check_structure(fmt: str, data: bytes) -> None:
    """The answer's heading, list, table and bold text, and the marking top and bottom."""
    if fmt == "hwpx":
        document = HwpxDocument.open(io.BytesIO(data))
        text = "\n".join(p.text for p in document.paragraphs)
        assert "훈련 일정 변경" in text
        assert "다음 주" in text
        assert "**" not in text
        xml = section_xml(data)
        assert "제1대대" in xml  # the table's cell
        assert xml.count("대외비") >= 2  # header and footer
        assert "<hp:header" in xml
        assert "<hp:footer" in xml
    elif fmt == "docx":
        document = docx.Document(io.BytesIO(data))
        section = document.sections[0]
        assert "대외비" in "".join(p.text for p in section.header.paragraphs)
        assert "대외비" in "".join(p.text for p in section.footer.paragraphs)
        styles = {p.style.name for p in document.paragraphs}
        assert {"List Bullet", "List Bullet 2"} <= styles
        assert any(s.startswith("Heading") for s in styles)
        assert document.tables[0].cell(1, 0).text == "제1대대"
        assert any(
            run.bold and "다음 주" in run.text for p in document.paragraphs for run in p.runs
        )
    else:
        text = data.decode("utf-8")
        lines = text.strip().splitlines()
        assert "대외비" in lines[0]
        assert "대외비" in lines[-1]
        assert "| 제1대대 | 12. 9. |" in text


def test_classified_drafts_carry_the_notice_and_numbered_copies(staffed, tmp_path) -> None:
    add_operator(staffed, "park", "secret-2")
    engine = RecordingEngine([ANSWER])
    with defense_served(staffed, engine) as path, signed_in(path, "park") as park:
        asked(park, "Ⅲ급비밀 훈련 계획을 요약하십시오.")
        one = park.draft_to(tmp_path / "one.md", conversation="c", format="md")
        two = park.draft_to(tmp_path / "two.md", conversation="c", format="md", whole=True)
    assert (one["label"], one["copy"], two["copy"]) == ("secret-3", 1, 2)
    first = (tmp_path / "one.md").read_text(encoding="utf-8")
    assert "예고문:" in first
    assert "까지 Ⅲ급비밀, 이후 일반문서로 재분류" in first
    assert "사본 번호: 제1호" in first
    whole = (tmp_path / "two.md").read_text(encoding="utf-8")
    assert "사본 번호: 제2호" in whole
    assert "Ⅲ급비밀 훈련 계획을 요약하십시오." in whole
    assert [e["details"]["copy"] for e in draft_events(staffed)] == [1, 2]


def test_a_draft_above_the_policys_export_level_is_refused_and_audited(staffed, tmp_path):
    add_operator(staffed, "park", "secret-2")
    engine = RecordingEngine([ANSWER])
    edit = ('max_level = "secret-2"', 'max_level = "restricted"')
    with defense_served(staffed, engine, edit=edit) as path, signed_in(path, "park") as park:
        asked(park, "Ⅲ급비밀 훈련 계획을 요약하십시오.")
        with pytest.raises(BlockedError, match="lets no draft above 대외비") as refused:
            park.draft_to(tmp_path / "out.hwpx", conversation="c", format="hwpx")
        assert refused.value.code == "draft_level"
        with pytest.raises(UsageError, match="no answer to save"):
            park.draft_to(tmp_path / "none.hwpx", conversation="other", format="hwpx")
    assert not list(tmp_path.glob("*.hwpx"))  # nothing written, not even a temporary
    (event,) = draft_events(staffed)
    assert (event["outcome"], event["label"]) == ("denied", "secret-3")
    assert event["details"]["reason"] == "export_level"


def test_a_draft_above_the_users_clearance_is_refused_and_audited(tmp_path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with AuditLog(audit_dir(home)) as log:
        session = open_session(home, RecordingEngine(["x"]), log, "kim", "operator")
        policy = session.policy
        conversation = Conversation(label=policy.level("secret-2"))
        conversation.messages += [Message("user", "q"), Message("assistant", "a")]
        with pytest.raises(BlockedError, match="above the clearance of kim"):
            save_draft(session, conversation, "docx")
        with pytest.raises(UsageError, match="one of hwpx, docx, md"):
            save_draft(session, Conversation(), "pdf")
        leaves = [json.loads(row["leaf"]) for row in log.events(action="draft")]
    assert [(e["outcome"], e["details"]["reason"]) for e in leaves] == [("denied", "clearance")]


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        ('en = "Summary"', "tasks[0].en"),
        ("temperature = 0.2", "tasks[0].temperature"),
        ('id = "letter"', "tasks[1].id"),
        ('copy = "사본 번호: 제{copy}호"', "drafts.copy"),
        ('max_level = "secret-2"', "drafts.max_level"),
        ("protect_years = 5", "drafts.unknown"),
    ],
)
def test_an_invalid_preset_or_draft_rule_is_refused_naming_the_key(tmp_path, edit, key):
    from appliance.policy import shipped_policy

    text = shipped_policy("defense-kr").read_text(encoding="utf-8")
    replacement = {
        "tasks[0].en": 'en = ""',
        "tasks[0].temperature": "temperature = 3.5",
        "tasks[1].id": 'id = "summary"',
        "drafts.copy": 'copy = "사본 {number}"',
        "drafts.max_level": 'max_level = "cosmic"',
        "drafts.unknown": "protect_years = 5\nunknown = 1",
    }[key]
    assert edit in text
    path = tmp_path / "policy.toml"
    path.write_text(text.replace(edit, replacement, 1), encoding="utf-8")
    with pytest.raises(PolicyError) as refused:
        load_policy(path)
    assert key.split("[")[0] in str(refused.value)
    assert key.split(".")[-1] in str(refused.value)


@pytest.mark.model
def test_ask_save_writes_a_marked_draft_from_the_real_model(model_path, tmp_path) -> None:
    home, out = tmp_path / "home", tmp_path / "out"
    ask = ("ask", "--model", str(model_path), "--max-tokens", "12", "--seed", "1")
    done = run_cli(
        *ask, "Write a short memo.", "--save", "memo.md", "--exports", str(out), home=home
    )
    assert done.returncode == 0, done.stderr
    saved = out / "memo.md"
    lines = saved.read_text(encoding="utf-8").strip().splitlines()
    assert "UNCLASSIFIED" in lines[0]
    assert "UNCLASSIFIED" in lines[-1]
    assert done.stdout.strip()[:20] in saved.read_text(encoding="utf-8")
    assert "draft saved:" in done.stderr
    (event,) = draft_events(home)
    assert event["details"]["sha256"] == hashlib.sha256(saved.read_bytes()).hexdigest()
    again = run_cli(*ask, "Again.", "--save", "memo.md", "--exports", str(out), home=home)
    assert_one_line_error(again, 2, "already exists")
    elsewhere = run_cli(*ask, "Again.", "--save", "../memo.md", home=home)
    assert_one_line_error(elsewhere, 2, "a file name, not a path")
    with AuditLog(audit_dir(home)) as log:
        assert len(list(log.events(action="ask"))) == 1  # refused before any question
