"""llama.cpp's own command-line tools (llama-server, llama-perplexity, llama-imatrix).

They are built once, by `make setup`, from the llama.cpp that the installed
llama-cpp-python sdist vendors (with the preload that hardens llama-server,
compiled from `nodump.c`), and cached outside the checkout under a key of
that version and the build flags: `~/.cache/appliance/llama.cpp/<key>/bin`.
Everything else finds them through `llama_tool` (or `shipped_file`); nothing builds
them at run time.

An installed release carries its own copies, verified against the bundle's signed
metadata: `PREFIX/releases/V/libexec/`, beside the release's `venv/` (docs/formats/
bundle.md). A program that runs from such a release (its `sys.prefix` is
`releases/V/venv`, and `releases/V/.complete` says the release is whole) uses those
and never the cache; a checkout uses the cache.

    python -m appliance.engine.tools build [--sdist DIR]   # what `make setup` runs
    python -m appliance.engine.tools path                  # the cache folder
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib.metadata import version
from pathlib import Path

from appliance.engine.native import cpu_has_amx
from appliance.errors import ConfigError, EngineError

TOOLS = ("llama-server", "llama-perplexity", "llama-imatrix")
# Loaded into llama-server before main(): it makes the process non-dumpable and
# only then receives the model's memfd (engine/llama_server.py).
NODUMP_PRELOAD = "appliance-nodump.so"
# What a bundle ships and `doctor` checks: the tools and the preload.
SHIPPED_FILES = (*TOOLS, NODUMP_PRELOAD)
PRELOAD_SOURCE = Path(__file__).with_name("nodump.c")
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",  # self-contained binaries: the cache folder is all they need
    "-DGGML_NATIVE=ON",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
)


def llama_cpp_version() -> str:
    return version("llama-cpp-python")


def tools_dir() -> Path:
    """The cache folder for this llama-cpp-python version and these flags."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    flags = hashlib.sha256("\n".join(CMAKE_FLAGS).encode()).hexdigest()[:12]
    return base / "appliance" / "llama.cpp" / f"{llama_cpp_version()}-{flags}" / "bin"


# In an installed release (PREFIX/releases/V): the shipped files' folder, and the
# marker the installer writes last (bundle/host.py), beside the release's venv/.
LIBEXEC = "libexec"
RELEASE_COMPLETE = ".complete"


def installed_release() -> Path | None:
    """The installed release this program runs from (`PREFIX/releases/V`, whose
    `venv/` is `sys.prefix`), or None when it runs from a checkout."""
    release = Path(sys.prefix).parent
    return release if (release / RELEASE_COMPLETE).is_file() else None


def shipped_dir() -> Path:
    """Where the shipped files are: the installed release's `libexec/`, else the cache."""
    release = installed_release()
    return tools_dir() if release is None else release / LIBEXEC


def shipped_file(name: str) -> Path:
    """The path of a shipped file (a tool, or the preload), or a ConfigError that says
    what to do. An installed release uses its own verified copy, never the cache."""
    if name not in SHIPPED_FILES:
        raise ValueError(f"unknown shipped file {name}")
    release = installed_release()
    path = (tools_dir() if release is None else release / LIBEXEC) / name
    if not os.access(path, os.R_OK if name == NODUMP_PRELOAD else os.X_OK):
        if release is not None:
            raise ConfigError(
                f"{name} is missing from the installed release (expected {path}); "
                "reinstall the release"
            )
        raise ConfigError(f"{name} is not built (expected {path}); run make setup")
    return path


def llama_tool(name: str) -> Path:
    """The path of a built tool, or a ConfigError that says how to build it."""
    if name not in TOOLS:
        raise ValueError(f"unknown llama.cpp tool {name}")
    return shipped_file(name)


def tool_options() -> list[str]:
    """Options every tool run needs: AMX kernels crash, so no repacked weights there
    (the engine's `use_extra_bufts` off, see native._without_extra_buffers)."""
    return ["--no-repack"] if cpu_has_amx() else []


def run_tool(name: str, *args: str, timeout: float = 3600) -> str:
    """Run a tool to completion; its output, or an EngineError with its last line."""
    command = [str(llama_tool(name)), *tool_options(), *args]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, errors="replace", timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise EngineError(f"{name} did not finish within {timeout:.0f} seconds") from None
    output = result.stdout + result.stderr
    if result.returncode != 0:
        last = (output.strip().splitlines() or ["no output"])[-1]
        raise EngineError(f"{name} failed (exit {result.returncode}): {last}")
    return output


