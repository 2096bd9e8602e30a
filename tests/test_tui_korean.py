"""The Korean UI says every error and refusal in Korean, from its code and parameters.

The table tests walk every ApplianceError subclass and every code the core raises
(found in its source) and check that the Korean sentence has no English sentence
in it, the parameters' own values aside; the Pilot tests look at what a Korean
screen shows for a DLP block, a wrong password and a refused audit screen, and
change a password from the UI through the real service.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import sys
from functools import cache
from pathlib import Path

import pytest
from textual.binding import Binding
from textual.widgets import Input, Static

import appliance
from appliance.documents.sandbox import REFUSAL_CODES
from appliance.errors import ERROR_CLASSES, ApplianceError, BlockedError
from appliance.identity import Users
from appliance.policy.schema import DETECTORS
from appliance.tui.chat import ChatScreen
from appliance.tui.forms import OwnPasswordForm
from appliance.tui.login import LoginScreen
from appliance.tui.messages import FALLBACKS, KINDS, MESSAGES, say
from appliance.tui.text import TEXT
from tests.test_tui import ScriptedEngine, ask, close_services, make_app, run, sign_in, until

__all__ = ["close_services"]  # the fixture that stops each app's service

# Two or more English words in a row: an English sentence, or part of one.
ENGLISH = re.compile(r"[A-Za-z]{2,}(?:[\s,.'\u2019-]+[A-Za-z]{2,})+")
HANGUL = re.compile(r"[가-힣]")
ROOT = Path(appliance.__file__).parent
# Codes the core sets from a variable rather than a literal, with the parameters sent.
SET_FROM_VARIABLES = [
    ("idle", ()),  # a connection idle since its sign-in (service/connection.py)
    ("no_sign_in", ()),
    *((code, ()) for code in sorted(REFUSAL_CODES)),  # a parser's refusal, from its child
    *((code, ("name",)) for code in sorted(REFUSAL_CODES)),  # ... named by the library
]


@cache
def error_classes() -> dict[str, type[ApplianceError]]:
    """Every ApplianceError subclass, once every module of the package is imported."""
    for module in pkgutil.walk_packages([str(ROOT)], "appliance."):
        if not module.name.endswith("__main__"):  # runs the CLI
            importlib.import_module(module.name)
    found: dict[str, type[ApplianceError]] = {}
    todo = [ApplianceError]
    while todo:
        cls = todo.pop()
        found[cls.__name__] = cls
        todo.extend(cls.__subclasses__())
    return found


def raised_codes() -> list[tuple[str, str, tuple[str, ...]]]:
    """(class name, code, parameter names) of every call in the core with `code="..."`."""
    found = set()
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            keywords = {k.arg: k.value for k in node.keywords if k.arg is not None}
            code = keywords.pop("code", None)
            if isinstance(code, ast.Constant) and isinstance(code.value, str):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                found.add((name, code.value, tuple(sorted(keywords))))
    return sorted(found)


def raised_and_set() -> list[tuple[str, str, tuple[str, ...]]]:
    return raised_codes() + [("ApplianceError", code, p) for code, p in SET_FROM_VARIABLES]


def made(cls: type[ApplianceError], message: str, code: str | None, **params: object):
    """An error of `cls` as the client rebuilds it (some subclasses take other arguments)."""
    error = ApplianceError.__new__(cls)
    ApplianceError.__init__(error, message, code=code, **params)
    return error


def assert_korean(text: str, values: tuple[str, ...] = ()) -> None:
    """`text` is Korean: no run of English words once the parameters' values are out."""
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, " ")
    assert HANGUL.search(text), text
    assert not ENGLISH.search(text), f"English in the Korean UI: {text!r}"


def test_the_walks_find_what_the_core_raises() -> None:
    codes = {code for _, code, _ in raised_codes()}
    assert {"dlp_blocked", "level_above_clearance", "wrong_password", "busy"} <= codes
    assert {"BlockedError", "TamperError", "ProtocolError"} <= set(error_classes())


@pytest.mark.parametrize(
    ("raiser", "code", "params"), raised_and_set(), ids=lambda v: str(v) if v else "-"
)
def test_every_code_raised_has_korean_and_english(
    raiser: str, code: str, params: tuple[str, ...]
) -> None:
    """Each parameter gets a value no template could make up: a Korean template that
    leaves one out, or an English word in it, fails."""
    cls = error_classes().get(raiser, ApplianceError)
    values = {name: f"X{i}" for i, name in enumerate(params, start=1)}
    error = made(cls, "", code, **values)
    korean = say(error, "ko")
    assert_korean(korean, tuple(values.values()))
    for value in values.values():
        assert value in korean, f"{code}: the Korean text leaves {value} out: {korean!r}"
    english = say(error, "en")
    assert english.strip()
    assert not HANGUL.search(english)
    assert code in MESSAGES, f"{code} has no words of its own"


@pytest.mark.parametrize("cls", sorted(error_classes().values(), key=lambda c: c.__name__))
def test_every_error_class_has_a_korean_and_an_english_sentence(
    cls: type[ApplianceError],
) -> None:
    error = made(cls, "", None)  # its default code: the class's name
    assert_korean(say(error, "ko"))
    assert say(error, "en").strip()
    assert say(made(cls, "the core's own sentence", None), "en") == "the core's own sentence"


def test_the_class_sentences_cover_the_hierarchy() -> None:
    assert set(ERROR_CLASSES) <= set(FALLBACKS)
    for english, korean in FALLBACKS.values():
        assert english.strip()
        assert_korean(korean)


