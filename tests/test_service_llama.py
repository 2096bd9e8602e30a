"""The service on the llama-server backend, with the real child on the real model.

Two users are answered at once from one model copy; killing the engine
process fails the answer in flight with one line, is audited, and the next
question is answered by the restarted child.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest

from appliance.audit import AuditLog, audit_dir
from appliance.errors import EngineError
from appliance.policy import shipped_policy
from tests.conftest import TEST_SETTINGS
from tests.servicing import Service, add_operator, serving

CONFIG = (
    f'[engine]\nbackend = "llama-server"\nslots = 2\ncontext = 1024\n'
    f"threads = {TEST_SETTINGS.threads}\n"
)
# A list the model goes on with to the token limit (no turn marker ends it).
COUNT = "List the numbers from 1 to 500:\n1\n2\n3\n"
LONG = {"max_tokens": 600, "temperature": 0.0, "seed": 1, "ignore_eos": True}
SHORT = {"max_tokens": 24, "temperature": 0.0, "seed": 1, "ignore_eos": True}

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("llama") / "home"
    home.mkdir()
    (home / "policy.toml").write_bytes(shipped_policy("default").read_bytes())
    (home / "config.toml").write_text(CONFIG)
    AuditLog(audit_dir(home)).close()  # as setup begins it, before any account
    add_operator(home, "dana")
    add_operator(home, "eun")  # each records the home's state, config included
    add_operator(home, "fay", clearance="secret")  # cleared to the top: her text streams
    return home


@pytest.fixture(scope="module")
def service(home: Path, model_path: Path):
    with serving(home, model_path) as running:
        yield running


def engine_processes(service: Service) -> list[int]:
    """The llama-server processes under the service (it runs in its own pid namespace)."""
    found, queue = [], [service.process.pid]
    while queue:
        pid = queue.pop()
        for task in Path(f"/proc/{pid}/task").glob("*"):
            queue.extend(int(child) for child in _read(task / "children").split())
        if pid != service.process.pid and _read(Path(f"/proc/{pid}/comm")).strip() == (
            "llama-server"
        ):
            found.append(pid)
    return found


def _read(path: Path) -> str:
    """A /proc file, or nothing if its thread or process ended meanwhile."""
    try:
        return path.read_text()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def test_two_users_are_answered_at_once_from_one_model_copy(service: Service) -> None:
    results: dict[str, dict] = {}
    both_started = threading.Barrier(2, timeout=120)

    def ask(user: str) -> None:
        with service.client(user) as client:
            answer = client.ask("Continue the list: 1, 2, 3, 4,", **SHORT)
            answer.wait_started()
            both_started.wait()  # neither waits for the other's answer to end
            results[user] = {"text": answer.text(), "ahead": answer.ahead, **answer.result}

    threads = [threading.Thread(target=ask, args=(user,)) for user in ("dana", "eun")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(results) == {"dana", "eun"}
    for result in results.values():
        assert result["outcome"] == "ok"
        assert result["text"]
        assert 0 < result["completion_tokens"] <= SHORT["max_tokens"]
        assert result["ahead"] in (None, 0)
    assert len(engine_processes(service)) == 1  # one model copy served both


def test_a_killed_engine_fails_the_answer_in_flight_and_is_restarted(
    service: Service, home: Path
) -> None:
    (child,) = engine_processes(service)
    with service.client("fay") as client:
        answer = client.ask(COUNT, **LONG)
        # Killed once the child streams: a request that had not reached it yet
        # would be answered, rightly, by the restarted child.
        assert next(answer)
        os.kill(child, signal.SIGKILL)
        with pytest.raises(EngineError) as failed:
            answer.text()
    assert "the engine process stopped" in str(failed.value)
    assert "\n" not in str(failed.value)

    with service.client("eun") as client:  # the restarted child answers
        answer = client.ask("Continue the list: 1, 2, 3, 4,", **SHORT)
        assert answer.text()
        assert answer.result is not None
        assert answer.result["outcome"] == "ok"
    (restarted,) = engine_processes(service)
    assert restarted != child

    with AuditLog(audit_dir(home)) as log:
        restarts = [json.loads(row["leaf"]) for row in log.events(action="engine_restart")]
        answers = [json.loads(row["leaf"]) for row in log.events(action="answer", user="fay")]
    assert len(restarts) == 1
    assert restarts[0]["outcome"] == "failed"
    assert restarts[0]["details"]["reason"] == "exit -9"
    assert answers[-1]["outcome"] == "failed"
    assert answers[-1]["details"]["error"] == "EngineError"  # the kind, never the text
