"""The service against the in-process engine: tokens/s, first token, resident memory.

The same prompts, settings and seeds are answered by an `Engine` in this
process, by the session pipeline in this process (DLP, labels, audit: what
`ask` runs without a service) and through a real `appliance serve` (a
development home: the user is cleared to the top, so answers stream piece
by piece), in turn, so that a noisy machine loads all three alike. The
first token through the pipeline waits for the DLP holdback (the policy's
`dlp.holdback` characters) and the durable `ask` record. Then the service's resident memory
with 1 and with 8 connected clients, each having had an answer: one model
copy, whatever the number of clients. Last line:
`service_vs_inprocess_tokens_per_s: <ratio>` (target >= 0.95).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from appliance import catalog
from appliance.audit import AuditLog, audit_dir
from appliance.config import EngineSettings, GenerationParams
from appliance.engine import Engine, Message
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


def start(home: Path, model: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "APPLIANCE_HOME": str(home)}
    command = [sys.executable, "-m", "appliance", "serve", "--model", str(model)]
    command += ["--threads", "2", "--context", "2048"]
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


if __name__ == "__main__":
    main()
