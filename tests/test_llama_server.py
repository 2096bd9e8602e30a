"""The llama-server backend, with the real child on the real embedded model.

No part of the engine or the server is replaced: each test drives a real
llama-server child through `LlamaServerEngine`. The non-dumpable check runs
as its own program (`python -m tests.test_llama_server dumpable MODEL`), as
tests/test_probe_hardening.py's scenarios do: as root it first drops
CAP_SYS_PTRACE, so that it, the child and the reader are one ordinary user.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from appliance.config import EngineSettings, GenerationParams, load_home_config
from appliance.engine import AdapterFile, Engine, GenerationStats, Message
from appliance.engine.llama_server import LlamaServerEngine
from appliance.engine.server_process import ServerProcess
from appliance.engine.tools import NODUMP_PRELOAD, llama_tool, shipped_file
from appliance.errors import ConfigError, EngineError, ModelFormatError
from tests.conftest import TEST_SETTINGS
from tests.ggufs import lora_adapter, with_metadata, with_value

ROOT = Path(__file__).resolve().parent.parent
REPORT = "REPORT "
LIST = "Continue the list: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,"
LETTERS = "Continue the list: a, b, c, d, e, f, g, h, i, j, k,"
GREEDY = GenerationParams(max_tokens=24, temperature=0.0, ignore_eos=True)
LONG = GenerationParams(max_tokens=900, temperature=0.0, ignore_eos=True)
WAIT = 120.0  # seconds before a test gives up on something that must happen

pytestmark = pytest.mark.model


def server_settings(slots: int, context: int = 1024) -> EngineSettings:
    return EngineSettings(
        context_length=context, threads=TEST_SETTINGS.threads, backend="llama-server", slots=slots
    )


def ask(engine: Any, prompt: str, params: GenerationParams = GREEDY) -> tuple[str, GenerationStats]:
    generation = engine.chat([Message("user", prompt)], params)
    return generation.text(), generation.stats


@pytest.fixture(scope="module")
def server(model_path: Path):
    with LlamaServerEngine(model_path, server_settings(slots=2), verified=True) as engine:
        yield engine


def test_two_chats_in_parallel_threads_each_get_their_own_answer(server) -> None:
    alone = {prompt: ask(server, prompt) for prompt in (LIST, LETTERS)}
    both_started = threading.Barrier(2, timeout=WAIT)
    answers: dict[str, tuple[str, GenerationStats]] = {}

    def answer(prompt: str) -> None:
        generation = server.chat([Message("user", prompt)], GREEDY)
        first = next(generation)
        both_started.wait()  # neither finishes before the other has begun
        answers[prompt] = (first + generation.text(), generation.stats)

    threads = [threading.Thread(target=answer, args=(prompt,)) for prompt in (LIST, LETTERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert set(answers) == {LIST, LETTERS}
    for prompt, (text, stats) in answers.items():
        assert stats.completion_tokens == GREEDY.max_tokens
        assert stats.token_ids == alone[prompt][1].token_ids
        assert text == alone[prompt][0]
    assert answers[LIST][0] != answers[LETTERS][0]
    assert server.slots == 2


def test_more_answers_than_slots_are_refused(server) -> None:
    running = [server.chat([Message("user", LIST)], GREEDY) for _ in range(server.slots)]
    with pytest.raises(EngineError, match="already answering 2 requests"):
        server.chat([Message("user", LIST)], GREEDY)
    for generation in running:
        generation.close()
    assert ask(server, LIST)[1].completion_tokens == GREEDY.max_tokens


def test_cancel_stops_the_servers_work(server) -> None:
    generation = server.chat([Message("user", LIST)], LONG)
    next(generation)
    threading.Thread(target=generation.cancel).start()
    assert generation.text() == ""
    assert generation.stats.finish_reason == "cancelled"
    # llama-server saw its client go and released the slot long before the 900
    # tokens it was asked for (it logs the tokens the slot held).
    held = _tokens_when_cancelled(server)
    assert held < generation.stats.prompt_tokens + LONG.max_tokens
    assert ask(server, LIST)[1].completion_tokens == GREEDY.max_tokens


def _tokens_when_cancelled(server: LlamaServerEngine) -> int:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        log = "\n".join(server.server_log())
        cancelled = re.findall(r"cancel task, id_task = (\d+)", log)
        if cancelled:
            released = rf"task {cancelled[-1]} \| stop processing: n_tokens = (\d+)"
            found = re.search(released, log)
            if found:
                return int(found.group(1))
        time.sleep(0.05)
    raise AssertionError(f"llama-server never released the cancelled slot: {server.server_log()}")


def test_a_killed_child_loses_its_answer_and_is_restarted(server) -> None:
    restarts: list[str] = []
    restarted = threading.Event()
    server.on_restart = lambda reason: (restarts.append(reason), restarted.set())
    try:
        before = server.server_pid
        generation = server.chat([Message("user", LIST)], LONG)
        next(generation)  # mid-answer
        os.kill(before, signal.SIGKILL)
        with pytest.raises(EngineError) as lost:
            generation.text()
        assert str(lost.value) == "the engine process stopped (exit -9); the answer was lost"
        assert restarted.wait(WAIT)
        assert restarts == ["exit -9"]
        assert server.server_pid != before
        text, stats = ask(server, LIST)
        assert stats.completion_tokens == GREEDY.max_tokens
        assert text
    finally:
        server.on_restart = None


def test_the_same_tokens_as_the_in_process_engine(engine: Engine, model_path: Path) -> None:
    """Greedy, one slot, the same threads, batch and context: token for token."""
    params = GenerationParams(max_tokens=64, temperature=0.0, ignore_eos=True)
    settings = server_settings(slots=1, context=TEST_SETTINGS.context_length)
    assert (settings.threads, settings.batch_size) == (
        TEST_SETTINGS.threads,
        TEST_SETTINGS.batch_size,
    )
    local_text, local = ask(engine, LIST, params)
    with LlamaServerEngine(model_path, settings, verified=True) as single:
        served_text, served = ask(single, LIST, params)
        assert single.context_length == engine.context_length
    assert local.completion_tokens == served.completion_tokens == 64
    assert served.token_ids == local.token_ids
    assert -1 not in served.token_ids
    assert served_text == local_text
    assert served.prompt_tokens == local.prompt_tokens


def test_characters_spelled_in_byte_tokens(engine: Engine, server) -> None:
    """Rare Hangul is spelled with byte tokens; llama-server streams such a
    character's text with its last byte, without naming the others. The text is
    the in-process engine's, the ids are recovered, and an unfinished character
    at the end (which the server drops) is one replacement character in both."""
    prompt = "똠 쀍 똠 쀍 똠 쀍 똠 쀍 똠 쀍 똠 쀍 똠 쀍 똠 쀍"
    bytes_of = {473, 390, 398}  # 똠: <0xEB> <0x98> <0xA0>
    whole = GenerationParams(max_tokens=24, temperature=0.0, ignore_eos=True)
    cut = GenerationParams(max_tokens=23, temperature=0.0, ignore_eos=True)
    local_text, local = ask(engine, prompt, whole)
    served_text, served = ask(server, prompt, whole)
    assert served_text == local_text
    assert "똠" in served_text
    assert served.token_ids == local.token_ids
    assert bytes_of <= set(served.token_ids)
    local_text, local = ask(engine, prompt, cut)
    served_text, served = ask(server, prompt, cut)
    assert served_text == local_text
    assert served_text.endswith("\ufffd")
    assert served.token_ids == [*local.token_ids[:-2], -1, -1]


def test_a_crash_loop_is_given_up(model_path: Path) -> None:
    with LlamaServerEngine(model_path, server_settings(slots=1, context=256), verified=True) as e:
        restarted = threading.Semaphore(0)
        e.on_restart = lambda reason: restarted.release()
        for _ in range(2):
            os.kill(e.server_pid, signal.SIGKILL)
            assert restarted.acquire(timeout=WAIT)
        os.kill(e.server_pid, signal.SIGKILL)
        deadline = time.monotonic() + WAIT
        while True:  # the first request may still meet the dying child
            with pytest.raises(EngineError) as refused:
                ask(e, LIST)
            if "not restarted again" in str(refused.value) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        message = str(refused.value)
        assert message.startswith("the engine process stopped 3 times within 60 seconds")
        assert "(last: exit -9" in message
        assert "\n" not in message


def test_an_unloadable_file_is_refused_before_any_child_starts(
    model_path: Path, tmp_path: Path
) -> None:
    started = ServerProcess.started
    # Passes every Python check; llama.cpp asserts on it (the probe's child dies).
    aborts = with_metadata(model_path, tmp_path / "a.gguf", {"gemma3.rope.scaling.type": "bogus"})
    with pytest.raises(ModelFormatError, match=r"crashed llama\.cpp's loader \(SIGABRT\)"):
        LlamaServerEngine(aborts, server_settings(slots=1))
    impossible = with_value(model_path, tmp_path / "b.gguf", "gemma3.block_count", "<I", 0)
    with pytest.raises(ModelFormatError, match="block_count"):
        LlamaServerEngine(impossible, server_settings(slots=1), verified=True)
    assert ServerProcess.started == started  # no llama-server was started for either


def test_a_file_that_is_not_an_adapter_of_the_model_never_reaches_the_child(
    model_path: Path,
) -> None:
    """Adapters are checked against the model before any child starts: the model
    itself is not an adapter."""
    started = ServerProcess.started
    not_one = AdapterFile("model", model_path, "0" * 64)
    with pytest.raises(ModelFormatError, match="not a valid LoRA adapter"):
        LlamaServerEngine(model_path, server_settings(1, 256), verified=True, adapters=[not_one])
    assert ServerProcess.started == started


def test_the_child_cannot_be_read_by_another_process_of_the_user(model_path: Path) -> None:
    """While llama-server holds the model (from a memfd, as a sealed model is), a
    same-user process cannot open /proc/CHILD/fd/N, though it can read its status;
    the same reader does open the descriptor of a dumpable process holding it."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.test_llama_server", "dumpable", str(model_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith(REPORT))
    report = json.loads(line.removeprefix(REPORT))
    assert report["reader_uid"] == report["child_uid"], report
    assert report["control"] == "opened", report  # the reader can read a dumpable process
    assert report["model_fd"] in ("EACCES", "EPERM"), report
    assert report["adapter_fd"] in ("EACCES", "EPERM"), report
    assert report["any_fd_opened"] is False, report
    assert report["mem"] in ("EACCES", "EPERM"), report
    assert report["status"].startswith("llama-server"), report
    assert report["core_limit"] == ["0", "0"], report
    assert report["answer_tokens"] == 4, report


