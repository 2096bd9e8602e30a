"""Where the appliance keeps its data, and the settings the engine runs with."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import ConfigError, UsageError

HOME_ENV = "APPLIANCE_HOME"


def appliance_home() -> Path:
    """The data directory: $APPLIANCE_HOME, else $XDG_DATA_HOME/appliance,
    else ~/.local/share/appliance."""
    explicit = os.environ.get(HOME_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "appliance"


def ensure_dir(path: Path) -> Path:
    """Create a private directory (0700) or explain in one sentence why not."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create directory {path}: {exc.strerror}") from None
    if not path.is_dir():
        raise ConfigError(f"{path} exists but is not a directory")
    return path


def physical_cores() -> int:
    """Cores (not hyperthreads) this process may run on.

    Decoding is bound by memory bandwidth and the cores' arithmetic, not by
    hyperthreads: llama.cpp's own tools default to this count too.
    """
    cpus = os.sched_getaffinity(0)
    cores: set[tuple[str, str]] = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return len(cpus)
        cores.add((package, core))
    return max(1, len(cores))


@dataclass(frozen=True)
class EngineSettings:
    """How llama.cpp runs a model. The same settings serve every request."""

    context_length: int = 4096
    threads: int | None = None  # None: one per physical core this process may use
    gpu_layers: int | None = None  # None: all layers when a GPU backend is built in
    batch_size: int = 512
    # Reusing the KV cache of the previous prompt's common prefix makes long
    # chats faster, but the reused part was computed in different batches, so
    # greedy answers can differ in the last bits. Off: every answer is computed
    # from scratch and reproducible at temperature 0.
    reuse_prompt_cache: bool = False

    def __post_init__(self) -> None:
        if self.context_length < 64:
            raise UsageError("context length must be at least 64 tokens")
        if self.threads is not None and self.threads < 1:
            raise UsageError("thread count must be at least 1")
        if self.gpu_layers is not None and self.gpu_layers < 0:
            raise UsageError("GPU layer count must be 0 or more")
        if self.batch_size < 1:
            raise UsageError("batch size must be at least 1")


@dataclass(frozen=True)
class GenerationParams:
    """Sampling for one answer. temperature 0 means greedy and reproducible."""

    max_tokens: int = 512
    temperature: float = 0.7
    top_k: int = 64
    top_p: float = 0.95
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise UsageError("max tokens must be at least 1")
        if not 0.0 <= self.temperature <= 5.0:
            raise UsageError("temperature must be between 0 and 5")
        if not 0.0 < self.top_p <= 1.0:
            raise UsageError("top-p must be in (0, 1]")
        if self.top_k < 0:
            raise UsageError("top-k must be 0 or more")
        if not 0 <= self.seed < 2**32:
            raise UsageError("seed must be between 0 and 4294967295")
