"""Prompt rendering and the streaming text logic, without a model."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.engine import ChatFormat, Generation, GenerationStats, Message
from appliance.errors import EngineError, ModelFormatError, UsageError

PLAIN = ChatFormat(None, bos_token="<s>", eos_token="</s>")


def test_plain_transcript_for_base_models() -> None:
    prompt = PLAIN.render(
        [
            Message("system", "You are terse."),
            Message("user", "Hi"),
            Message("assistant", "Hello."),
            Message("user", "Bye"),
        ]
    )
    assert prompt == "You are terse.\n\nUser: Hi\nAssistant: Hello.\nUser: Bye\nAssistant:"
    assert PLAIN.stop_strings == ("\nUser:", "\nAssistant:")


def test_a_template_is_rendered_in_the_sandbox() -> None:
    template = "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}"
    fmt = ChatFormat(template, bos_token="<s>", eos_token="</s>")
    assert fmt.render([Message("user", "hi")]) == "<s>[user]hi"
    assert fmt.stop_strings == ()


def test_a_template_cannot_reach_python_internals() -> None:
    escape = "{{ messages.__class__.__mro__[1].__subclasses__() }}"
    fmt = ChatFormat(escape, bos_token="", eos_token="")
    with pytest.raises(EngineError, match="chat template"):
        fmt.render([Message("user", "hi")])


def test_a_template_may_refuse_a_conversation() -> None:
    fmt = ChatFormat("{{ raise_exception('no system role') }}", bos_token="", eos_token="")
    with pytest.raises(EngineError, match="no system role"):
        fmt.render([Message("user", "hi")])


def test_a_broken_template_is_a_model_format_error() -> None:
    with pytest.raises(ModelFormatError, match="not valid Jinja"):
        ChatFormat("{% for %}", bos_token="", eos_token="")


@pytest.mark.parametrize(
    "roles",
    [
        [],
        ["system"],
        ["user", "assistant"],
        ["user", "user"],
        ["assistant", "user"],
        ["user", "system", "user"],
    ],
)
def test_conversations_must_alternate_and_end_with_the_user(roles: list[str]) -> None:
    with pytest.raises(UsageError):
        PLAIN.render([Message(role, "x") for role in roles])  # type: ignore[arg-type]


def test_unknown_roles_are_refused() -> None:
    with pytest.raises(UsageError, match="unknown chat role"):
        Message("tool", "x")  # type: ignore[arg-type]


def stream(pieces: list[bytes], stop: tuple[str, ...] = (), max_tokens: int = 10_000) -> str:
    """Run the real Generation over scripted token pieces."""
    finished: list[bool] = []
    generation = Generation(
        iter(range(len(pieces))),
        piece_of=lambda token: pieces[token],
        is_end=lambda token: False,
        max_tokens=max_tokens,
        stop_strings=stop,
        stats=GenerationStats(prompt_tokens=0),
        on_finish=lambda: finished.append(True),
    )
    text = generation.text()
    assert finished == [True]
    return text


def split_bytes(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@given(text=st.text(), cuts=st.lists(st.integers(min_value=0)))
def test_utf8_split_across_tokens_is_reassembled(text: str, cuts: list[int]) -> None:
    assert stream(split_bytes(text.encode(), cuts)) == text.lstrip()


@given(
    text=st.text(alphabet="ab\nUser:Asistn 가", max_size=80),
    cuts=st.lists(st.integers(min_value=0), max_size=20),
)
def test_output_ends_before_the_first_stop_string(text: str, cuts: list[int]) -> None:
    stops = ("\nUser:", "\nAssistant:")
    end = min((i for stop in stops if (i := text.find(stop)) >= 0), default=len(text))
    assert stream(split_bytes(text.encode(), cuts), stops) == text[:end].lstrip()


def test_the_earliest_of_several_stop_strings_wins() -> None:
    pieces = [b"one\nAssis", b"tant: two\nUser: three"]
    assert stream(pieces, ("\nUser:", "\nAssistant:")) == "one"


def test_max_tokens_counts_tokens_not_characters() -> None:
    assert stream([b"ab", b"cd", b"ef"], max_tokens=2) == "abcd"


def test_whitespace_before_the_answer_is_dropped_but_not_inside_it() -> None:
    assert stream([b" ", b"\n", b" Hello", b"  world\n"]) == "Hello  world\n"