def test_the_preload_refuses_to_go_on_unhardened() -> None:
    """Run alone (no appliance to hand it anything), the preload stops llama-server
    before main(); where prctl(PR_SET_DUMPABLE) is refused, it exits 3 unserved."""
    server, preload = llama_tool("llama-server"), shipped_file(NODUMP_PRELOAD)
    env = {"LD_PRELOAD": str(preload)}
    alone = subprocess.run(
        [str(server), "--version"], env=env, capture_output=True, text=True, timeout=60
    )
    assert alone.returncode == 4
    assert alone.stderr == "appliance-nodump: not started by the appliance: no model channel\n"
    if platform.machine() != "x86_64":
        pytest.fail("the seccomp filter of tests/test_probe_hardening.py is x86_64's")
    refuse = (
        "import os, sys; from tests.test_probe_hardening import _deny_set_dumpable; "
        "_deny_set_dumpable(); os.execve(sys.argv[1], sys.argv[1:], {'LD_PRELOAD': sys.argv[2]})"
    )
    refused = subprocess.run(
        [sys.executable, "-c", refuse, str(server), str(preload)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 3
    assert refused.stderr.count("\n") == 1
    assert "cannot make itself non-dumpable" in refused.stderr


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[engine]\nbackend = "vllm"\n', "engine.backend: must be one of local, llama-server"),
        ('[engine]\nbackend = "llama-server"\nslots = 0\n', "engine.slots: must be a whole"),
        ('[engine]\nbackend = "llama-server"\nslots = 65\n', "engine.slots: must be at most 64"),
        ("[engine]\nslots = 4\n", "engine.slots: the local engine answers one at a time"),
        ("[engine]\ncontext = 32\n", "engine.context: must be a whole number of at least 64"),
        ("[engine]\nthreads = true\n", "engine.threads: must be a whole number"),
        ("[engine]\nport = 8080\n", "engine.port: unknown key"),
    ],
)
def test_the_home_config_selects_the_backend(tmp_path: Path, text: str, problem: str) -> None:
    (tmp_path / "config.toml").write_text(text)
    with pytest.raises(ConfigError, match=re.escape(problem)):
        load_home_config(tmp_path)


