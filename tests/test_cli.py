"""The command line as users meet it: separate processes, real model, exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from appliance import __version__, catalog
from appliance.errors import ContextOverflowError, InputError, IntegrityError, ModelFormatError
from tests.conftest import assert_one_line_error, run_cli, with_officer
from tests.test_gguf import prefix_copy, truncation_points


def test_version(tmp_path: Path) -> None:
    result = run_cli("--version", home=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"appliance {__version__}"


def test_ask_streams_an_answer_from_the_default_model(model_home: Path) -> None:
    result = run_cli(
        "ask",
        "--max-tokens",
        "16",
        "--temperature",
        "0",
        "--stats",
        "What is the capital of France?",
        home=model_home,
    )
    assert result.returncode == 0, result.stderr
    assert "paris" in result.stdout.lower()
    assert "tokens/s" in result.stderr


def test_ask_reads_the_prompt_from_stdin(model_home: Path) -> None:
    by_arg = run_cli("ask", "--max-tokens", "8", "--seed", "3", "Say hello.", home=model_home)
    by_stdin = run_cli(
        "ask", "--max-tokens", "8", "--seed", "3", "-", home=model_home, stdin="Say hello."
    )
    assert by_arg.returncode == by_stdin.returncode == 0
    assert by_arg.stdout == by_stdin.stdout
    assert by_arg.stdout.strip()


def test_chat_answers_each_line_of_a_script(model_home: Path) -> None:
    script = "What is the capital of France?\n/reset\nWhat is the capital of Italy?\n"
    result = run_cli(
        "chat", "--max-tokens", "12", "--temperature", "0", home=model_home, stdin=script
    )
    assert result.returncode == 0, result.stderr
    assert "paris" in result.stdout.lower()
    assert "rome" in result.stdout.lower()


def test_the_default_model_is_prepared_on_first_use(tmp_path: Path, officer) -> None:
    with_officer(tmp_path, officer)
    result = run_cli("ask", "--max-tokens", "4", "Hi", home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress bar in a pipe
    listing = json.loads(run_cli("models", "list", "--json", home=tmp_path).stdout)
    assert [row["prepared"] for row in listing if row["default"]] == [True]


def test_a_tampered_default_model_is_refused(model_home: Path, tmp_path: Path) -> None:
    entry = catalog.load_catalog().default_entry
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    tampered = catalog.model_path(entry, home)
    shutil.copyfile(catalog.model_path(entry, model_home), tampered)
    with tampered.open("r+b") as handle:
        handle.seek(-1, 2)
        handle.write(b"\x00" if handle.read(1) != b"\x00" else b"\x01")
    result = run_cli("ask", "Hi", home=home)
    assert_one_line_error(result, IntegrityError.exit_code, "does not match the catalogued sha256")
    repaired = run_cli("models", "prepare", home=home)
    assert repaired.returncode == 0
    assert run_cli("ask", "--max-tokens", "2", "Hi", home=home).returncode == 0


def test_models_inspect(model_path: Path, tmp_path: Path) -> None:
    result = run_cli("models", "inspect", str(model_path), "--json", home=tmp_path)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["architecture"] == "gemma3"
    assert info["quantization"] == "Q4_K_M"
    assert info["sha256"] == catalog.load_catalog().default_entry.sha256
    text = run_cli("models", "inspect", str(model_path), home=tmp_path).stdout
    assert "Q4_K_M" in text
    assert "sha256" in text


def bad_input(case: str, model_path: Path, tmp_path: Path) -> tuple[Path, int, str]:
    """The file for one bad-input case, its exit code and a fragment of its message."""
    if case.startswith("truncated in "):
        length = truncation_points(model_path)[case.removeprefix("truncated in ")]
        cut = prefix_copy(model_path, tmp_path / "cut.gguf", length)
        return cut, ModelFormatError.exit_code, "truncated"
    if case == "empty":
        (tmp_path / "empty.gguf").touch()
    return {
        "missing": (tmp_path / "missing.gguf", InputError.exit_code, "does not exist"),
        "directory": (tmp_path, InputError.exit_code, "is a directory"),
        "text file": (Path("/etc/hostname"), ModelFormatError.exit_code, "GGUF magic"),
        "empty": (tmp_path / "empty.gguf", ModelFormatError.exit_code, "is empty"),
    }[case]


CASES = [
    "missing",
    "directory",
    "text file",
    "empty",
    "truncated in counts",
    "truncated in metadata",
    "truncated in tensor infos",
    "truncated in middle tensor",
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("command", ["ask", "inspect"])
def test_bad_model_files_get_one_clear_line(
    model_path: Path, tmp_path: Path, case: str, command: str
) -> None:
    path, code, fragment = bad_input(case, model_path, tmp_path)
    args = (
        ["ask", "--model", str(path), "Hi"]
        if command == "ask"
        else ["models", "inspect", str(path)]
    )
    result = run_cli(*args, home=tmp_path)
    assert_one_line_error(result, code, fragment)
    assert result.stdout == ""


def test_a_valid_gguf_the_engine_cannot_load(tmp_path: Path) -> None:
    from tests.ggufs import small_gguf

    odd = small_gguf(tmp_path / "odd.gguf", arch="no-such-architecture")
    result = run_cli("ask", "--model", str(odd), "Hi", home=tmp_path)
    assert_one_line_error(result, 5, "llama.cpp could not load")


def test_a_prompt_too_long_for_the_context(model_home: Path) -> None:
    result = run_cli("ask", "--context", "128", "-", home=model_home, stdin="word " * 500)
    assert_one_line_error(result, ContextOverflowError.exit_code, "context window of 128")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ([], "required"),
        (["frobnicate"], "invalid choice"),
        (["ask"], "required"),
        (["ask", "--max-tokens", "many", "Hi"], "invalid int value"),
        (["ask", "--max-tokens", "0", "Hi"], "max tokens must be at least 1"),
        (["ask", "--temperature", "9", "Hi"], "temperature"),
        (["ask", "  "], "the prompt is empty"),
        (["models", "prepare", "no-such-model"], "no model named"),
    ],
)
def test_usage_errors(tmp_path: Path, args: list[str], fragment: str) -> None:
    assert_one_line_error(run_cli(*args, home=tmp_path), 2, fragment)


def test_a_reader_that_goes_away_ends_the_answer_quietly(model_home: Path) -> None:
    env = {**os.environ, "APPLIANCE_HOME": str(model_home)}
    command = f"{sys.executable} -m appliance ask --max-tokens 200 'Tell me a story.' | head -c 1"
    result = subprocess.run(  # bytes: the one byte may be the start of a character
        ["bash", "-o", "pipefail", "-c", command], capture_output=True, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    assert len(result.stdout) == 1


def test_models_list_marks_the_default(model_home: Path) -> None:
    result = run_cli("models", "list", home=model_home)
    assert result.returncode == 0
    default = next(line for line in result.stdout.splitlines() if line.startswith("*"))
    assert "gemma3-270m-q4_k_m" in default
    assert "prepared" in default


def test_an_error_that_quotes_the_user_is_one_escaped_line(tmp_path: Path) -> None:
    """A message quoting what was typed (here --since) cannot forge a line or send the
    terminal codes: ESC, BEL, the newline and the bidi override arrive as visible escapes."""
    typed = "\x1b]0;owned\x07\nappliance: forged\u202e"
    result = run_cli("audit", "show", "--since", typed, home=tmp_path)
    assert_one_line_error(result, 2, "is not an ISO date")
    assert "'\\x1b]0;owned\\x07\\nappliance: forged\\u202e' is not an ISO date" in result.stderr
