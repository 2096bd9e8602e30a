"""The remote backend over mutual TLS, against a real llama-server on the real model.

Nothing is replaced (tests/tlskit.py): a test PKI is made with `cryptography`
(a CA, server and client certificates, a second CA, an expired server
certificate), one real llama-server listens on loopback TCP with the
llama-server backend's options, and in front of it TLS terminators (Python's
ssl, server side, TLS 1.3, client certificates required) copy bytes both
ways. Scripted upstreams stand for servers that misbehave (a silent one,
malformed streams, a refusal). Most refusals go through one engine with many
endpoints (`lineup`), each answer limited to the endpoint its test names.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from appliance.config import GenerationParams
from appliance.engine import AdapterUse, Engine, Message
from appliance.engine.remote import RemoteEngine
from appliance.engine.tls import Endpoint, tls_context
from appliance.errors import ConfigError, EngineError, InputError, IntegrityError
from tests.conftest import TEST_SETTINGS
from tests.tlskit import (
    Authority,
    Issued,
    LlamaServer,
    Scripted,
    Terminator,
    free_port,
)

pytestmark = pytest.mark.model

GREEDY = GenerationParams(max_tokens=24, temperature=0.0, seed=1)
SHORT = GenerationParams(max_tokens=2, temperature=0.0, seed=1, ignore_eos=True)
LONG = GenerationParams(max_tokens=900, temperature=0.0, ignore_eos=True)
LIST = "Continue the list: 1, 2, 3,"
QUESTION = "What is the capital of France?"
SLOTS = 2


# -- the test PKI -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Authority
    other_ca: Authority
    server: Issued
    expired_server: Issued
    client: Issued
    foreign_client: Issued


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca, other = Authority(directory, "site-ca"), Authority(directory, "other-ca")
    names = ("127.0.0.1", "localhost", "gpu-a.test")
    return Pki(
        ca=ca,
        other_ca=other,
        server=ca.issue("server", names=names),
        expired_server=ca.issue("expired-server", names=names, expired=True),
        client=ca.issue("appliance", client=True),
        foreign_client=other.issue("intruder", client=True),
    )


def endpoint(pki: Pki, port: int, name: str = "gpu-a", **changes: object) -> Endpoint:
    base = Endpoint(
        name=name,
        host="127.0.0.1",
        port=port,
        server_name="gpu-a.test",
        ca=pki.ca.path,
        ca_sha256=pki.ca.sha256,
        certificate=pki.client.certificate,
        key=pki.client.key,
        model="gemma-3-270m",
        max_level="secret",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


# -- the llama-server and what stands in front of it --------------------------------------------


@pytest.fixture(scope="module")
def llama(model_path: Path) -> Iterator[LlamaServer]:
    settings = replace(TEST_SETTINGS, backend="llama-server", slots=SLOTS)
    server = LlamaServer(model_path, settings)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def front(llama: LlamaServer, pki: Pki) -> Iterator[Terminator]:
    terminator = Terminator(llama.port, pki.server, pki.ca.path)
    yield terminator
    terminator.stop()


@pytest.fixture(scope="module")
def remote(model_path: Path, front: Terminator, pki: Pki) -> Iterator[RemoteEngine]:
    with RemoteEngine(
        model_path, [endpoint(pki, front.port)], TEST_SETTINGS, slots=SLOTS, verified=True
    ) as engine:
        yield engine


@contextlib.contextmanager
def engine_for(model_path: Path, *endpoints: Endpoint, **options: object) -> Iterator[RemoteEngine]:
    with RemoteEngine(
        model_path,
        list(endpoints),
        TEST_SETTINGS,
        verified=True,
        **options,  # type: ignore[arg-type]
    ) as engine:
        yield engine


def ask(
    engine: RemoteEngine | Engine,
    prompt: str,
    params: GenerationParams = GREEDY,
    **routing: object,
):
    generation = engine.chat([Message("user", prompt)], params, **routing)  # type: ignore[arg-type]
    return generation.text(), generation.stats


def refusal(engine: RemoteEngine, *names: str) -> str:
    """The one line an answer that cannot be had (from the endpoints named) ends with."""
    routing = {"endpoints": names} if names else {}
    with pytest.raises(EngineError) as caught:
        ask(engine, QUESTION, SHORT, **routing)
    message = str(caught.value)
    assert "\n" not in message
    assert "Traceback" not in message
    return message


def label(engine: RemoteEngine, name: str) -> str:
    (found,) = (e for e in engine.endpoints if e.name == name)
    return found.label


def handshake(engine: RemoteEngine, name: str, reason: str) -> str:
    return f"{label(engine, name)}: the TLS handshake failed: {reason}"


def event_stream(*lines: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
    return head + b"".join(line + b"\n\n" for line in lines)


# Upstreams that misbehave, behind the TLS terminator: what each sends, and the line
# the answer ends with.
SCRIPTS = {
    "refusing": (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\n\r\n"
        b'{"error": {"message": "busy\\u001b[31m\\u202e now\\nretry"}}',
        r"the server refused the request (HTTP 503): busy\x1b[31m\u202e now retry",
    ),
    "bad-choices": (
        event_stream(b'data: {"choices": "x"}'),
        "the server sent choices or usage of the wrong type; the answer was lost",
    ),
    "not-an-object": (
        event_stream(b"data: [1, 2]"),
        "the server sent an event that is not a JSON object; the answer was lost",
    ),
    "too-deep": (
        event_stream(b"data: " + b"[" * 200_000),
        "the server sent an event that is not a JSON object; the answer was lost",
    ),
    "cut-short": (
        event_stream(b'data: {"choices": [{"text": "Paris"}]}'),
        "the connection closed before the answer was complete; the answer was lost",
    ),
    "error-event": (
        event_stream(b'data: {"error": {"message": "out of memory"}}'),
        "the server failed while answering: out of memory",
    ),
    "too-large": (
        event_stream(b"data: " + b"x" * (1 << 20)),
        "the server sent an event larger than the appliance reads; the answer was lost",
    ),
    "not-streamed": (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{}",
        "the server did not stream its answer",
    ),
    "vllm-shaped": (
        event_stream(
            b'data: {"choices": [{"index": 0, "text": "Par", "finish_reason": null}]}',
            b'data: {"choices": [{"index": 0, "text": "is.", "finish_reason": "stop"}]}',
            b'data: {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3}}',
            b"data: [DONE]",
        ),
        "",
    ),
}
SCRIPTS_FAILING = {name: value for name, value in SCRIPTS.items() if value[1]}
CONNECT = 1.0  # the lineup's connect timeout: llama-server's plain port never answers TLS


@pytest.fixture(scope="module")
def lineup(
    model_path: Path, llama: LlamaServer, front: Terminator, pki: Pki
) -> Iterator[RemoteEngine]:
    """One engine, many endpoints: each test names the one its answer may go to."""
    with contextlib.ExitStack() as stack:
        stale = Terminator(llama.port, pki.expired_server, pki.ca.path)
        stack.callback(stale.stop)
        plain = Scripted(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n", eager=True)
        stack.callback(plain.stop)
        scripted: dict[str, int] = {}
        for name, (reply, _) in SCRIPTS.items():
            upstream = Scripted(reply)
            terminator = Terminator(upstream.port, pki.server, pki.ca.path)
            stack.callback(upstream.stop)
            stack.callback(terminator.stop)
            scripted[name] = terminator.port
        alone = {"ca": None, "ca_sha256": None}
        foreign = {"certificate": pki.foreign_client.certificate, "key": pki.foreign_client.key}
        endpoints = [
            endpoint(pki, front.port, "pinned", **alone, fingerprint=pki.server.sha256),
            endpoint(pki, front.port, "wrong-pin", fingerprint="ab" * 32),
            endpoint(pki, front.port, "wrong-pin-alone", **alone, fingerprint="ab" * 32),
            endpoint(
                pki, front.port, "other-ca", ca=pki.other_ca.path, ca_sha256=pki.other_ca.sha256
            ),
            endpoint(pki, front.port, "mismatch", server_name="gpu-b.test"),
            endpoint(pki, stale.port, "expired"),
            endpoint(
                pki, stale.port, "expired-pinned", **alone, fingerprint=pki.expired_server.sha256
            ),
            endpoint(pki, front.port, "intruder", **foreign),
            endpoint(pki, front.port, "bare"),
            endpoint(pki, plain.port, "plain"),
            endpoint(pki, llama.port, "llama-plain"),
            endpoint(pki, free_port(), "refused"),
            *(endpoint(pki, port, name) for name, port in scripted.items()),
        ]
        engine = stack.enter_context(
            RemoteEngine(
                model_path, endpoints, TEST_SETTINGS, verified=True, connect_timeout=CONNECT
            )
        )
        # "bare" connects without a client certificate: a context made without one.
        bare = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        bare.minimum_version = ssl.TLSVersion.TLSv1_3
        bare.load_verify_locations(cafile=str(pki.ca.path))
        engine._contexts[[e.name for e in endpoints].index("bare")] = bare
        yield engine


# -- answers ----------------------------------------------------------------------------------


def test_the_same_answer_as_the_in_process_engine(remote: RemoteEngine, engine: Engine) -> None:
    """Greedy, the same prompt ids, threads, batch and context: the same text."""
    assert remote.context_length == engine.context_length
    for prompt, params in (
        (QUESTION, GREEDY),  # the model ends it: "stop"
        # Rare Hangul spelled in byte tokens: the server holds a character's first
        # bytes back and sends it whole; the text is the same.
        (
            "똠 쀍 똠 쀍 똠 쀍 똠 쀍",
            GenerationParams(max_tokens=16, temperature=0.0, ignore_eos=True),
        ),
    ):
        local_text, local = ask(engine, prompt, params)
        served_text, served = ask(remote, prompt, params)
        assert served_text == local_text, prompt
        assert served.finish_reason == local.finish_reason
        assert served.completion_tokens == local.completion_tokens  # the server's usage
        assert served.prompt_tokens == local.prompt_tokens
        assert set(served.token_ids) == {-1}  # chunks are not tokens the appliance can name
    assert served.endpoint == "gpu-a"


def test_the_answering_endpoint_and_its_certificate_are_reported(
    remote: RemoteEngine, pki: Pki
) -> None:
    generation = remote.chat([Message("user", QUESTION)], SHORT)
    assert generation.stats.endpoint is None  # not connected before it is read
    generation.text()
    assert generation.stats.endpoint == "gpu-a"
    assert generation.stats.endpoint_certificate == pki.server.sha256
    assert remote.adapters == {}
    assert remote.gpu_offload is False


def test_cancel_closes_the_connection_and_frees_the_slot(remote: RemoteEngine) -> None:
    generation = remote.chat([Message("user", LIST)], LONG)
    next(generation)
    started = time.monotonic()
    threading.Thread(target=generation.cancel).start()
    assert generation.text() == ""
    assert generation.stats.finish_reason == "cancelled"
    assert time.monotonic() - started < 5
    # Both slots are free again (here and on the server).
    both = [remote.chat([Message("user", LIST)], SHORT) for _ in range(SLOTS)]
    assert [g.text() != "" for g in both] == [True, True]


def test_more_answers_than_slots_are_refused(remote: RemoteEngine) -> None:
    running = [remote.chat([Message("user", LIST)], SHORT) for _ in range(SLOTS)]
    with pytest.raises(EngineError, match=f"already answering {SLOTS} requests"):
        remote.chat([Message("user", LIST)], SHORT)
    for generation in running:
        generation.close()
    assert ask(remote, LIST, SHORT)[1].completion_tokens == SHORT.max_tokens


def test_no_adapters_are_served(remote: RemoteEngine) -> None:
    with pytest.raises(EngineError, match="serves no adapters"):
        remote.chat([Message("user", QUESTION)], SHORT, adapter=AdapterUse("legal"))


def test_a_pinned_certificate_alone_is_trusted(lineup: RemoteEngine, pki: Pki) -> None:
    text, stats = ask(lineup, QUESTION, SHORT, endpoints=["pinned"])
    assert text
    assert (stats.endpoint, stats.endpoint_certificate) == ("pinned", pki.server.sha256)


# -- refusals ---------------------------------------------------------------------------------


def test_a_wrong_pin_is_refused(lineup: RemoteEngine, pki: Pki) -> None:
    for name in ("wrong-pin", "wrong-pin-alone"):  # with the CA too, and alone
        assert refusal(lineup, name) == handshake(
            lineup,
            name,
            f"the server's certificate is not the pinned one (it presented sha256 "
            f"{pki.server.sha256})",
        )


def test_an_unknown_server_ca_is_refused(lineup: RemoteEngine) -> None:
    expected = handshake(lineup, "other-ca", "certificate verify failed (unknown CA)")
    assert refusal(lineup, "other-ca") == expected


def test_a_name_mismatch_is_refused(lineup: RemoteEngine) -> None:
    assert refusal(lineup, "mismatch") == handshake(
        lineup,
        "mismatch",
        "certificate verify failed (name mismatch: the certificate is not for 'gpu-b.test')",
    )


def test_an_expired_server_certificate_is_refused(lineup: RemoteEngine) -> None:
    assert refusal(lineup, "expired") == handshake(
        lineup, "expired", "certificate verify failed (the server's certificate has expired)"
    )
    # Pinned alone, the dates are checked here.
    message = refusal(lineup, "expired-pinned")
    assert message.startswith(
        handshake(lineup, "expired-pinned", "the server's certificate expired on ")
    )


def test_a_client_certificate_from_another_ca_is_refused(lineup: RemoteEngine) -> None:
    assert refusal(lineup, "intruder") == handshake(
        lineup, "intruder", "the server refused the client certificate (unknown ca)"
    )


def test_a_missing_client_certificate_is_refused(
    lineup: RemoteEngine, model_path: Path, pki: Pki, tmp_path: Path
) -> None:
    # The appliance never connects without one: a missing file stops the engine.
    missing = endpoint(pki, 1, certificate=tmp_path / "absent.crt")
    with (
        pytest.raises(InputError, match="cannot read the client certificate"),
        engine_for(model_path, missing),
    ):
        pass
    # A server asked without one says so ("bare": a context without the certificate).
    assert refusal(lineup, "bare") == handshake(
        lineup, "bare", "the server refused the client certificate (certificate required)"
    )


def test_plain_http_is_refused(lineup: RemoteEngine) -> None:
    """A plain HTTP server answers the TLS hello with HTTP; llama-server's own port
    waits for a line that never comes, until the connect timeout."""
    assert refusal(lineup, "plain") == handshake(
        lineup, "plain", "the server does not speak TLS (plain HTTP?)"
    )
    assert refusal(lineup, "llama-plain") == handshake(
        lineup, "llama-plain", f"no answer within {CONNECT:g} seconds"
    )


def test_a_refused_connection_is_one_line(lineup: RemoteEngine) -> None:
    assert refusal(lineup, "refused") == f"{label(lineup, 'refused')}: the connection was refused"


def test_the_files_are_checked_before_anything_connects(pki: Pki, tmp_path: Path) -> None:
    swapped = endpoint(pki, 1, ca=pki.other_ca.path)  # the site CA's pin, another file
    with pytest.raises(IntegrityError, match="is not the one remote endpoint 'gpu-a' pins"):
        tls_context(swapped)
    open_key = tmp_path / "open.key"
    open_key.write_bytes(pki.client.key.read_bytes())
    open_key.chmod(0o644)
    with pytest.raises(InputError, match="readable or writable by other users"):
        tls_context(endpoint(pki, 1, key=open_key))
    with pytest.raises(ConfigError, match="does not belong to the certificate"):
        tls_context(endpoint(pki, 1, key=pki.foreign_client.key))
    with pytest.raises(ConfigError, match="give the site's CA"):
        endpoint(pki, 1, ca=None, ca_sha256=None)
    with pytest.raises(ConfigError, match="ca and ca_sha256 go together"):
        endpoint(pki, 1, ca_sha256=None)
    with pytest.raises(ConfigError, match="host must be an IP address"):
        endpoint(pki, 1, host="gpu-a.test")
    context = tls_context(endpoint(pki, 1))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "site-ca"),),)]


def test_an_answer_goes_only_where_the_caller_allows(lineup: RemoteEngine) -> None:
    with pytest.raises(EngineError, match="no endpoint named 'elsewhere'"):
        lineup.chat([Message("user", QUESTION)], SHORT, endpoints=["elsewhere"])
    with pytest.raises(EngineError, match="no remote endpoint may answer"):
        lineup.chat([Message("user", QUESTION)], SHORT, endpoints=[])
    message = refusal(lineup, "refused", "other-ca")
    assert message.startswith("no remote endpoint answered: ")
    assert f"{label(lineup, 'refused')}: the connection was refused" in message
    assert handshake(lineup, "other-ca", "certificate verify failed (unknown CA)") in message
    assert "pinned" not in message


# -- servers that misbehave -------------------------------------------------------------------


def test_a_malformed_answer_is_one_line(lineup: RemoteEngine) -> None:
    for name, (_, expected) in SCRIPTS_FAILING.items():
        assert refusal(lineup, name) == f"{label(lineup, name)}: {expected}", name


def test_a_well_formed_stream_from_another_server(lineup: RemoteEngine) -> None:
    """vLLM's shape: text chunks, the finish, then usage alone in a last event."""
    text, stats = ask(lineup, QUESTION, endpoints=["vllm-shaped"])
    assert text == "Paris."
    assert (stats.finish_reason, stats.completion_tokens) == ("stop", 3)