def test_a_missing_parameter_falls_back_and_never_raises() -> None:
    error = BlockedError("the core's words", code="dlp_blocked", what="the prompt")
    assert say(error, "ko") == FALLBACKS[BlockedError][1]  # no `kind` came
    assert say(BlockedError("x", code="unheard_of"), "ko") == FALLBACKS[BlockedError][1]
    broken = BlockedError("x", code="label_above_clearance", what=None, label=3, user="{x}")
    assert_korean(say(broken, "ko"), ("3", "{x}"))


def test_parameter_ids_are_said_in_words() -> None:
    assert set(DETECTORS) <= set(KINDS)
    for detector in DETECTORS:
        error = BlockedError("x", code="dlp_blocked", what="the prompt", kind=detector)
        assert_korean(say(error, "ko"))
    levels = {"secret-2": "Ⅱ급비밀", "restricted": "대외비"}
    error = BlockedError(
        "x",
        code="label_above_clearance",
        what="answer",
        label="secret-2",
        clearance="restricted",
        user="kim",
    )
    said = say(error, "ko", levels)
    assert said == "답변의 등급이 Ⅱ급비밀(으)로, kim의 비밀취급인가(대외비)보다 높습니다."
    denied = made(
        error_classes()["PermissionDeniedError"],
        "x",
        "role_denied",
        user="kim",
        role="operator",
        roles=["admin", "officer"],
    )
    assert say(denied, "ko") == (
        "kim(운영자)은(는) 이 작업을 할 수 없습니다. 관리자 또는 보안담당관 역할이 필요합니다."
    )


def test_every_key_of_every_screen_has_korean_words() -> None:
    error_classes()  # every module imported, the screens among them
    missing = set()
    screens = [m for name, m in list(sys.modules.items()) if name.startswith("appliance.tui.")]
    for module in screens:
        for value in vars(module).values():
            if getattr(value, "__module__", None) != module.__name__:
                continue  # Textual's own, or imported from another module
            for binding in getattr(value, "BINDINGS", None) or []:
                if isinstance(binding, Binding) and binding.show and binding.id not in TEXT:
                    missing.add(f"{value.__name__}: {binding.id}")
    assert not missing


# -- the Korean UI, through Textual's Pilot --------------------------------------------------


def notice_of(app) -> str:
    return str(app.screen.query_one("#notice", Static).render())


def message_of(app) -> str:
    return str(app.screen.query_one("#message", Static).render())


@pytest.fixture
def kim(tmp_path: Path) -> Path:
    from tests.test_tui import begin_log

    begin_log(tmp_path)
    with Users(tmp_path) as users:
        users.add("kim", "operator", "restricted", "operator-pass-1", 10, must_change=False)
    return tmp_path


def test_refusals_in_the_korean_ui_are_korean(kim: Path) -> None:
    engine = ScriptedEngine(["never shown"])
    app = make_app(kim, engine, "defense-kr")

    async def scenario(pilot) -> None:
        assert app.ui_language == "ko"
        await sign_in(pilot, "kim", "wrong")
        assert message_of(app) == "로그인 실패: 사용자 이름 또는 비밀번호가 틀렸습니다."

        await sign_in(pilot, "kim", "operator-pass-1")
        assert isinstance(app.screen, ChatScreen)
        await ask(pilot, "주민번호 900101-1234568 확인")
        await until(pilot, lambda: bool(notice_of(app)))
        notice = notice_of(app)
        assert "주민등록번호" in notice
        assert_korean(notice)

        await pilot.press("f5")  # an operator may not read the audit log
        notice = notice_of(app)
        assert "감사 로그를 열 수 없습니다" in notice
        assert_korean(notice, ("kim", "operator"))

    run(app, scenario)
    assert engine.prompts == []  # the model never saw the number


def test_an_operator_changes_their_password_from_the_ui(kim: Path) -> None:
    app = make_app(kim, ScriptedEngine(["ok"]), "defense-kr")

    def fill(form: OwnPasswordForm, current: str, new: str, repeat: str) -> None:
        form.query_one("#current", Input).value = current
        form.query_one("#password", Input).value = new
        form.query_one("#repeat", Input).value = repeat
        form.query_one("#repeat", Input).focus()

    async def scenario(pilot) -> None:
        await sign_in(pilot, "kim", "operator-pass-1")
        await pilot.press("f8")
        form = app.screen
        assert isinstance(form, OwnPasswordForm)

        fill(form, "not-my-password", "kims-new-pass-1", "kims-new-pass-1")
        await pilot.press("enter")
        assert app.screen is form  # it stays open, and says why
        assert str(form.query_one("#error", Static).render()) == "현재 비밀번호가 틀렸습니다."

        fill(form, "operator-pass-1", "short", "short")
        await pilot.press("enter")
        error = str(form.query_one("#error", Static).render())
        assert error == "비밀번호는 12자 이상이어야 합니다."  # defense-kr's minimum

        fill(form, "operator-pass-1", "kims-new-pass-1", "kims-new-pass-1")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, LoginScreen))
        assert message_of(app) == app.words("password.changed")
        assert_korean(message_of(app))

        await sign_in(pilot, "kim", "operator-pass-1")  # the old one no longer opens
        assert isinstance(app.screen, LoginScreen)
        assert message_of(app) == "로그인 실패: 사용자 이름 또는 비밀번호가 틀렸습니다."
        await sign_in(pilot, "kim", "kims-new-pass-1")
        assert isinstance(app.screen, ChatScreen)

    run(app, scenario)
    with Users(kim) as users:
        assert users.account("kim").must_change is False  # type: ignore[union-attr]
