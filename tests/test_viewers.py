"""What users typed reaches the officer as visible text: never as terminal codes, forged
lines or markup, in `audit show` (text, JSON, --decrypt) and on the officer's audit screen."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest
from textual.widgets import DataTable

from appliance.audit import Actor, AuditLog, Event, audit_dir
from appliance.seal import Identity, write_identity
from appliance.textsafe import json_line, printable
from appliance.tui.audit import AuditScreen
from tests.conftest import run_cli, with_officer
from tests.test_tui import ScriptedEngine, make_app, run

# A clear screen, a window title, a forged line, markup, a bidi override and isolate,
# an 8-bit CSI, DEL, a zero-width joiner and a line separator, around Korean text.
HOSTILE = "evil\x1b[2J\x1b]0;owned\x07\nforged [/] \u202eabc\u2066 \x9b31m\x7f 국방\u200d\u2028end"
UNSAFE = {"Cc", "Cf", "Zl", "Zp", "Cs"}


def raw_controls(text: str) -> list[str]:
    """Characters a terminal would act on, other than the newlines that end lines."""
    return [c for c in text if c != "\n" and unicodedata.category(c) in UNSAFE]


# -- the escaping itself ----------------------------------------------------------------


def test_printable_writes_controls_visibly_and_keeps_korean() -> None:
    shown = printable(HOSTILE)
    assert raw_controls(shown) == []
    assert "\n" not in shown
    for visible in ("\\x1b[2J", "\\x07", "\\n", "\\u202e", "\\u2066", "\\x9b", "\\x7f"):
        assert visible in shown
    assert "\\u200d\\u2028end" in shown
    assert "[/] " in shown  # text that only looks like markup is text
    assert " 국방" in shown
    assert printable("공개 · UNCLASSIFIED\u3000ok") == "공개 · UNCLASSIFIED\u3000ok"
    assert printable("\udcff\U000e0001") == "\\udcff\\U000e0001"  # surrogate, tag


def test_json_line_is_exact_and_terminal_safe() -> None:
    record = {"user": HOSTILE, "odd": "\udcff\U000e0001", "text": "공개"}
    line = json_line(record)
    assert raw_controls(line) == []
    assert "\n" not in line
    assert json.loads(line) == record
    assert "공개" in line  # readable, not \\uXXXX


# -- audit show, through the real CLI ---------------------------------------------------


@pytest.fixture
def hostile(tmp_path: Path, officer: Identity) -> Path:
    """A development-mode home whose log holds HOSTILE in every field `audit show` prints:
    the user (an OS account name, or a tampered log), the model, the label and the prompt."""
    home = with_officer(tmp_path / "home", officer)
    with AuditLog(audit_dir(home)) as log:
        event = Event(Actor(HOSTILE, "operator"), "ask", HOSTILE, label=HOSTILE)
        log.record(event, {"prompt": HOSTILE, "system": "[b]system[/b]\r\n"})
    return home


@pytest.fixture
def officer_key(officer: Identity, tmp_path: Path) -> str:
    path = tmp_path / "officer.key"
    write_identity(path, officer, None)
    return str(path)


def test_show_prints_one_escaped_line_per_event(hostile: Path) -> None:
    result = run_cli("audit", "show", home=hostile)
    assert result.returncode == 0, result.stderr
    assert raw_controls(result.stdout) == []
    lines = result.stdout.splitlines()
    assert len(lines) == len(run_cli("audit", "show", "--json", home=hostile).stdout.splitlines())
    ask = next(line for line in lines if "  ask  " in line)
    assert f"{printable(HOSTILE)}/operator" in ask
    assert ask.count(printable(HOSTILE)) == 3  # the user, the model and the label


def test_show_decrypt_escapes_the_content(hostile: Path, officer_key: str) -> None:
    args = ["--decrypt", "--identity", officer_key, "--action", "ask"]
    result = run_cli("audit", "show", *args, home=hostile)
    assert result.returncode == 0, result.stderr
    assert raw_controls(result.stdout) == []
    event, *content = result.stdout.splitlines()
    assert event.split()[0].isdigit()
    assert sorted(content) == [
        f"        prompt: {printable(HOSTILE)}",
        "        system: [b]system[/b]\\r\\n",
    ]


def test_show_json_keeps_the_exact_values(hostile: Path, officer_key: str) -> None:
    args = ["--json", "--decrypt", "--identity", officer_key, "--action", "ask"]
    result = run_cli("audit", "show", *args, home=hostile)
    assert result.returncode == 0, result.stderr
    assert raw_controls(result.stdout) == []
    [ask] = [json.loads(line) for line in result.stdout.splitlines()]
    assert (ask["user"], ask["object"], ask["label"]) == (HOSTILE, HOSTILE, HOSTILE)
    assert ask["content"]["prompt"] == HOSTILE


@pytest.mark.model
def test_a_hostile_model_name_and_prompt_reach_the_officer_escaped(
    model_path: Path, tmp_path: Path, officer: Identity, officer_key: str
) -> None:
    """The real path: `ask` records the model's file name and the prompt as given."""
    home = with_officer(tmp_path / "home", officer)
    name = "evil\x1b[2J\nforged\u202e.gguf"
    (tmp_path / name).symlink_to(model_path)
    ask = ["ask", "--max-tokens", "2", "--model", str(tmp_path / name), HOSTILE]
    asked = run_cli(*ask, home=home)
    assert asked.returncode == 0, asked.stderr
    args = ["--decrypt", "--identity", officer_key, "--action", "ask"]
    result = run_cli("audit", "show", *args, home=home)
    assert result.returncode == 0, result.stderr
    assert raw_controls(result.stdout) == []
    event, prompt = result.stdout.splitlines()
    assert "evil\\x1b[2J\\nforged\\u202e.gguf" in event
    assert prompt == f"        prompt: {printable(HOSTILE)}"


# -- the officer's audit screen ---------------------------------------------------------


def test_the_audit_screen_shows_hostile_text_literally(tmp_path: Path) -> None:
    """A user `[/]` with escape codes (an odd OS account in development mode, a tampered
    log) is markup-free, visible text on the officer's screen; read as markup it would
    end the screen with a MarkupError."""
    odd = "[/]\x1b[2J\u202e"
    with AuditLog(tmp_path / "audit") as log:
        log.record(Event(Actor(odd, "operator"), "ask", "model", label="[b]x[/b]"))
    app = make_app(tmp_path, ScriptedEngine([]))

    async def scenario(pilot) -> None:
        await pilot.press("enter")  # development mode: every role, the officer's too
        await pilot.press("f5")
        assert isinstance(app.screen, AuditScreen)
        await pilot.pause()
        table = app.screen.query_one(DataTable)
        rows = [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]
        [ask] = [row for row in rows if row[4] == "ask"]
        assert (ask[2], ask[5]) == (printable(odd), "[b]x[/b]")
        drawn = "\n".join(table.render_line(y).text for y in range(table.size.height))
        assert "[/]\\x1b[2J\\u202e" in drawn
        assert "[b]x[/b]" in drawn
        assert raw_controls(drawn) == []

    run(app, scenario)
