"""Run one harness under atheris (libFuzzer) for a time budget, then summarise.

    python -m tests.fuzz.run TARGET SECONDS [--work DIR] [-- LIBFUZZER_ARGS...]

TARGET is a name from harnesses.TARGETS, several joined by commas, or `all`.

The fuzzer runs in a child process (libFuzzer exits the process it runs in),
starting from the seed corpus and the regression inputs; inputs that reach new
coverage go to WORK/corpus (default tests/fuzz/work/TARGET, not committed), and
a crash, hang or memory blow-up to WORK/crash-*, timeout-* or oom-*. The last
line printed is the summary: executions, rate, coverage (cov: edges, ft:
features), corpus size, and what was found. The exit status is the child's:
0 when nothing was found.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

FUZZ_DIR = Path(__file__).resolve().parent
ROOT = FUZZ_DIR.parent.parent
_CHILD = "APPLIANCE_FUZZ_CHILD"
LIBFUZZER_DEFAULTS = [
    "-timeout=10",  # seconds for one input: anything slower is a hang
    "-rss_limit_mb=2048",
    "-print_final_stats=1",
]
_STATS = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)")
_FINAL = re.compile(r"^stat::(\w+):\s+(\d+)")
_DONE = re.compile(r"^Done (\d+) runs in (\d+) second")
_ARTIFACT = re.compile(r"Test unit written to (\S+)")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target")
    parser.add_argument("seconds", type=int)
    parser.add_argument("--work", type=Path, help="corpus and crash folder")
    parser.add_argument("libfuzzer", nargs="*", help="extra libFuzzer arguments, after --")
    args = parser.parse_args(argv)
    if os.environ.get(_CHILD):
        return _child(args.target, args.libfuzzer)
    from tests.fuzz.targets import INSTRUMENT

    targets = list(INSTRUMENT) if args.target == "all" else args.target.split(",")
    unknown = [target for target in targets if target not in INSTRUMENT]
    if unknown:
        print(f"unknown target {unknown[0]!r} (known: {', '.join(INSTRUMENT)})", file=sys.stderr)
        return 2
    if args.work and len(targets) > 1:
        print("--work takes one target", file=sys.stderr)
        return 2
    codes = [_parent(target, args.seconds, args.work, args.libfuzzer) for target in targets]
    return next((code for code in codes if code), 0)


def _parent(target: str, seconds: int, work: Path | None, extra: list[str]) -> int:
    work = work or FUZZ_DIR / "work" / target
    (work / "corpus").mkdir(parents=True, exist_ok=True)
    seeds = [d / target for d in (FUZZ_DIR / "corpus", FUZZ_DIR / "regressions")]
    seeds = [folder for folder in seeds if folder.is_dir()]
    command = [
        sys.executable,
        "-m",
        "tests.fuzz.run",
        target,
        str(seconds),
        "--",
        *LIBFUZZER_DEFAULTS,
        f"-max_total_time={seconds}",
        f"-artifact_prefix={work}/",
        *extra,
        str(work / "corpus"),  # the first folder receives new inputs
        *map(str, seeds),
    ]
    env = {**os.environ, _CHILD: "1", "PYTHONPATH": str(ROOT)}
    if os.access("/dev/shm", os.W_OK):  # parsers' own temporary files (TUF's) on tmpfs
        env["TMPDIR"] = "/dev/shm"
    log = work / "fuzz.log"
    started = time.monotonic()
    with log.open("w") as sink:
        child = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, env=env, check=False)
    elapsed = time.monotonic() - started
    print(_summary(target, log.read_text(errors="replace"), elapsed, child.returncode, log),
          flush=True)  # fmt: skip
    return child.returncode


def _summary(target: str, output: str, elapsed: float, code: int, log: Path) -> str:
    executions = cov = ft = corpus = 0
    seconds = elapsed  # until libFuzzer says how long it fuzzed (start-up excluded)
    found: list[str] = []
    for line in output.splitlines():
        if match := _STATS.match(line):
            executions, cov, ft, corpus = map(int, match.groups())
        elif match := _DONE.match(line):
            executions, seconds = int(match.group(1)), max(1, int(match.group(2)))
        elif match := _FINAL.match(line):
            if match.group(1) == "number_of_executed_units":
                executions = int(match.group(2))
        elif match := _ARTIFACT.search(line):
            found.append(match.group(1))
    outcome = "nothing found" if code == 0 and not found else f"FOUND (exit {code}; log {log})"
    return (
        f"fuzz {target}: {executions:,} executions in {seconds:.0f} s "
        f"({executions / seconds:,.0f}/s; {elapsed:.0f} s with start-up), "
        f"cov {cov} ft {ft}, corpus {corpus}; {outcome}{''.join(' ' + f for f in found)}"
    )


def _child(target: str, libfuzzer_args: list[str]) -> int:
    import atheris

    # startswith/endswith against constants guide the mutations (atheris's RegEx
    # hook fails on some bytes patterns of the standard library, so it stays off).
    atheris.enabled_hooks.add("str")
    from tests.fuzz.targets import HARNESS, INSTRUMENT, not_instrumented

    # Nothing of ours is imported yet, so the parsers the target's harness imports are
    # instrumented: those INSTRUMENT names, and no other module of their packages.
    include = INSTRUMENT[target]
    with atheris.instrument_imports(include=include, exclude=not_instrumented(include)):
        harness = importlib.import_module(HARNESS[target])
    atheris.Setup([sys.argv[0], *libfuzzer_args], getattr(harness, f"fuzz_{target}"))
    atheris.Fuzz()
    return 0  # not reached: libFuzzer exits the process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
