"""Lightweighting figures: each quantization type against its source, with and
without an importance matrix, and our perplexity against llama-perplexity's.

Reference: no Python package ships a small model at F16/BF16, so the source is
an F16 made from the embedded Gemma 3 270M Q4_K_M. That exercises the whole
pipeline, but it is not a quality reference: Q4_K_M against it comes out near
zero (it holds the same values), and the other types measure the distance to
that Q4_K_M, not to Google's weights. The published anchor (llama.cpp's Q4_K_M
on Llama-3-8B against a real F16: +2.8% perplexity, mean KLD 0.031) applies to
a real F16 source only.

The importance matrix is made by llama-imatrix from the project's own docs
(README and architecture), disjoint from the evaluation text. Evaluation:
the shipped English text (BENCH_TEXT to change), context 512, flash attention
off, threads = physical cores. Last line:
`ppl_vs_llama_perplexity: <our perplexity / llama-perplexity's>` on the F16.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from appliance.catalog import load_catalog, prepare
from appliance.config import physical_cores
from appliance.engine.compare import compare, evaluation_text
from appliance.engine.imatrix import read_imatrix
from appliance.engine.quantize import quantize
from appliance.engine.tools import llama_perplexity, make_imatrix

ROOT = Path(__file__).resolve().parent.parent
TYPES = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K")
CONTEXT = 512


def main() -> None:
    threads = physical_cores()
    text = evaluation_text(os.environ.get("BENCH_TEXT", "en-admin"))
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        known = load_catalog()
        source = prepare(known.default_entry, work / "home")
        f16 = work / "f16.gguf"
        quantize(source, f16, "F16")
        calibration = work / "calibration.txt"
        docs = ("README.md", "docs/architecture.md")
        calibration.write_text("\n".join((ROOT / doc).read_text() for doc in docs))
        make_imatrix(f16, calibration, work / "imatrix.gguf", CONTEXT, threads)
        imatrix = read_imatrix(work / "imatrix.gguf")

        print(f"reference: F16 made from {known.default_entry.id} (pipeline, not quality)")
        print(f"text: {text.name}; context {CONTEXT}; threads {threads}; flash attention off")
        print(
            f"{'type':<8} {'imatrix':<8} {'size x':>7} {'gen x':>6} {'prompt x':>8} "
            f"{'dPPL':>8} {'mean KLD':>9} {'same top':>8}"
        )
        base_ppl = None
        for file_type in TYPES:
            for guided in (False, True):
                out = work / f"{file_type}{'-imatrix' if guided else ''}.gguf"
                quantize(f16, out, file_type, imatrix if guided else None)
                report = compare(f16, out, [text], context=CONTEXT, threads=threads)
                score = report.texts[0]
                base_ppl = score.base_perplexity
                print(
                    f"{file_type:<8} {'yes' if guided else 'no':<8} {report.size_ratio:>7.3f} "
                    f"{score.generation_speedup:>6.2f} {score.prompt_speedup:>8.2f} "
                    f"{score.perplexity_change:>+8.2%} {score.kld_mean:>9.5f} "
                    f"{score.top_token_agreement:>8.1%}"
                )
                out.unlink()
        text_file = work / "eval.txt"
        text_file.write_text(text.text)
        theirs = llama_perplexity(f16, text_file, CONTEXT, threads)
        print(f"F16 perplexity: ours {base_ppl:.4f}, llama-perplexity {theirs:.4f}")
        print(f"ppl_vs_llama_perplexity: {base_ppl / theirs:.4f}")


if __name__ == "__main__":
    main()
