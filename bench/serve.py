"""The service against the in-process engine, and parallel answers on llama-server.

The same prompts, settings and seeds are answered by an `Engine` in this
process, by the session pipeline in this process (DLP, labels, audit: what
`ask` runs without a service) and through a real `appliance serve` (a
development home: the user is cleared to the top, so answers stream piece
by piece), in turn, so that a noisy machine loads all three alike. The
first token through the pipeline waits for the DLP holdback (the policy's
`dlp.holdback` characters) and the durable `ask` record. Then the service's resident memory
with 1 and with 8 connected clients, each having had an answer: one model
copy, whatever the number of clients:
`service_vs_inprocess_tokens_per_s: <ratio>` (target >= 0.95).

Then the llama-server backend (engine/llama_server.py): a second service
whose home's config.toml selects it with 8 slots, and a raw llama-server with
the same options, run in turn in the same process: 1, 4 and 8 concurrent
clients, each asking the same prompts in turn at temperature 0; aggregate
tokens/s (all tokens over the wall time), time to first token p50/p95 at 8
clients, and resident memory (service + its llama-server child). The service
cannot ask for end-of-sequence to be ignored (the protocol has no such field),
so its answers may end early; tokens/s counts the tokens each produced, and
the lines say how many that was. Last line:
`serve_8_clients_vs_1: <ratio>` (the service's 8-client aggregate tokens/s
over its 1-client tokens/s; near 1 while the service answers one at a time).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from appliance import catalog
from appliance.audit import AuditLog, audit_dir
from appliance.config import EngineSettings, GenerationParams
from appliance.engine import ChatFormat, Engine, Message, native
from appliance.engine.server_process import server_arguments
from appliance.engine.tools import llama_tool
from appliance.engine.unixhttp import Stream, events, get_json
from appliance.policy import active_policy
from appliance.service import Client, home_socket
from appliance.session import Conversation, Session, development_mode

PROMPTS = [
    "Continue the list: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,",
    "Continue the list: a, b, c, d, e, f, g, h, i, j, k,",
]
TOKENS = 96
ROUNDS = 6
SETTINGS = EngineSettings(context_length=2048, threads=2)


def in_process(engine: Engine, prompt: str) -> tuple[float, float]:
    start = time.perf_counter()
    generation = engine.chat([Message("user", prompt)], _params())
    first = None
    for _ in generation:
        first = first or time.perf_counter() - start
    stats = generation.stats
    return stats.completion_tokens / (time.perf_counter() - start), first or 0.0


def in_session(session: Session, prompt: str) -> tuple[float, float]:
    start = time.perf_counter()
    turn = session.turn(Conversation(), prompt, _params())
    first = None
    try:
        for _ in turn:
            first = first or time.perf_counter() - start
    finally:
        turn.close()
    return turn.stats.completion_tokens / (time.perf_counter() - start), first or 0.0


def through_service(client: Client, prompt: str) -> tuple[float, float]:
    start = time.perf_counter()
    answer = client.ask(prompt, max_tokens=TOKENS, temperature=0.0, seed=1)
    first = None
    for _ in answer:
        first = first or time.perf_counter() - start
    assert answer.result is not None
    return answer.result["completion_tokens"] / (time.perf_counter() - start), first or 0.0


def _params() -> GenerationParams:
    return GenerationParams(max_tokens=TOKENS, temperature=0.0, seed=1)


def _session(home: Path, engine: Engine, log: AuditLog) -> Session:
    policy = active_policy(home)
    principal = development_mode(home, policy, "bench")
    assert principal is not None
    return Session(home, engine, log, policy, principal, "model", policy.lowest)


def resident_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def start(home: Path, model: Path, *options: str) -> subprocess.Popen[str]:
    env = {**os.environ, "APPLIANCE_HOME": str(home)}
    command = [sys.executable, "-m", "appliance", "serve", "--model", str(model)]
    command += [*options] or ["--threads", "2", "--context", "2048"]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    for line in process.stderr:
        if line.startswith("appliance: serving"):
            threading.Thread(target=process.stderr.read, daemon=True).start()
            return process
    raise SystemExit(f"the service did not start (exit {process.wait()})")


def main() -> None:
    known = catalog.load_catalog()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        model = catalog.prepare(known.default_entry, home)
        service = start(home, model)
        try:
            local: list[tuple[float, float]] = []
            piped: list[tuple[float, float]] = []
            served: list[tuple[float, float]] = []
            with (
                Engine(model, SETTINGS, verified=True) as engine,
                AuditLog(audit_dir(Path(tmp) / "local")) as log,
                Client(home_socket(home)) as c,
            ):
                session = _session(Path(tmp) / "local", engine, log)
                c.sign_in(None, None)
                for _ in range(ROUNDS):
                    for prompt in PROMPTS:
                        local.append(in_process(engine, prompt))
                        piped.append(in_session(session, prompt))
                        served.append(through_service(c, prompt))
                one = resident_kib(service.pid)
                clients = [Client(home_socket(home)) for _ in range(7)]
                for client in clients:
                    client.sign_in(None, None)
                    client.ask(PROMPTS[0], max_tokens=8, seed=1).text()
                eight = resident_kib(service.pid)
                for client in clients:
                    client.close()
        finally:
            service.terminate()
            service.wait(timeout=60)
        parallel = parallel_lines(Path(tmp), model)
    piped_tps = statistics.median(t for t, _ in piped)
    piped_first = statistics.median(f for _, f in piped) * 1000
    local_tps = statistics.median(t for t, _ in local)
    served_tps = statistics.median(t for t, _ in served)
    local_first = statistics.median(f for _, f in local) * 1000
    served_first = statistics.median(f for _, f in served) * 1000
    runs = len(local)
    print(f"in-process: {local_tps:.1f} tokens/s, first token {local_first:.0f} ms ({runs} runs)")
    print(f"pipeline:   {piped_tps:.1f} tokens/s, first token {piped_first:.0f} ms ({runs} runs)")
    print(f"service:    {served_tps:.1f} tokens/s, first token {served_first:.0f} ms ({runs} runs)")
    print(f"first token, service vs in-process pipeline: {served_first / piped_first:.2f}x")
    print(f"service resident memory: {one >> 10} MiB (1 client), {eight >> 10} MiB (8 clients)")
    print(f"service_vs_inprocess_tokens_per_s: {served_tps / local_tps:.3f}")
    for line in parallel:
        print(line)


# -- parallel answers on the llama-server backend ----------------------------------------------

SLOTS = 8
CLIENTS = (1, 4, 8)
PARALLEL_ROUNDS = 2  # answers each client asks for, one after another
BACKEND_CONFIG = f"""[engine]
backend = "llama-server"
slots = {SLOTS}
context = 2048
threads = 2
"""


def parallel_lines(tmp: Path, model: Path) -> list[str]:
    """The llama-server backend through the service, then raw llama-server, in turn."""
    home = tmp / "parallel"
    home.mkdir()
    (home / "config.toml").write_text(BACKEND_CONFIG)
    policy = (Path(__file__).parent.parent / "policies" / "default.toml").read_text()
    # Eight clients of one (development-mode) user: the policy must let it have eight.
    (home / "policy.toml").write_text(policy.replace("max_per_user = 2", f"max_per_user = {SLOTS}"))
    service = start(home, model)
    try:
        served = {n: run_clients(n, lambda: served_answerer(home)) for n in CLIENTS}
        memory = resident_kib(service.pid) + sum(resident_kib(c) for c in children(service.pid))
    finally:
        service.terminate()
        service.wait(timeout=60)
    with raw_server(model) as socket_path:
        raw = {n: run_clients(n, lambda: raw_answerer(socket_path, model)) for n in CLIENTS}
    lines = []
    for name, runs in (("service", served), ("raw llama-server", raw)):
        for n, run in runs.items():
            lines.append(
                f"{name}, {n} client(s): {run.tokens_per_second:.1f} tokens/s aggregate "
                f"({run.tokens} tokens in {run.seconds:.1f} s, "
                f"{run.tokens / len(run.first):.0f} per answer)"
            )
        first = sorted(runs[SLOTS].first)
        lines.append(
            f"{name}, first token with {SLOTS} clients: p50 {percentile(first, 50) * 1000:.0f} ms, "
            f"p95 {percentile(first, 95) * 1000:.0f} ms"
        )
    lines.append(f"service + llama-server resident memory ({SLOTS} slots): {memory >> 10} MiB")
    ratio = served[SLOTS].tokens_per_second / served[1].tokens_per_second
    raw_ratio = raw[SLOTS].tokens_per_second / raw[1].tokens_per_second
    lines.append(f"raw_8_clients_vs_1: {raw_ratio:.3f}")
    lines.append(f"service scaling vs raw llama-server's: {ratio / raw_ratio:.3f}")
    lines.append(f"serve_8_clients_vs_1: {ratio:.3f}")
    return lines


class Run:
    def __init__(self) -> None:
        self.tokens = 0
        self.seconds = 0.0
        self.first: list[float] = []
        self.lock = threading.Lock()

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


Answerer = Callable[[str], tuple[int, float]]  # prompt -> (tokens, seconds to the first)


def run_clients(count: int, connect: Callable[[], Answerer]) -> Run:
    """`count` clients at once, each asking every prompt PARALLEL_ROUNDS times in turn."""
    run = Run()
    answerers = [connect() for _ in range(count)]
    ready = threading.Barrier(count + 1)

    def client(answer: Answerer, offset: int) -> None:
        ready.wait()
        for round_ in range(PARALLEL_ROUNDS):
            tokens, first = answer(PROMPTS[(offset + round_) % len(PROMPTS)])
            with run.lock:
                run.tokens += tokens
                run.first.append(first)

    threads = [threading.Thread(target=client, args=(a, i)) for i, a in enumerate(answerers)]
    for thread in threads:
        thread.start()
    ready.wait()
    start_time = time.perf_counter()
    for thread in threads:
        thread.join()
    run.seconds = time.perf_counter() - start_time
    return run


def served_answerer(home: Path) -> Answerer:
    client = Client(home_socket(home))
    client.sign_in(None, None)

    def answer(prompt: str) -> tuple[int, float]:
        start_time = time.perf_counter()
        reply = client.ask(prompt, max_tokens=TOKENS, temperature=0.0, seed=1, ignore_eos=True)
        first = None
        for _ in reply:
            first = first or time.perf_counter() - start_time
        assert reply.result is not None
        return int(reply.result["completion_tokens"]), first or 0.0

    return answer


@contextlib.contextmanager
def raw_server(model: Path) -> Iterator[str]:
    """llama-server as its own README runs it, with the backend's options: no preload,
    no supervision, a UNIX socket in a private directory."""
    settings = EngineSettings(context_length=2048, threads=2, backend="llama-server", slots=SLOTS)
    with tempfile.TemporaryDirectory() as directory:
        path = str(Path(directory) / "raw.sock")
        command = [str(llama_tool("llama-server")), "-m", str(model), "--host", path]
        command += server_arguments(settings, 2048, gpu=False)
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while get_json_status(path) != 200:
                if process.poll() is not None:
                    raise SystemExit(f"raw llama-server stopped (exit {process.returncode})")
                time.sleep(0.1)
            yield path
        finally:
            process.terminate()
            process.wait(timeout=60)


def get_json_status(path: str) -> int | None:
    try:
        return get_json(path, "/health", timeout=5.0)[0]
    except OSError:
        return None


def raw_answerer(path: str, model: Path) -> Answerer:
    """The same prompt ids the appliance sends, straight to /completion."""
    vocab = native.Vocab(model)
    chat_format = ChatFormat(
        None, bos_token=vocab.token_text(vocab.bos), eos_token=vocab.token_text(vocab.eos)
    )

    def answer(prompt: str) -> tuple[int, float]:
        text = chat_format.render([Message("user", prompt)])
        ids = vocab.tokenize(text.encode(), add_bos=True, special=True)
        body = {"prompt": ids, "stream": True, "n_predict": TOKENS, "temperature": 0.0}
        body |= {"cache_prompt": False, "return_tokens": True}
        stream = Stream(path)
        start_time = time.perf_counter()
        first, tokens = None, 0
        try:
            response = stream.open("/completion", body)
            assert response is not None
            assert response.status == 200
            for event in events(response):
                tokens += len(event.get("tokens") or [])
                first = first or (time.perf_counter() - start_time if tokens else None)
                if event.get("stop"):
                    break
        finally:
            stream.close()
        return tokens, first or 0.0

    return answer


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(x) for x in (task / "children").read_text().split()]
    return found


def percentile(values: list[float], share: int) -> float:
    return values[min(len(values) - 1, round(share / 100 * (len(values) - 1)))]


if __name__ == "__main__":
    main()
