"""The engine on the real embedded model: streaming, cancel, trimming, determinism."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from appliance.config import EngineSettings, GenerationParams
from appliance.engine import Engine, Message
from appliance.errors import ContextOverflowError, EngineError
from tests.conftest import TEST_SETTINGS

GREEDY = GenerationParams(max_tokens=24, temperature=0.0, seed=1)
ESSAY = [Message("user", "Write a long essay about the history of the printing press.")]


def ask(engine: Engine, prompt: str, params: GenerationParams = GREEDY) -> str:
    return engine.chat([Message("user", prompt)], params).text()


def test_the_model_answers(engine: Engine) -> None:
    generation = engine.chat([Message("user", "What is the capital of France?")], GREEDY)
    text = generation.text()
    assert "paris" in text.lower()
    assert 1 <= generation.stats.completion_tokens <= GREEDY.max_tokens
    assert generation.stats.finish_reason in ("stop", "length")
    assert generation.stats.time_to_first_token is not None


def test_answers_stream_in_pieces(engine: Engine) -> None:
    pieces = list(engine.chat(ESSAY, GREEDY))
    assert len(pieces) > 5
    assert all(pieces)
    assert "".join(pieces) == engine.chat(ESSAY, GREEDY).text()


def test_max_tokens_bounds_the_answer(engine: Engine) -> None:
    generation = engine.chat(ESSAY, GenerationParams(max_tokens=5, temperature=0.0))
    generation.text()
    assert generation.stats.completion_tokens == 5
    assert generation.stats.finish_reason == "length"


def test_greedy_answers_are_reproducible(engine: Engine, model_path: Path) -> None:
    first = ask(engine, "Name three colours.")
    assert ask(engine, "Name three colours.") == first
    with Engine(model_path, TEST_SETTINGS) as fresh:
        assert ask(fresh, "Name three colours.") == first


def test_seeded_sampling_is_reproducible(engine: Engine) -> None:
    sampled = GenerationParams(max_tokens=24, temperature=1.0, seed=1234)
    first = ask(engine, "Tell me a story.", sampled)
    ask(engine, "Something else entirely.", GenerationParams(max_tokens=8, seed=99))
    assert ask(engine, "Tell me a story.", sampled) == first


def test_cancel_from_another_thread_stops_within_two_tokens(engine: Engine) -> None:
    generation = engine.chat(ESSAY, GenerationParams(max_tokens=400, temperature=0.0))
    pieces: list[str] = []
    three_pieces = threading.Event()

    def consume() -> None:
        for piece in generation:
            pieces.append(piece)
            if len(pieces) == 3:
                three_pieces.set()

    consumer = threading.Thread(target=consume)
    consumer.start()
    assert three_pieces.wait(timeout=120)
    tokens_at_cancel = generation.stats.completion_tokens
    generation.cancel()
    consumer.join(timeout=120)
    assert not consumer.is_alive()
    assert generation.stats.finish_reason == "cancelled"
    assert generation.stats.completion_tokens <= tokens_at_cancel + 2
    assert ask(engine, "Are you free again?")  # the engine serves the next answer


def test_one_answer_at_a_time(engine: Engine) -> None:
    first = engine.chat(ESSAY, GREEDY)
    next(first)
    with pytest.raises(EngineError, match="already answering"):
        engine.chat(ESSAY, GREEDY)
    first.close()
    assert ask(engine, "Hello")


def test_an_unread_answer_frees_the_engine_when_closed(engine: Engine) -> None:
    engine.chat(ESSAY, GREEDY).close()
    assert ask(engine, "Hello")


def test_long_histories_are_trimmed_to_the_context(model_path: Path) -> None:
    settings = EngineSettings(context_length=512, threads=TEST_SETTINGS.threads)
    turns: list[Message] = []
    for index in range(30):
        turns.append(Message("user", f"Question {index}: describe the number {index} at length."))
        turns.append(Message("assistant", f"The number {index} is interesting. " * 4))
    turns.append(Message("user", "What is 2 + 2?"))
    params = GenerationParams(max_tokens=64, temperature=0.0)
    with Engine(model_path, settings) as small:
        generation = small.chat([Message("system", "Be brief."), *turns], params)
        assert generation.text()
    stats = generation.stats
    assert stats.dropped_messages > 0
    assert stats.dropped_messages % 2 == 0
    assert stats.prompt_tokens + params.max_tokens <= settings.context_length


def test_a_prompt_larger_than_the_context_is_refused(model_path: Path) -> None:
    with Engine(
        model_path, EngineSettings(context_length=256, threads=TEST_SETTINGS.threads)
    ) as small:
        with pytest.raises(ContextOverflowError, match="context window of 256"):
            small.chat([Message("user", "word " * 1000)], GREEDY)
        assert ask(small, "Still there?")


def test_the_base_model_gets_a_plain_transcript(engine: Engine) -> None:
    prompt = engine.chat_format.render([Message("system", "Be brief."), Message("user", "Hi")])
    assert not engine.chat_format.uses_model_template
    assert prompt == "Be brief.\n\nUser: Hi\nAssistant:"


def test_a_models_own_template_is_used(templated_model: Path) -> None:
    with Engine(templated_model, TEST_SETTINGS) as templated:
        chat = templated.chat_format
        prompt = chat.render([Message("system", "Be brief."), Message("user", "Hi")])
        assert chat.uses_model_template
        assert prompt == (
            "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
        )
        # Markers in the template are special tokens, not text: one token each.
        assert templated.count_tokens("<start_of_turn>") == templated.count_tokens("") + 1
        assert ask(templated, "Hi")


def test_korean_streams_as_whole_characters(engine: Engine) -> None:
    params = GenerationParams(max_tokens=48, temperature=0.0)
    pieces = list(
        engine.chat([Message("user", "한국의 수도는 어디입니까? 한국어로 답하세요.")], params)
    )
    text = "".join(pieces)
    assert any("\uac00" <= ch <= "\ud7a3" for ch in text)  # Hangul syllables
    assert "\ufffd" not in text


def test_model_info(engine: Engine) -> None:
    info = engine.info
    assert info.architecture == "gemma3"
    assert info.quantization == "Q4_K_M"
    assert 200_000_000 < info.parameters < 400_000_000
    assert info.context_length == 32768
    assert engine.context_length == TEST_SETTINGS.context_length


def test_loads_from_an_open_file_descriptor(model_path: Path, engine: Engine) -> None:
    fd = os.open(model_path, os.O_RDONLY)
    try:
        with Engine(f"/proc/self/fd/{fd}", TEST_SETTINGS) as by_fd:
            assert ask(by_fd, "Name three colours.") == ask(engine, "Name three colours.")
    finally:
        os.close(fd)


def test_loads_from_an_in_memory_file(model_path: Path, engine: Engine) -> None:
    fd = os.memfd_create("model", os.MFD_CLOEXEC)
    try:
        with model_path.open("rb") as source, os.fdopen(os.dup(fd), "wb") as target:
            shutil.copyfileobj(source, target)
        with Engine(f"/proc/self/fd/{fd}", TEST_SETTINGS) as in_memory:
            assert in_memory.info.name == engine.info.name
            assert ask(in_memory, "Name three colours.") == ask(engine, "Name three colours.")
    finally:
        os.close(fd)


def test_an_abandoned_answer_frees_the_engine(engine: Engine) -> None:
    abandoned = engine.chat(ESSAY, GREEDY)
    next(abandoned)
    del abandoned  # no close(): dropping the last reference must be enough
    assert ask(engine, "Hello")
