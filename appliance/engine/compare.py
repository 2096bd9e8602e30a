"""The lightweighting report: a quantized model measured against its source.

Both models read the same evaluation text in lockstep, window by window, the
way llama.cpp's `llama-perplexity` does: windows of `context` tokens, the
first replaced by BOS, only the second half scored. Each model returns
logits only for the scored positions, and a window's logits are compared and
dropped before the next one, so memory stays at two windows whatever the
text's length. Threads, batch sizes and flash attention are pinned and
recorded: each of them moves the figures.
"""

from __future__ import annotations

import ctypes
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from appliance.config import physical_cores
from appliance.engine import native
from appliance.engine.adapter import read_adapter
from appliance.engine.hparams import read_loadable_gguf
from appliance.engine.info import quantization_of, sha256_file
from appliance.engine.lora import MAX_SCALE
from appliance.engine.report import AdapterRef, ModelRef, Report, Settings, TextScore
from appliance.errors import InputError, UsageError

# The shipped evaluation texts (licence-clean, written for the appliance).
EVALUATION_TEXTS = ("ko-admin", "en-admin")
DEFAULT_CONTEXT = 512  # llama-perplexity's usual context: the published figures use it
GENERATION_STEPS = 32  # single-token steps timed per model: the speed a user waits for
ROWS_PER_BLOCK = 16  # rows of the vocabulary softmax held in float64 at once

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class EvaluationText:
    name: str
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def evaluation_text(name_or_path: str) -> EvaluationText:
    """A shipped text by name (`ko-admin`, `en-admin`), or a UTF-8 file."""
    if name_or_path in EVALUATION_TEXTS:
        shipped = resources.files("appliance") / "evaltexts" / f"{name_or_path}.txt"
        return EvaluationText(name_or_path, shipped.read_text(encoding="utf-8"))
    path = Path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise InputError(f"cannot read the evaluation text {path}: {reason}") from None
    return EvaluationText(path.name, text)


def shares_text(calibration: str, evaluation: str, min_chars: int = 40) -> bool:
    """Whether two texts share a line of `min_chars` or more (after trimming):
    calibration and evaluation text must be disjoint, or the report flatters."""
    lines = {line.strip() for line in evaluation.splitlines() if len(line.strip()) >= min_chars}
    return any(line.strip() in lines for line in calibration.splitlines())


