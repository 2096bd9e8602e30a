"""The documents screen through Textual's Pilot, on a real embedded service: an operator
adds real files and sees them labelled, a file above the clearance is refused on one
line, a document is removed after a confirmation, and an admin has no documents."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, ProgressBar, Select, Static

from appliance.audit import AuditLog
from appliance.identity import Users
from appliance.tui.chat import ChatScreen
from appliance.tui.documents import ConfirmPanel, DocumentForm, DocumentPanel, DocumentsScreen
from appliance.tui.sources import PassagePanel, SourcePicker, SourcesView
from appliance.tui.users import UsersScreen
from tests.docfiles import docx_bytes, legacy_doc
from tests.test_tui import (
    ScriptedEngine,
    answered,
    ask,
    begin_log,
    close_services,
    make_app,
    run,
    sign_in,
    until,
)

__all__ = ["close_services"]  # the fixture that stops each app's service


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """kim: an operator cleared to 대외비 (restricted); park: an admin."""
    home = begin_log(tmp_path / "home")
    with Users(home) as users:
        users.add("kim", "operator", "restricted", "operator-pass-1", 10, must_change=False)
        users.add("park", "admin", "secret-2", "admin-pass-123", 10, must_change=False)
    return home


def rows(screen: DocumentsScreen) -> list[tuple[str, str]]:
    """(label, name) of each row, as drawn."""
    table = screen.query_one(DataTable)
    return [
        (str(table.get_row_at(i)[0]), str(table.get_row_at(i)[1])) for i in range(table.row_count)
    ]


def result(screen: DocumentsScreen) -> str:
    return str(screen.query_one("#result", Static).render())


async def add_file(pilot, path: Path, level: str | None = None) -> DocumentsScreen:
    """A through the form to the end of the add; the documents screen after it."""
    screen = pilot.app.screen
    assert isinstance(screen, DocumentsScreen)
    await pilot.press("a")
    form = pilot.app.screen
    assert isinstance(form, DocumentForm)
    if level is not None:
        form.query_one("#level", Select).value = level
    form.query_one("#path", Input).value = str(path)
    form.query_one("#path", Input).focus()
    await pilot.press("enter")
    assert pilot.app.screen is screen
    await until(pilot, lambda: not screen.adding)
    return screen


def test_an_operator_adds_reads_and_removes_documents(home: Path, tmp_path: Path) -> None:
    note = tmp_path / "회의록.txt"
    note.write_text("2026년 1분기 회의록\n각 부대는 결과를 보고한다.\n", encoding="utf-8")
    report = tmp_path / "보고서.docx"
    report.write_bytes(
        docx_bytes(["예산 집행 결과를 보고합니다.", "세부 내역은 별첨."], footer="대외비")
    )
    app = make_app(home, ScriptedEngine([]), "defense-kr")

    async def scenario(pilot) -> None:
        await sign_in(pilot, "kim", "operator-pass-1")
        assert isinstance(app.screen, ChatScreen)
        await pilot.press("f7")
        screen = app.screen
        assert isinstance(screen, DocumentsScreen)
        assert rows(screen) == []
        assert result(screen) == app.words("documents.empty")

        await pilot.press("a")  # levels offered: up to kim's clearance, no higher
        form = app.screen
        assert isinstance(form, DocumentForm)
        offered = [value for _, value in form.query_one("#level", Select)._options]
        assert [v for v in offered if isinstance(v, str)] == ["public", "restricted"]
        await pilot.press("escape")

        await add_file(pilot, note, level="restricted")  # declared: the text has no marking
        assert rows(screen) == [("대외비", "회의록.txt")]
        assert screen.last_progress == ("store", 1, 1)  # the service reported every stage
        await add_file(pilot, report)
        assert screen.last_progress == ("store", 1, 1)
        assert screen.query_one("#bar", ProgressBar).percentage == 1
        assert rows(screen) == [("대외비", "보고서.docx"), ("대외비", "회의록.txt")]
        assert result(screen).startswith("보고서.docx을(를) ~kim에 대외비(으)로 추가했습니다")
        table = screen.query_one(DataTable)
        assert [str(table.get_row_at(0)[i]) for i in (2, 3)] == ["~kim", "docx"]
        banners = [str(b.render()) for b in screen.query("Banner")]
        assert banners == ["공개 · UNCLASSIFIED   ▲ 대외비 · RESTRICTED"] * 2

        table.move_cursor(row=0)
        await pilot.press("enter")  # the new document's details
        panel = app.screen
        assert isinstance(panel, DocumentPanel)
        body = str(panel.query_one("#body", Static).render())
        assert "등급: 대외비 (선언 공개, 본문에서 발견 대외비)" in body
        assert "표시: 대외비" in body
        assert re.search(r"^청크: [1-9]", body, re.MULTILINE)
        await pilot.press("escape")
        assert app.screen is screen
        table.move_cursor(row=1)
        await pilot.press("enter")
        body = str(app.screen.query_one("#body", Static).render())
        assert "등급: 대외비 (선언 대외비, 본문에서 발견 공개)" in body
        assert "표시: 없음" in body
        await pilot.press("escape")
        table.move_cursor(row=0)

        await pilot.press("delete")
        assert isinstance(app.screen, ConfirmPanel)
        await pilot.press("escape")  # kept
        assert len(rows(screen)) == 2
        await pilot.press("delete")
        await pilot.press("enter")  # removed
        assert app.screen is screen
        assert rows(screen) == [("대외비", "회의록.txt")]
        assert result(screen) == "보고서.docx을(를) 삭제했습니다."

        await pilot.press("escape")
        assert isinstance(app.screen, ChatScreen)

    run(app, scenario)
    with AuditLog(home / "audit") as log:
        done = [
            (leaf["action"], leaf["outcome"], leaf["label"])
            for leaf in (json.loads(row["leaf"]) for row in log.events())
            if leaf["action"].startswith("doc_")
        ]
    assert done == [
        ("doc_add", "ok", "restricted"),
        ("doc_add", "ok", "restricted"),
        ("doc_remove", "ok", "restricted"),
    ]


def test_refusals_are_one_line_in_the_screen(home: Path, tmp_path: Path) -> None:
    secret = tmp_path / "작전계획.docx"
    secret.write_bytes(docx_bytes(["작전 계획 본문"], footer="Ⅱ급비밀"))
    legacy = tmp_path / "old.doc"
    legacy.write_bytes(legacy_doc())
    app = make_app(home, ScriptedEngine([]), "defense-kr", language="en")

    async def scenario(pilot) -> None:
        await sign_in(pilot, "kim", "operator-pass-1")
        await pilot.press("f7")
        screen = await add_file(pilot, secret)
        message = result(screen)
        assert message.startswith("Refused: 작전계획.docx is Ⅱ급비밀")
        assert "above the clearance of kim" in message
        assert "\n" not in message  # one line, the service's own words
        assert screen.query_one("#result", Static).has_class("error")
        assert rows(screen) == []

        await add_file(pilot, legacy)
        assert result(screen).startswith("Refused: old.doc")
        assert "\n" not in result(screen)
        assert rows(screen) == []

        await pilot.press("a")  # a path that is no file stays in the form, explained
        form = app.screen
        form.query_one("#path", Input).value = str(tmp_path / "missing.hwpx")
        form.query_one("#path", Input).focus()
        await pilot.press("enter")
        assert app.screen is form
        assert str(form.query_one("#error", Static).render()).endswith("is not a file.")
        await pilot.press("escape")
        assert app.screen is screen

    run(app, scenario)
    with AuditLog(home / "audit") as log:
        refused = [
            json.loads(row["leaf"])["details"]["code"]
            for row in log.events(action="doc_add")
            if json.loads(row["leaf"])["outcome"] == "denied"
        ]
    assert refused[0] == "above_clearance"
    assert len(refused) == 2


def test_an_admin_has_no_documents(home: Path) -> None:
    app = make_app(home, ScriptedEngine([]), "defense-kr", language="en")

    async def scenario(pilot) -> None:
        await sign_in(pilot, "park", "admin-pass-123")
        assert isinstance(app.screen, UsersScreen)
        titles = {command.title for command in app.get_system_commands(app.screen)}
        assert "Documents" not in titles
        assert "Add" in titles  # the admin's own commands are offered
        await pilot.press("f7")
        assert isinstance(app.screen, UsersScreen)
        assert not any(isinstance(s, DocumentsScreen) for s in app.screen_stack)

    run(app, scenario)


def test_answers_from_documents_list_their_sources(home: Path, tmp_path: Path) -> None:
    rule = tmp_path / "연가규정.txt"
    rule.write_text(
        "연가 규정\n연가는 사용하기 3일 전까지 소속 부서장에게 신청한다.\n", encoding="utf-8"
    )
    engine = ScriptedEngine(["3일 전까지 신청합니다 [1]."])
    app = make_app(home, engine, "defense-kr")

    async def scenario(pilot) -> None:
        await sign_in(pilot, "kim", "operator-pass-1")
        await pilot.press("f7")
        await add_file(pilot, rule)
        await pilot.press("escape")
        chat = app.screen
        assert isinstance(chat, ChatScreen)
        await pilot.press("f2")
        assert "문서 기반" in str(chat.query_one("#status", Static).render())
        await ask(pilot, "연가는 며칠 전까지 신청해야 하나요?")
        await until(pilot, lambda: answered(app))
        (sources,) = chat.query(SourcesView)
        text = str(sources.render())
        assert text.startswith("이 답변에 주어진 자료:")
        assert "[1] 연가 규정 (공개)" in text  # its title and label
        assert "3일 전까지 소속 부서장에게 신청한다" in engine.prompts[-1]  # given as a source
        # F10 opens a source at its passage, as the service shows it to kim.
        await pilot.press("f10")
        picker = app.screen
        assert isinstance(picker, SourcePicker)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, PassagePanel))
        shown = str(app.screen.query_one("#text", Static).render())
        assert "연가는 사용하기 3일 전까지 소속 부서장에게 신청한다." in shown
        await pilot.press("escape")
        assert app.screen is chat
        # A new conversation has no sources to open.
        await pilot.press("ctrl+n")
        await pilot.press("f10")
        assert app.screen is chat

    run(app, scenario)
