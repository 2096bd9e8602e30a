"""GPU servers behind the service: a real `appliance serve` with a [[remote]] server (a
real llama-server behind a TLS terminator that requires client certificates); turns
go there only up to the levels the policy and the server allow, and the audit log
names the server that answered."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from appliance.audit import Actor, AuditLog, audit_dir
from appliance.config import GenerationParams
from appliance.engine import Engine
from appliance.engine.remote import RemoteEngine
from appliance.engine.tls import Endpoint
from appliance.errors import BlockedError, EngineError
from appliance.homestate import record_state
from appliance.policy import load_policy
from appliance.session import start_conversation
from tests.conftest import TEST_SETTINGS, run_cli
from tests.servicing import serving
from tests.staff import events, open_session
from tests.tlskit import Authority, LlamaServer, Terminator, free_port

pytestmark = pytest.mark.model

QUESTION = "The capital of France is"
SHORT = {"max_tokens": 12, "temperature": 0.0, "seed": 1}
REMOTE_POLICY = '\n[remote]\nallowed = true\nmax_level = "restricted"\nabove = "{above}"\n'


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict:
    directory = tmp_path_factory.mktemp("pki")
    ca = Authority(directory, "site-ca")
    return {
        "ca": ca,
        "server": ca.issue("server", names=("127.0.0.1", "gpu-a.test")),
        "client": ca.issue("appliance", client=True),
    }


@contextlib.contextmanager
def gpu_server(model_path: Path, pki: dict) -> Iterator[tuple[LlamaServer, Terminator]]:
    settings = replace(TEST_SETTINGS, backend="llama-server", slots=2)
    llama = LlamaServer(model_path, settings)
    llama.start()
    front = Terminator(llama.port, pki["server"], pki["ca"].path)
    try:
        yield llama, front
    finally:
        front.stop()
        llama.stop()


def listed(pki: dict, port: int, max_level: str) -> str:
    return (
        "[[remote]]\n"
        'name = "gpu-a"\n'
        'host = "127.0.0.1"\n'
        f"port = {port}\n"
        'server_name = "gpu-a.test"\n'
        f'ca = "{pki["ca"].path}"\n'
        f'ca_sha256 = "{pki["ca"].sha256}"\n'
        f'certificate = "{pki["client"].certificate}"\n'
        f'key = "{pki["client"].key}"\n'
        'model = "gemma-3-270m"\n'
        f'max_level = "{max_level}"\n'
    )


def test_turns_go_to_the_listed_server_up_to_its_level_and_the_audit_names_it(
    staffed: Path, model_path: Path, pki: dict, tmp_path: Path
) -> None:
    home = staffed
    policy = home / "policy.toml"
    text = policy.read_text(encoding="utf-8").replace(
        "require_airgap = true", "require_airgap = false"
    )
    policy.write_text(text + REMOTE_POLICY.format(above="local"), encoding="utf-8")
    with gpu_server(model_path, pki) as (llama, front):
        (home / "config.toml").write_text(listed(pki, front.port, "public"), encoding="utf-8")
        with AuditLog(audit_dir(home)) as log:  # as an officer's `audit state --accept`
            record_state(home, log, Actor("lee", "officer"), "config_change")
        with serving(home, model_path, air_gapped=False) as service:
            with service.client("kim") as public:
                remote = public.ask(QUESTION, **SHORT).text()
            with service.client("kim", level="restricted") as restricted:
                local = restricted.ask(QUESTION, **SHORT).text()
            doctor = run_cli("doctor", "--json", "--model", str(model_path), home=home)
        # The "remote" backend: no weights on this host, so nothing above the servers.
        config = '[engine]\nbackend = "remote"\n' + listed(pki, front.port, "public")
        (home / "config.toml").write_text(config, encoding="utf-8")
        with AuditLog(audit_dir(home)) as log:
            record_state(home, log, Actor("lee", "officer"), "config_change")
        with serving(home, model_path, air_gapped=False) as service:
            with service.client("kim") as public:
                only_remote = public.ask(QUESTION, **SHORT).text()
            with (
                service.client("kim", level="restricted") as restricted,
                pytest.raises(BlockedError, match="sends no turn labelled"),
            ):
                restricted.ask(QUESTION, **SHORT).text()
            llama.kill()  # the GPU server goes down mid-service
            with service.client("kim") as lost, pytest.raises(EngineError) as failed:
                lost.ask(QUESTION, **SHORT).text()
    assert remote == local == only_remote  # the same prompt and numerics: the same answer
    (probe,) = [c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "remote gpu-a"]
    assert probe["ok"] is None, probe  # it answers, but the test's certificates end this month
    assert "mutual TLS, model gemma-3-270m, one token" in probe["detail"]
    assert "the server's certificate ends on" in probe["detail"]
    assert "gpu-a" in str(failed.value)
    assert "\n" not in str(failed.value)

    asks = events(home, tmp_path, "--action", "ask")
    answers = events(home, tmp_path, "--action", "answer")
    assert [a["details"].get("remote") for a in asks] == [["gpu-a"], None, ["gpu-a"], ["gpu-a"]]
    assert answers[0]["details"]["endpoint"] == {
        "name": "gpu-a",
        "certificate_sha256": pki["server"].sha256,
    }
    assert "endpoint" not in answers[1]["details"]  # restricted: answered on the host
    assert answers[2]["details"]["endpoint"]["name"] == "gpu-a"
    assert answers[3]["outcome"] == "failed"
    blocks = events(home, tmp_path, "--action", "policy_block")
    assert [b["label"] for b in blocks if "remote" in b["details"]] == ["restricted"]


def test_a_turn_above_the_servers_is_refused_where_the_policy_says_so(
    tmp_path: Path, model_path: Path, engine: Engine, pki: dict
) -> None:
    """Refused before anything connects: the server's port has nobody listening."""
    server = Endpoint(
        name="gpu-a",
        host="127.0.0.1",
        port=free_port(),
        server_name="gpu-a.test",
        ca=pki["ca"].path,
        ca_sha256=pki["ca"].sha256,
        certificate=pki["client"].certificate,
        key=pki["client"].key,
        model="gemma-3-270m",
        max_level="public",
    )
    with AuditLog(audit_dir(tmp_path)) as log:
        session = open_session(tmp_path, engine, log, "kim", "operator")
        text = (tmp_path / "policy.toml").read_text(encoding="utf-8")
        (tmp_path / "policy.toml").write_text(text + REMOTE_POLICY.format(above="refuse"))
        session.policy = load_policy(tmp_path / "policy.toml")
        session.level = session.policy.level("restricted")
        with RemoteEngine(model_path, [server], TEST_SETTINGS, verified=True) as remote:
            session.remote = remote
            conversation = start_conversation(session.policy, None, None)
            params = GenerationParams(max_tokens=4, temperature=0.0)
            with pytest.raises(BlockedError, match="sends no turn labelled") as refused:
                session.turn(conversation, QUESTION, params)
        assert refused.value.code == "remote_above"
        leaves = [json.loads(row["leaf"]) for row in log.events(action="policy_block")]
        blocks = [leaf for leaf in leaves if "remote" in leaf["details"]]
        assert [e["label"] for e in blocks] == ["restricted"]
        assert not list(log.events(action="ask"))  # refused before the ask was recorded