def test_a_silent_server_times_out(model_path: Path, pki: Pki) -> None:
    upstream = Scripted(None)
    terminator = Terminator(upstream.port, pki.server, pki.ca.path)
    try:
        silent = endpoint(pki, terminator.port, "silent")
        with engine_for(model_path, silent, read_timeout=0.5) as engine:
            assert refusal(engine, "silent") == (
                f"{label(engine, 'silent')}: nothing came for 0.5 seconds; the answer was lost"
            )
    finally:
        terminator.stop()
        upstream.stop()


# -- failures and several endpoints -----------------------------------------------------------


def test_a_killed_server_loses_the_answer_in_one_line(
    model_path: Path, llama: LlamaServer, front: Terminator, pki: Pki
) -> None:
    with engine_for(model_path, endpoint(pki, front.port)) as engine:
        generation = engine.chat([Message("user", LIST)], LONG)
        next(generation)
        llama.kill()
        try:
            with pytest.raises(EngineError) as caught:
                generation.text()
        finally:
            llama.start()
        message = str(caught.value)
        # However the terminator's side of it ends (a reset, or a close mid-stream).
        assert message.startswith(f"gpu-a (127.0.0.1:{front.port}): the connection ")
        assert message.endswith("; the answer was lost")
        assert ask(engine, QUESTION, SHORT)[0]  # the restarted server answers again


