"""Inference: validate GGUF files, describe them, stream answers from them, in this
process (`Engine`), from a supervised llama-server child (`LlamaServerEngine`), or
from GPU servers on the closed network over mutual TLS (`RemoteEngine`, `Endpoint`).

Public API; other modules import only what is listed here.
"""

from appliance.config import EngineSettings, GenerationParams
from appliance.engine.adapter import AdapterInfo, read_adapter
from appliance.engine.backend import ChatEngine, load_engine
from appliance.engine.chat import ChatFormat, Message
from appliance.engine.engine import Engine
from appliance.engine.gguf import GGUFFile, TensorInfo, read_gguf
from appliance.engine.info import ModelInfo, describe, inspect_model, sha256_file
from appliance.engine.llama_server import LlamaServerEngine
from appliance.engine.lora import AdapterFile, AdapterUse
from appliance.engine.native import supports_gpu_offload
from appliance.engine.remote import RemoteEngine
from appliance.engine.stream import Generation, GenerationStats
from appliance.engine.tls import Endpoint, tls_context

__all__ = [
    "AdapterFile",
    "AdapterInfo",
    "AdapterUse",
    "ChatEngine",
    "ChatFormat",
    "Endpoint",
    "Engine",
    "EngineSettings",
    "GGUFFile",
    "Generation",
    "GenerationParams",
    "GenerationStats",
    "LlamaServerEngine",
    "Message",
    "ModelInfo",
    "RemoteEngine",
    "TensorInfo",
    "describe",
    "inspect_model",
    "load_engine",
    "read_adapter",
    "read_gguf",
    "sha256_file",
    "supports_gpu_offload",
    "tls_context",
]