def compare(
    base: Path,
    quantized: Path,
    texts: list[EvaluationText],
    *,
    context: int = DEFAULT_CONTEXT,
    threads: int | None = None,
    flash_attention: bool = False,
    progress: Progress | None = None,
    adapter: Path | None = None,
    scale: float = 1.0,
) -> Report:
    """Measure `quantized` against `base` on each text; both files are validated first.

    With `adapter`, the second model is `quantized` (which may be `base` itself)
    with that LoRA adapter applied at `scale`: what the adapter changes, on the
    domain text given.
    """
    if adapter is None and base.resolve() == quantized.resolve():
        raise UsageError("BASE and QUANT are the same file")
    if not texts:
        raise UsageError("give at least one evaluation text")
    refs = [_model_ref(path) for path in (base, quantized)]
    applied = None if adapter is None else _adapter_ref(adapter, quantized, scale)
    settings = Settings(
        context=context,
        batch=context,
        ubatch=context,
        threads=threads or physical_cores(),
        flash_attention=flash_attention,
        llama_cpp_python=version("llama-cpp-python"),
    )
    pair = [native.Scorer(base, context, settings.threads, flash_attention)]
    try:
        lora = None if adapter is None else (adapter, scale)
        pair.append(native.Scorer(quantized, context, settings.threads, flash_attention, lora))
    except BaseException:
        pair[0].close()
        raise
    try:
        if pair[0].n_vocab != pair[1].n_vocab:
            raise UsageError("BASE and QUANT have different vocabularies: not the same model")
        tokenized = [_tokens(pair, text, context) for text in texts]
        total = sum(len(tokens) // context for tokens in tokenized)
        done = 0
        scores = []
        for text, tokens in zip(texts, tokenized, strict=True):

            def step(_chunks: int, _total: int) -> None:
                nonlocal done
                done += 1
                if progress is not None:
                    progress(done, total)

            scores.append(_score(pair, text, tokens, context, step))
    finally:
        for scorer in pair:
            scorer.close()
    return Report(base=refs[0], quantized=refs[1], settings=settings, texts=scores, adapter=applied)


def _model_ref(path: Path) -> ModelRef:
    gguf = read_loadable_gguf(path)  # validated before llama.cpp reads it
    return ModelRef(
        file=path.name,
        type=quantization_of(gguf),
        bytes=gguf.file_size,
        sha256=sha256_file(gguf.path),
    )


def _adapter_ref(adapter: Path, model: Path, scale: float) -> AdapterRef:
    if not 0.0 < scale <= MAX_SCALE:
        raise UsageError(f"the adapter's scale must be above 0 and at most {MAX_SCALE:g}")
    info = read_adapter(adapter, read_loadable_gguf(model))  # before llama.cpp reads it
    return AdapterRef(
        file=adapter.name,
        sha256=sha256_file(adapter),
        bytes=info.file_size,
        rank=info.rank,
        alpha=info.alpha,
        scale=scale,
    )


def _tokens(pair: list[native.Scorer], text: EvaluationText, context: int) -> list[int]:
    tokens = pair[0].tokenize(text.text)
    if pair[1].tokenize(text.text) != tokens:
        raise UsageError("BASE and QUANT tokenize the text differently: not the same model")
    if len(tokens) < 2 * context:
        raise UsageError(
            f"the evaluation text {text.name} has {len(tokens)} tokens; "
            f"a context of {context} needs at least {2 * context}"
        )
    return tokens


def _score(
    pair: list[native.Scorer],
    text: EvaluationText,
    tokens: list[int],
    context: int,
    step: Progress,
) -> TextScore:
    base = pair[0]
    first = context // 2
    rows = context - 1 - first  # the last position predicts nothing inside the window
    chunks = len(tokens) // context
    nll = np.zeros(2)
    seconds = np.zeros(2)
    kld: list[np.ndarray] = []
    same_top = 0
    for chunk in range(chunks):
        window = tokens[chunk * context : (chunk + 1) * context]
        targets = np.asarray(window[first + 1 :], dtype=np.int64)
        if base.add_bos:
            window = [base.bos, *window[1:]]
        logits = []
        for index, scorer in enumerate(pair):
            scorer.clear()
            started = time.perf_counter()
            pointer = scorer.decode(window, 0, first)
            seconds[index] += time.perf_counter() - started
            logits.append(_rows(pointer, context - first, scorer.n_vocab))
        for start in range(0, rows, ROWS_PER_BLOCK):
            block = slice(start, min(start + ROWS_PER_BLOCK, rows))
            log_p = _log_softmax(logits[0][block])
            log_q = _log_softmax(logits[1][block])
            picked = targets[block][:, None]
            nll[0] -= np.take_along_axis(log_p, picked, axis=1).sum()
            nll[1] -= np.take_along_axis(log_q, picked, axis=1).sum()
            kld.append(np.sum(np.exp(log_p) * (log_p - log_q), axis=1))
            same_top += int(np.sum(log_p.argmax(axis=1) == log_q.argmax(axis=1)))
        step(chunk + 1, chunks)
    scored = chunks * rows
    divergence = np.concatenate(kld)
    perplexity = np.exp(nll / scored)
    generation = [_generation_speed(scorer, tokens) for scorer in pair]
    return TextScore(
        name=text.name,
        sha256=text.sha256,
        tokens=len(tokens),
        chunks=chunks,
        scored_tokens=scored,
        base_perplexity=float(perplexity[0]),
        quantized_perplexity=float(perplexity[1]),
        kld_mean=float(divergence.mean()),
        kld_p99=float(np.percentile(divergence, 99)),
        top_token_agreement=same_top / scored,
        base_prompt_tps=chunks * context / seconds[0],
        quantized_prompt_tps=chunks * context / seconds[1],
        base_generation_tps=generation[0],
        quantized_generation_tps=generation[1],
    )


def _rows(pointer: Any, count: int, n_vocab: int) -> np.ndarray:
    """llama.cpp's logits buffer as an array, without copying (valid until the next decode)."""
    buffer = ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float))
    rows: np.ndarray = np.ctypeslib.as_array(buffer, shape=(count, n_vocab))
    return rows


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted: np.ndarray = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    result: np.ndarray = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return result


def _generation_speed(scorer: native.Scorer, tokens: list[int]) -> float:
    """Tokens per second decoding one token at a time, as an answer is written."""
    scorer.clear()
    started = time.perf_counter()
    for position, token in enumerate(tokens[:GENERATION_STEPS]):
        scorer.decode([token], position, 0)
    return GENERATION_STEPS / (time.perf_counter() - started)
