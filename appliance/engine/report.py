"""The model report: what lightweighting cost, as JSON (docs/formats/model-report.md).

A report travels next to its model: `MODEL.gguf.report.json` beside a file,
`model/NAME.report.json` in a bundle. It names the quantized file by sha256,
so a report is only ever shown for the exact bytes it measured.
"""

from __future__ import annotations

import json
import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from appliance.errors import ModelFormatError
from appliance.fsutil import atomic_writer

KIND = "appliance.model-report"
SCHEMA = 1
MAX_REPORT = 256 << 10
SUFFIX = ".report.json"


@dataclass(frozen=True)
class ModelRef:
    file: str
    type: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class AdapterRef:
    """A LoRA adapter applied to the second model (`quantized`): base vs base+adapter."""

    file: str
    sha256: str
    bytes: int
    rank: int
    alpha: float
    scale: float


@dataclass(frozen=True)
class Settings:
    context: int
    batch: int
    ubatch: int
    threads: int
    flash_attention: bool
    llama_cpp_python: str
    device: str = "cpu"


@dataclass(frozen=True)
class TextScore:
    name: str
    sha256: str
    tokens: int
    chunks: int
    scored_tokens: int
    base_perplexity: float
    quantized_perplexity: float
    kld_mean: float
    kld_p99: float
    top_token_agreement: float  # share of scored positions with the same most likely token
    base_prompt_tps: float
    quantized_prompt_tps: float
    base_generation_tps: float
    quantized_generation_tps: float

    @property
    def perplexity_change(self) -> float:
        """Relative change of perplexity: +0.028 is 2.8% worse."""
        return self.quantized_perplexity / self.base_perplexity - 1

    @property
    def prompt_speedup(self) -> float:
        return self.quantized_prompt_tps / self.base_prompt_tps

    @property
    def generation_speedup(self) -> float:
        return self.quantized_generation_tps / self.base_generation_tps


@dataclass(frozen=True)
class Report:
    base: ModelRef
    quantized: ModelRef
    settings: Settings
    texts: list[TextScore]
    imatrix: dict[str, Any] | None = field(default=None)
    adapter: AdapterRef | None = field(default=None)

    @property
    def size_ratio(self) -> float:
        return self.quantized.bytes / self.base.bytes

    def summary(self) -> str:
        """One line for `doctor` and `models inspect`."""
        if self.adapter is not None:
            adapter = f"adapter {self.adapter.file} x{self.adapter.scale:g}"
            parts = [f"{self.quantized.type} + {adapter} vs {self.base.type}"]
        else:
            parts = [f"{self.quantized.type} vs {self.base.type}: size {self.size_ratio:.2f}x"]
        for text in self.texts:
            parts.append(
                f"{text.name} PPL {text.perplexity_change:+.1%}, KLD {text.kld_mean:.4f}, "
                f"speed {text.generation_speedup:.2f}x"
            )
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        texts = []
        for text in self.texts:
            entry = asdict(text)
            entry["perplexity_change"] = text.perplexity_change
            entry["prompt_speedup"] = text.prompt_speedup
            entry["generation_speedup"] = text.generation_speedup
            texts.append(entry)
        return {
            "kind": KIND,
            "schema": SCHEMA,
            "base": asdict(self.base),
            "quantized": asdict(self.quantized),
            "size_ratio": self.size_ratio,
            "settings": asdict(self.settings),
            "imatrix": self.imatrix,
            "adapter": asdict(self.adapter) if self.adapter else None,
            "texts": texts,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Report:
        """Validate and read a report; anything off is a ModelFormatError."""
        try:
            if data["kind"] != KIND or data["schema"] != SCHEMA:
                raise ValueError("not a model report of schema 1")
            imatrix = data.get("imatrix")
            if imatrix is not None and not isinstance(imatrix, dict):
                raise ValueError("imatrix is not an object")
            adapter = data.get("adapter")
            return cls(
                base=_typed(ModelRef, data["base"]),
                quantized=_typed(ModelRef, data["quantized"]),
                settings=_typed(Settings, data["settings"]),
                texts=[_typed(TextScore, text) for text in data["texts"]],
                imatrix=imatrix,
                adapter=None if adapter is None else _typed(AdapterRef, adapter),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(f"invalid model report: {exc}") from None


def _typed(cls: Any, data: Any) -> Any:
    """Build a dataclass from `data`, each field of its declared type (extra keys allowed)."""
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__} is not an object")
    values = {}
    for item in fields(cls):
        if item.name not in data:
            if item.default is not MISSING:
                continue
            raise KeyError(item.name)
        value = data[item.name]
        wanted: Any = {"str": str, "int": int, "float": (int, float), "bool": bool}[str(item.type)]
        if isinstance(value, bool) != (item.type == "bool") or not isinstance(value, wanted):
            raise TypeError(f"{cls.__name__}.{item.name} is not a {item.type}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{cls.__name__}.{item.name} is not finite")
        values[item.name] = value
    return cls(**values)


def sidecar(model: Path) -> Path:
    return model.with_name(model.name + SUFFIX)


def write_report(report: Report, path: Path) -> None:
    """Write atomically: a half-written report is never read."""
    text = json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"
    with atomic_writer(path, mode=0o644) as sink:
        sink.write(text.encode())


def read_report(path: Path) -> Report:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_REPORT + 1)
    except OSError as exc:
        raise ModelFormatError(f"cannot read the model report {path}: {exc.strerror}") from None
    if len(data) > MAX_REPORT:
        raise ModelFormatError(f"the model report {path} is larger than {MAX_REPORT} bytes")
    try:
        return Report.from_dict(json.loads(data))
    except (ValueError, RecursionError):
        raise ModelFormatError(f"the model report {path} is not valid JSON") from None


def report_for(model: Path, sha256: str) -> Report | None:
    """The sidecar report of `model`, if there is one and it measured these bytes."""
    path = sidecar(model)
    if not path.is_file():
        return None
    report = read_report(path)
    return report if report.quantized.sha256 == sha256 else None
