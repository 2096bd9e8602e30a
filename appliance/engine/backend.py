"""One engine interface, two backends: llama.cpp in this process, or a llama-server child.

Everything that answers (the session, the service, the UI) holds a
`ChatEngine`; `load_engine` picks the backend the settings name.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Protocol

from appliance.config import EngineSettings, GenerationParams
from appliance.engine.chat import ChatFormat, Message
from appliance.engine.engine import Engine
from appliance.engine.info import ModelInfo
from appliance.engine.llama_server import LlamaServerEngine
from appliance.engine.lora import AdapterFile, AdapterUse
from appliance.engine.stream import Generation
from appliance.errors import ConfigError


class ChatEngine(Protocol):
    """What both backends offer. `chat` may be called from up to `slots` threads at
    once; `on_restart`, when set, hears of each restarted engine process;
    `adapters` are the loaded LoRA adapters' sha256 by name."""

    settings: EngineSettings
    info: ModelInfo
    context_length: int
    gpu_offload: bool
    chat_format: ChatFormat
    slots: int
    adapters: dict[str, str]
    on_restart: Callable[[str], None] | None

    def chat(
        self,
        messages: list[Message],
        params: GenerationParams | None = None,
        *,
        adapter: AdapterUse | None = None,
    ) -> Generation:
        """Stream the reply to `messages`, with one loaded adapter or none."""

    def count_tokens(self, text: str) -> int:
        """How many tokens `text` is for this model."""

    def close(self) -> None:
        """Free the model (and stop the engine process, if any)."""

    def __enter__(self) -> ChatEngine:
        """Use as a context manager: closed on exit."""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close."""


def load_engine(
    model: str | os.PathLike[str],
    settings: EngineSettings,
    *,
    verified: bool = False,
    adapters: Sequence[AdapterFile] = (),
) -> ChatEngine:
    """The backend `settings.backend` names, with the model (and adapters) loaded."""
    if settings.backend == "remote":
        raise ConfigError(
            'the "remote" backend answers through the appliance service only, '
            "from the GPU servers its home lists (appliance serve)"
        )
    if settings.backend == "llama-server":
        return LlamaServerEngine(model, settings, verified=verified, adapters=adapters)
    return Engine(model, settings, verified=verified, adapters=adapters)