def test_two_endpoints_share_the_load_and_one_down_leaves_the_other(
    model_path: Path, llama: LlamaServer, pki: Pki
) -> None:
    a = Terminator(llama.port, pki.server, pki.ca.path)
    b = Terminator(llama.port, pki.server, pki.ca.path)
    try:
        with engine_for(
            model_path, endpoint(pki, a.port, "gpu-a"), endpoint(pki, b.port, "gpu-b")
        ) as engine:
            # Two answers at once go to both.
            first = engine.chat([Message("user", LIST)], SHORT)
            second = engine.chat([Message("user", LIST)], SHORT)
            pieces = [next(first), next(second)]  # both connected before either ends
            texts = [pieces[0] + first.text(), pieces[1] + second.text()]
            assert {first.stats.endpoint, second.stats.endpoint} == {"gpu-a", "gpu-b"}
            assert texts[0] == texts[1]
            assert (a.handshakes, b.handshakes) == (1, 1)
            # One after another, in rotation.
            served = [ask(engine, LIST, SHORT)[1].endpoint for _ in range(2)]
            assert sorted(served) == ["gpu-a", "gpu-b"]
            # One goes down: the other serves, the first is skipped while down.
            a.stop()
            answered = [ask(engine, LIST, SHORT)[1].endpoint for _ in range(2)]
            assert answered == ["gpu-b"] * 2
            assert a.handshakes == 2
    finally:
        a.stop()
        b.stop()


def test_a_connection_that_never_started_falls_over_to_the_next(
    model_path: Path, front: Terminator, pki: Pki
) -> None:
    """Refused, or refused in the handshake (a client certificate the server does not
    take): nothing of the request was sent, so the next endpoint answers it."""
    refused = endpoint(pki, free_port(), "gpu-a")
    intruder = endpoint(
        pki,
        front.port,
        "gpu-b",
        certificate=pki.foreign_client.certificate,
        key=pki.foreign_client.key,
    )
    good = endpoint(pki, front.port, "gpu-c")
    with engine_for(model_path, refused, intruder, good) as engine:
        text, stats = ask(engine, QUESTION, SHORT)
    assert text
    assert stats.endpoint == "gpu-c"