def llama_perplexity(model: Path, text: Path, context: int, threads: int) -> float:
    """llama.cpp's own perplexity, with the settings `compare` pins (batch = context,
    one sequence, flash attention off)."""
    output = run_tool(
        "llama-perplexity",
        *("-m", str(model), "-f", str(text), "-c", str(context), "-b", str(context)),
        *("-ub", str(context), "-t", str(threads), "-fa", "off", "-ngl", "0"),
    )
    found = re.search(r"Final estimate: PPL = ([0-9.]+)", output)
    if found is None:
        raise EngineError("llama-perplexity printed no final estimate")
    return float(found.group(1))


def make_imatrix(model: Path, text: Path, out: Path, context: int, threads: int) -> None:
    """llama.cpp's `llama-imatrix` over a calibration text, written as GGUF."""
    run_tool(
        "llama-imatrix",
        *("-m", str(model), "-f", str(text), "-o", str(out), "--output-format", "gguf"),
        *("-c", str(context), "-b", str(context), "-t", str(threads), "-ngl", "0"),
    )


def build(sdist: Path | None = None) -> Path:
    """Build the tools and the preload into the cache unless they are there; return
    the folder. A cache with the tools gets the preload alone when it is missing
    or older than its source (it takes a moment; llama.cpp takes minutes)."""
    target = tools_dir()
    if all((target / name).is_file() for name in TOOLS):
        if not _up_to_date(target / NODUMP_PRELOAD, PRELOAD_SOURCE):
            build_preload(target)
        return target
    with tempfile.TemporaryDirectory(prefix="llama-tools-") as scratch:
        work = Path(scratch)
        archive = _sdist(sdist, work)
        with tarfile.open(archive) as tar:
            tar.extractall(work, filter="data")
        source = next(work.glob("llama_cpp_python-*/vendor/llama.cpp"))
        build_dir = work / "build"
        _run(["cmake", "-S", str(source), "-B", str(build_dir), *CMAKE_FLAGS])
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL") or str(os.cpu_count() or 2)
        _run(["cmake", "--build", str(build_dir), "-j", jobs, "--target", *TOOLS])
        staged = target.with_name(".bin.partial")
        shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir(parents=True)
        for name in TOOLS:
            shutil.copy2(build_dir / "bin" / name, staged / name)
        build_preload(staged)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staged, target)
    return target


def build_preload(folder: Path) -> Path:
    """Compile `nodump.c` into `folder/appliance-nodump.so`, written under a temporary
    name and renamed, so a half-written library never takes the name."""
    compiler = os.environ.get("CC") or "cc"
    staged = folder / f".{NODUMP_PRELOAD}.partial"
    flags = ["-shared", "-fPIC", "-O2", "-Wall", "-Werror"]
    _run([compiler, *flags, "-o", str(staged), str(PRELOAD_SOURCE)])
    os.replace(staged, folder / NODUMP_PRELOAD)
    return folder / NODUMP_PRELOAD


def _up_to_date(built: Path, source: Path) -> bool:
    try:
        return built.stat().st_mtime >= source.stat().st_mtime
    except FileNotFoundError:
        return False


def _sdist(given: Path | None, work: Path) -> Path:
    """The pinned sdist: from `given`, else downloaded (the index is reachable at setup)."""
    wanted = f"llama_cpp_python-{llama_cpp_version()}.tar.gz"
    if given is not None and (given / wanted).is_file():
        return given / wanted
    pin = f"llama-cpp-python=={llama_cpp_version()}"
    download = ["download", "--quiet", "--no-deps", "--no-binary", ":all:", pin]
    _run([sys.executable, "-m", "pip", *download, "-d", str(work)])
    return work / wanted


def _run(command: list[str]) -> None:
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m appliance.engine.tools")
    parser.add_argument("action", choices=("build", "path"))
    parser.add_argument("--sdist", type=Path, help="folder holding the llama-cpp-python sdist")
    args = parser.parse_args(argv)
    print(build(args.sdist) if args.action == "build" else tools_dir())
    return 0


if __name__ == "__main__":
    sys.exit(main())
