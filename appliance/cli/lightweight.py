"""`appliance models quantize|compare|imatrix`: lightweighting with a measured report."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from appliance.cli.progress import step_progress
from appliance.config import physical_cores
from appliance.engine import compare as measure
from appliance.engine import tools
from appliance.engine.imatrix import read_imatrix
from appliance.engine.quantize import FILE_TYPES, quantize
from appliance.engine.report import Report, sidecar, write_report
from appliance.errors import UsageError
from appliance.textsafe import json_line, printable


def register(sub: Any) -> None:
    quant = sub.add_parser("quantize", help="quantize a GGUF with llama.cpp's quantizer")
    quant.add_argument("source", type=Path, metavar="SRC.gguf")
    quant.add_argument("out", type=Path, metavar="OUT.gguf")
    quant.add_argument("--type", required=True, choices=FILE_TYPES, metavar="TYPE",
                       help=f"target type ({', '.join(FILE_TYPES)})")  # fmt: skip
    quant.add_argument("--imatrix", type=Path, metavar="FILE",
                       help="importance matrix made by llama-imatrix (GGUF)")  # fmt: skip
    quant.set_defaults(run=run_quantize)

    comp = sub.add_parser(
        "compare", help="measure a quantized model against its source, or what an adapter changes"
    )
    comp.add_argument("base", type=Path, metavar="BASE.gguf", help="the source (F16/BF16)")
    comp.add_argument("quantized", type=Path, nargs="?", metavar="QUANT.gguf",
                      help="the quantized model (with --adapter: default BASE itself)")  # fmt: skip
    comp.add_argument("--adapter", type=Path, metavar="ADAPTER.gguf",
                      help="measure QUANT with this LoRA adapter applied against BASE")  # fmt: skip
    comp.add_argument("--scale", type=float, default=1.0, metavar="S",
                      help="the adapter's scale (default 1)")  # fmt: skip
    comp.add_argument("--text", action="append", metavar="FILE",
                      help="evaluation text (repeatable; default: the shipped "
                      f"{' and '.join(measure.EVALUATION_TEXTS)})")  # fmt: skip
    add_eval_options(comp)
    comp.add_argument("--json", action="store_true", help="machine-readable output")
    comp.add_argument("--no-save", action="store_true",
                      help="do not write the report beside QUANT (QUANT.report.json), "
                      "or beside the adapter")  # fmt: skip
    comp.set_defaults(run=run_compare)

    imat = sub.add_parser("imatrix", help="make an importance matrix with llama-imatrix")
    imat.add_argument("model", type=Path, metavar="MODEL.gguf", help="the source (F16/BF16)")
    imat.add_argument("--text", type=Path, required=True, metavar="FILE",
                      help="calibration text (domain text; never the evaluation text)")  # fmt: skip
    imat.add_argument("--out", type=Path, metavar="FILE",
                      help="default: MODEL.imatrix.gguf beside the model")  # fmt: skip
    imat.add_argument("--context", type=int, default=measure.DEFAULT_CONTEXT, metavar="N")
    imat.add_argument("--threads", type=int, metavar="N")
    imat.set_defaults(run=run_imatrix)


def add_eval_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--context", type=int, default=measure.DEFAULT_CONTEXT, metavar="N",
                        help="tokens per window (default 512, as llama-perplexity)")  # fmt: skip
    parser.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads (default: one per physical core)")  # fmt: skip
    parser.add_argument("--flash-attention", action="store_true",
                        help="measure with flash attention on (recorded; default off)")  # fmt: skip


def run_quantize(args: argparse.Namespace) -> int:
    imatrix = None
    if args.imatrix is not None:
        imatrix = read_imatrix(args.imatrix)
        check_calibration(imatrix.datasets)
    result = quantize(args.source, args.out, args.type, imatrix)
    guided = f", importance matrix {args.imatrix.name}" if imatrix else ""
    print(f"quantized: {result.describe()}{guided}")
    if result.requantized:
        print("warning: the source was already quantized; quality is lost twice")
    print(f"measure it: appliance models compare {args.source} {args.out}")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    if args.quantized is None and args.adapter is None:
        raise UsageError("give QUANT.gguf, or --adapter ADAPTER.gguf")
    texts = [measure.evaluation_text(name) for name in args.text or measure.EVALUATION_TEXTS]
    with step_progress("Measuring") as progress:
        report = measure.compare(
            args.base,
            args.quantized or args.base,
            texts,
            context=args.context,
            threads=args.threads,
            flash_attention=args.flash_attention,
            progress=progress,
            adapter=args.adapter,
            scale=args.scale,
        )
    if not args.no_save:
        write_report(report, sidecar(args.adapter or args.quantized))
    print(json_line(report.to_dict(), indent=2) if args.json else format_report(report))
    return 0


def run_imatrix(args: argparse.Namespace) -> int:
    calibration = measure.evaluation_text(str(args.text))
    for name in measure.EVALUATION_TEXTS:
        if measure.shares_text(calibration.text, measure.evaluation_text(name).text):
            raise UsageError(f"the calibration text shares lines with the evaluation text {name}")
    out = args.out or args.model.with_name(args.model.stem + ".imatrix.gguf")
    if out.exists():
        raise UsageError(f"{out} already exists")
    with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
        staged = Path(scratch) / out.name
        tools.make_imatrix(
            args.model, args.text, staged, args.context, args.threads or physical_cores()
        )
        read_imatrix(staged)  # what llama-imatrix wrote is what quantize will read
        staged.rename(out)
    print(out)
    return 0


def check_calibration(datasets: list[str]) -> None:
    """An importance matrix computed on a shipped evaluation text would flatter the report."""
    shipped = {f"{name}.txt" for name in measure.EVALUATION_TEXTS}
    for dataset in datasets:
        if Path(dataset).name in shipped:
            raise UsageError(
                f"the importance matrix was computed on the evaluation text {Path(dataset).name}"
            )


def format_report(report: Report) -> str:
    """The report as a table for IT staff and security officers."""
    base, quant, settings = report.base, report.quantized, report.settings
    adapter = report.adapter
    second = "PPL quant"
    if adapter is None:
        lines = [
            f"{printable(quant.file)} ({quant.type}) against {printable(base.file)} ({base.type})",
            f"size: {quant.bytes:,} of {base.bytes:,} bytes ({report.size_ratio:.2f}x)",
        ]
    else:
        second = "PPL +LoRA"
        lines = [
            f"{printable(quant.file)} ({quant.type}) with the adapter {printable(adapter.file)} "
            f"at scale {adapter.scale:g} against {printable(base.file)} ({base.type})",
            f"adapter: rank {adapter.rank}, alpha {adapter.alpha:g}, {adapter.bytes:,} bytes, "
            f"sha256 {adapter.sha256}",
        ]
    lines += [
        f"settings: context {settings.context}, batch {settings.batch}, "
        f"threads {settings.threads}, flash attention "
        f"{'on' if settings.flash_attention else 'off'}, llama-cpp-python "
        f"{settings.llama_cpp_python}",
        "",
        f"{'text':<12} {'PPL base':>9} {second:>9} {'dPPL':>7} {'mean KLD':>9} "
        f"{'p99 KLD':>8} {'same top':>8} {'gen x':>6} {'prompt x':>8}",
    ]
    for text in report.texts:
        lines.append(
            f"{printable(text.name)[:12]:<12} {text.base_perplexity:>9.3f} "
            f"{text.quantized_perplexity:>9.3f} {text.perplexity_change:>+7.2%} "
            f"{text.kld_mean:>9.5f} {text.kld_p99:>8.4f} {text.top_token_agreement:>8.1%} "
            f"{text.generation_speedup:>6.2f} {text.prompt_speedup:>8.2f}"
        )
    return "\n".join(lines)