def test_the_home_config_engine_settings(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        '[engine]\nbackend = "llama-server"\nslots = 8\ncontext = 2048\nthreads = 3\n'
    )
    config = load_home_config(tmp_path)
    settings = config.engine_settings()
    assert (settings.backend, settings.slots, settings.context_length) == ("llama-server", 8, 2048)
    assert settings.threads == 3
    assert config.engine_settings(context_length=512, threads=1).context_length == 512
    assert load_home_config(tmp_path / "none").engine_settings() == EngineSettings()


# -- the non-dumpable scenario, in a process of its own ---------------------------------------

PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
CAP_SYS_PTRACE = 19

READER = """
import errno, json, os, sys
pid, control, control_fd = (int(x) for x in sys.argv[1:4])
def attempt(path):
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
        return "opened"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, "error")
argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\\0")
model = argv[argv.index(b"-m") + 1].decode().rsplit("/", 1)[1]
adapter = argv[argv.index(b"--lora-scaled") + 1].decode().rsplit("/", 1)[1].split(":")[0]
status = open(f"/proc/{pid}/status").read()
limits = [x.split()[4:6] for x in open(f"/proc/{pid}/limits") if x.startswith("Max core")]
print(json.dumps({
    "reader_uid": os.getuid(),
    "control": attempt(f"/proc/{control}/fd/{control_fd}"),
    "model_fd": attempt(f"/proc/{pid}/fd/{model}"),
    "adapter_fd": attempt(f"/proc/{pid}/fd/{adapter}"),
    "any_fd_opened": any(attempt(f"/proc/{pid}/fd/{n}") == "opened" for n in range(64)),
    "mem": attempt(f"/proc/{pid}/mem"),
    "status": status.split("\\n", 1)[0].split(":", 1)[1].strip(),
    "core_limit": limits[0],
}))
"""

