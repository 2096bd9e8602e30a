"""The remote backend (mutual TLS over loopback TCP) against the llama-server backend.

One client, the same model, settings and prompts, greedy: `RemoteEngine`
through a TLS 1.3 terminator (tests/tlskit.py: Python's ssl, client
certificates required, a thread copying bytes) to a llama-server on loopback
TCP, and `LlamaServerEngine` on its supervised child's UNIX socket, both
llama-servers with the backend's options (`server_arguments`). The two
alternate, round after round, which goes first too, so a noisy machine loads
both alike. Each answer asks for a fixed number of tokens (end of sequence
ignored).

Reported, as medians over rounds: tokens per second over the whole answer
(connection, TLS handshake and the client certificate's verdict included),
decode speed after the first token, and time to the first token. The
terminator here is Python; a GPU server terminates TLS natively. Last line:
`remote_vs_local_tokens_per_s: <ratio>` (whole-answer tokens/s, remote over
local).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from appliance import catalog
from appliance.config import EngineSettings, GenerationParams, appliance_home, physical_cores
from appliance.engine import Message
from appliance.engine.llama_server import LlamaServerEngine
from appliance.engine.remote import RemoteEngine
from appliance.engine.tls import Endpoint
from tests.tlskit import Authority, LlamaServer, Terminator

PROMPT = (
    "Translate into French, sentence by sentence (text {round}): The convoy left at dawn. "
    "The roads were icy. The drivers checked their chains every hour."
)


@dataclass
class Sample:
    tokens: int
    first: float  # seconds to the first token
    total: float  # seconds for the whole answer

    @property
    def rate(self) -> float:
        return self.tokens / self.total

    @property
    def decode_rate(self) -> float:
        return (self.tokens - 1) / (self.total - self.first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    model = catalog.prepare(catalog.load_catalog().default_entry, appliance_home())
    threads = args.threads or physical_cores()
    settings = EngineSettings(context_length=2048, threads=threads, backend="llama-server", slots=1)
    params = GenerationParams(max_tokens=args.tokens, temperature=0.0, seed=1, ignore_eos=True)

    with tempfile.TemporaryDirectory() as tmp:
        ca = Authority(Path(tmp), "site-ca")
        server_cert = ca.issue("gpu", names=("127.0.0.1",))
        client_cert = ca.issue("appliance", client=True)
        server = LlamaServer(model, settings)
        server.start()
        terminator = Terminator(server.port, server_cert, ca.path)
        endpoint = Endpoint(
            name="gpu-a",
            host="127.0.0.1",
            port=terminator.port,
            ca=ca.path,
            ca_sha256=ca.sha256,
            certificate=client_cert.certificate,
            key=client_cert.key,
            model="default",
            max_level="secret",
        )
        try:
            with (
                RemoteEngine(model, [endpoint], settings, slots=1, verified=True) as remote,
                LlamaServerEngine(model, settings, verified=True) as local,
            ):

                def run(engine: RemoteEngine | LlamaServerEngine) -> Callable[[int], Sample]:
                    def answer(round_no: int) -> Sample:
                        message = Message("user", PROMPT.format(round=round_no))
                        generation = engine.chat([message], params)
                        for _ in generation:
                            pass
                        stats = generation.stats
                        assert stats.time_to_first_token is not None
                        return Sample(
                            stats.completion_tokens, stats.time_to_first_token, stats.seconds
                        )

                    return answer

                contenders = {"remote (mTLS)": run(remote), "local socket": run(local)}
                for answer in contenders.values():
                    answer(-1)  # warm-up: page cache, thread pools, the first handshake
                samples: dict[str, list[Sample]] = {name: [] for name in contenders}
                for round_no in range(args.rounds):
                    order = list(contenders.items())
                    if round_no % 2:
                        order.reverse()
                    for name, answer in order:
                        samples[name].append(answer(round_no))
        finally:
            terminator.stop()
            server.stop()

    print(
        f"model: {model.name}; threads: {threads}; rounds: {args.rounds}; "
        f"tokens per answer: {args.tokens}; one client"
    )
    rates: dict[str, float] = {}
    for name, rows in samples.items():
        rates[name] = statistics.median(s.rate for s in rows)
        decode = statistics.median(s.decode_rate for s in rows)
        first = statistics.median(s.first for s in rows) * 1000
        print(
            f"{name:<14} {rates[name]:7.1f} tokens/s   decode {decode:7.1f} tokens/s   "
            f"first token {first:7.1f} ms"
        )
    print(f"remote_vs_local_tokens_per_s: {rates['remote (mTLS)'] / rates['local socket']:.3f}")


if __name__ == "__main__":
    main()
