"""The appliance service over its life: backpressure, a crash mid-answer, a bounded load.

Each test starts its own `appliance serve` on one staffed home (one at a time:
a service holds its home).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path

import pytest

from appliance.errors import BusyError, ServiceError, UsageError
from appliance.seal import Identity
from tests.conftest import run_cli
from tests.servicing import add_operator, policy_changed, serving, start_service
from tests.staff import as_user, events, make_staffed
from tests.test_service import COUNTING, LONG, SHORT

pytestmark = pytest.mark.model

TURNS = 5  # per client in the load test


@pytest.fixture(scope="module")
def staff(tmp_path_factory: pytest.TempPathFactory, officer: Identity) -> Path:
    home = make_staffed(tmp_path_factory.mktemp("staff"), officer)
    for name in ("park", "choi", "load0", "load1", "load2", "load3"):
        add_operator(home, name, "secret-1" if name == "choi" else "restricted")
    return home


def _asks_and_answers(home: Path, tmp_path: Path) -> tuple[list[dict], list[dict]]:
    shown = events(home, tmp_path)
    return [e for e in shown if e["action"] == "ask"], [e for e in shown if e["action"] == "answer"]


def test_backpressure_says_how_many_are_ahead(staff: Path, model_path: Path, tmp_path) -> None:
    with (
        policy_changed(staff, "max_queued = 32", "max_queued = 1"),
        serving(staff, model_path) as service,
    ):
        clients = [service.client(name) for name in ("kim", "park", "choi")]
        first = clients[0].ask(COUNTING, **LONG)
        first.wait_started()
        second = clients[1].ask(COUNTING, **LONG)
        second.wait_accepted()
        assert second.ahead == 1
        third = clients[2].ask("Say hi.", **SHORT)
        with pytest.raises(BusyError, match=r"the appliance is busy: 2 requests ahead"):
            third.text()
        again = clients[0].ask("And again.", **SHORT)
        with pytest.raises(UsageError, match="one answer at a time"):
            again.text()
        first.cancel()
        second.cancel()
        assert first.text() is not None
        assert second.text() is not None
        assert first.result["outcome"] == second.result["outcome"] == "cancelled"
        for client in clients:
            client.close()


def test_a_crash_mid_answer_is_recorded_and_the_log_verifies(
    staff: Path, model_path: Path, tmp_path: Path
) -> None:
    service = start_service(staff, model_path)
    client = service.client("choi")
    answer = client.ask(COUNTING, **LONG)
    next(answer)  # it is answering
    service.stop(signal.SIGKILL)
    client.close()
    asks, answers = _asks_and_answers(staff, tmp_path)
    assert asks[-1]["seq"] not in {a["details"]["ask_seq"] for a in answers}
    with serving(staff, model_path):
        asks, answers = _asks_and_answers(staff, tmp_path)
        closing = [a for a in answers if a["details"]["ask_seq"] == asks[-1]["seq"]]
        assert [(a["user"], a["outcome"]) for a in closing] == [("choi", "failed")]
    verified = run_cli("audit", "verify", *as_user(tmp_path, "lee"), home=staff)
    assert verified.returncode == 0, verified.stderr


def test_a_bounded_load_with_random_cancels(staff: Path, model_path: Path, tmp_path) -> None:
    """16 clients x 5 short turns, some cancelled: every ask has its answer, none hangs."""
    names = [f"load{n}" for n in range(4)]
    outcomes: list[str] = []
    failures: list[BaseException] = []
    # One engine thread: on a machine that other tests load too, llama.cpp's threads
    # would spin at their barriers for cores that are busy elsewhere.
    with (
        policy_changed(staff, "max_per_user = 1", "max_per_user = 4"),
        serving(staff, model_path, "--threads", "1") as service,
    ):

        def worker(index: int) -> None:
            chance = random.Random(index)
            try:
                with service.client(names[index % 4]) as client:
                    for turn in range(TURNS):
                        answer = client.ask(f"Say {turn}.", max_tokens=2, seed=turn)
                        if chance.random() < 0.3:
                            answer.cancel()
                        answer.text()
                        outcomes.append(answer.result["outcome"])
            except BaseException as exc:  # reported below, with every other
                failures.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=600)
        assert not any(thread.is_alive() for thread in threads), "a client hangs"
    assert not failures, failures[:3]
    assert len(outcomes) == 16 * TURNS
    assert set(outcomes) <= {"ok", "cancelled"}
    assert "cancelled" in outcomes
    assert "ok" in outcomes
    asks, answers = _asks_and_answers(staff, tmp_path)
    answered = [a["details"]["ask_seq"] for a in answers]
    assert sorted(answered) == sorted(set(answered))  # one answer per ask, never two
    assert {a["seq"] for a in asks} <= set(answered)
    verified = run_cli("audit", "verify", *as_user(tmp_path, "lee"), home=staff)
    assert verified.returncode == 0, verified.stderr


def test_a_stop_drains_the_running_answer_and_is_recorded(
    staff: Path, model_path: Path, tmp_path: Path
) -> None:
    service = start_service(staff, model_path)
    client = service.client("choi")  # cleared to the top: the answer streams
    answer = client.ask(COUNTING, max_tokens=40, temperature=0.0, seed=1)
    first = next(answer)
    serve = service.socket  # gone once the service has stopped
    os.killpg(service.process.pid, signal.SIGTERM)
    rest = "".join(answer)  # the running answer is not cut off by the stop
    assert answer.result is not None
    notice = client.receive()  # then every client is told, and let go
    assert notice["id"] == 0
    assert notice["error"]["code"] == "stopped"
    with pytest.raises(ServiceError, match="closed the connection"):
        client.receive()
    client.close()
    for _ in range(600):
        if not serve.exists():
            break
        time.sleep(0.1)
    assert not serve.exists()
    shown = events(staff, tmp_path)
    answered = [e for e in shown if e["action"] == "answer"][-1]
    stop = [e for e in shown if e["action"] == "shutdown" and e["object"] == "service"][-1]
    assert answered["outcome"] == answer.result["outcome"]
    assert answered["details"]["chars"] == len(first + rest)
    assert stop["seq"] > answered["seq"]
    assert stop["details"]["reason"] == "SIGTERM"