HOLDER = "import time; time.sleep(600)"  # holds its stdin, the model, until killed


def _as_an_ordinary_user() -> None:
    """Root: drop CAP_SYS_PTRACE from the bounding set and re-execute, once."""
    libc = ctypes.CDLL(None, use_errno=True)
    if os.geteuid() != 0 or libc.prctl(PR_CAPBSET_READ, CAP_SYS_PTRACE, 0, 0, 0) != 1:
        return
    if libc.prctl(PR_CAPBSET_DROP, CAP_SYS_PTRACE, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "cannot drop CAP_SYS_PTRACE")
    os.execv(sys.executable, [sys.executable, "-m", "tests.test_llama_server", *sys.argv[1:]])


def scenario_dumpable(model: Path) -> dict[str, Any]:
    memory = _in_memory(model.read_bytes())
    with tempfile.TemporaryDirectory() as scratch:  # a LoRA adapter, held as a sealed one is
        made = lora_adapter(model, Path(scratch) / "zero.gguf")
        adapter_memory = _in_memory(made.read_bytes())
    adapter = AdapterFile("zero", f"/proc/self/fd/{adapter_memory}", "0" * 64)
    settings = server_settings(slots=1, context=256)
    with LlamaServerEngine(
        f"/proc/self/fd/{memory}", settings, verified=True, adapters=[adapter]
    ) as engine:
        params = GenerationParams(max_tokens=4, temperature=0.0, ignore_eos=True)
        _, stats = ask(engine, "a prompt that stays in the child", params)
        pid = engine.server_pid
        # A dumpable process of the same user holding the same file: the control.
        with open(model, "rb") as held:
            control = subprocess.Popen([sys.executable, "-c", HOLDER], stdin=held)
        try:
            reader = subprocess.run(
                [sys.executable, "-c", READER, str(pid), str(control.pid), "0"],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
        finally:
            control.kill()
            control.wait()
        report: dict[str, Any] = json.loads(reader.stdout)
        uid = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if "Uid:" in x)
        report["child_uid"] = int(uid.split()[1])
        report["answer_tokens"] = stats.completion_tokens
    os.close(memory)
    os.close(adapter_memory)
    return report


def _in_memory(data: bytes) -> int:
    memory = os.memfd_create("appliance-test", os.MFD_CLOEXEC)
    os.write(memory, data)  # a small model: one write is enough
    return memory


def main() -> None:
    _as_an_ordinary_user()
    report = scenario_dumpable(Path(sys.argv[2]))
    print(REPORT + json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
