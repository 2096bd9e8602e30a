"""Engine overhead: the appliance engine against raw llama_cpp.Llama, side by side.

Both load the default model with identical settings and answer the same
prompts greedily, alternating which goes first, round after round. The raw
side is `Llama.generate` driven by the leanest loop Python allows: tokenize,
generate, detokenize, stop at an end-of-generation token. Both start each
answer from an empty KV cache (the engine's reproducible default). The engine
also stops where the model starts a new transcript turn; a calibration pass
records each prompt's answer length, and the raw side generates exactly as
many tokens, so both do the same work.

Reported, as medians over rounds: decode speed (tokens per second after the
first token) and time to first token. The last line is the engine's decode
speed over raw llama.cpp's.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from appliance import catalog
from appliance.config import EngineSettings, GenerationParams, appliance_home, physical_cores
from appliance.engine import Engine, Message, native

PROMPT = (
    "Translate into French, sentence by sentence (text {round}): The convoy left at dawn. "
    "The roads were icy. The drivers checked their chains every hour. The depot reported "
    "low fuel. The commander ordered a halt."
)


@dataclass
class Sample:
    tokens: int
    first_token: float  # seconds
    total: float  # seconds

    @property
    def decode_rate(self) -> float:
        return (self.tokens - 1) / (self.total - self.first_token)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    entry = catalog.load_catalog().default_entry
    path = catalog.prepare(entry, appliance_home())
    settings = EngineSettings(context_length=2048, threads=args.threads)
    params = GenerationParams(max_tokens=args.tokens, temperature=0.0, seed=1)
    engine = Engine(path, settings)
    raw = native.load(path, settings, engine.context_length)

    def messages(round_no: int) -> list[Message]:
        return [Message("user", PROMPT.format(round=round_no))]

    def run_engine(round_no: int) -> Sample:
        generation = engine.chat(messages(round_no), params)
        for _ in generation:
            pass
        stats = generation.stats
        assert stats.time_to_first_token is not None
        return Sample(stats.completion_tokens, stats.time_to_first_token, stats.seconds)

    answer_tokens: dict[int, int] = {}

    def run_raw(round_no: int) -> Sample:
        prompt = engine.chat_format.render(messages(round_no)).encode()
        start = time.perf_counter()
        tokens = raw.tokenize(prompt, add_bos=True, special=True)
        raw.reset()
        raw.set_seed(params.seed)
        first, count = 0.0, 0
        for token in raw.generate(
            tokens,
            top_k=params.top_k,
            top_p=params.top_p,
            min_p=params.min_p,
            temp=0.0,
            repeat_penalty=1.0,
        ):
            if native.is_end_of_generation(raw, token):
                break
            raw.detokenize([token])
            count += 1
            if count == 1:
                first = time.perf_counter() - start
            if count >= answer_tokens.get(round_no, params.max_tokens):
                break
        return Sample(count, first, time.perf_counter() - start)

    contenders: dict[str, Callable[[int], Sample]] = {
        "engine": run_engine,
        "raw llama.cpp": run_raw,
    }
    run_raw(-1)  # warm-up: first-touch page faults, thread pools
    for round_no in range(args.rounds):  # calibration, and the engine's warm-up
        answer_tokens[round_no] = run_engine(round_no).tokens
    samples: dict[str, list[Sample]] = {name: [] for name in contenders}
    for round_no in range(args.rounds):
        order = list(contenders.items())
        if round_no % 2:
            order.reverse()
        for name, run in order:
            samples[name].append(run(round_no))

    threads = args.threads or f"{physical_cores()} (one per physical core)"
    print(
        f"model: {engine.info.name} {engine.info.quantization}; threads: {threads}; "
        f"rounds: {args.rounds}; max tokens: {args.tokens}; GPU offload: {engine.gpu_offload}"
    )
    medians: dict[str, tuple[float, float]] = {}
    for name, rows in samples.items():
        rate = statistics.median(s.decode_rate for s in rows)
        first = statistics.median(s.first_token for s in rows) * 1000
        tokens = statistics.median(s.tokens for s in rows)
        medians[name] = (rate, first)
        print(
            f"{name:<14} {rate:8.1f} tokens/s   first token {first:7.1f} ms   "
            f"({tokens:.0f} tokens per answer)"
        )
    engine_rate, engine_first = medians["engine"]
    raw_rate, raw_first = medians["raw llama.cpp"]
    print(f"engine_vs_raw_first_token_ms: {engine_first / raw_first:.3f}  (lower is better)")
    print(f"engine_vs_raw_tokens_per_s: {engine_rate / raw_rate:.3f}")


if __name__ == "__main__":
    main()
