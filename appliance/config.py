"""Where the appliance keeps its data, and the settings the engine runs with."""

from __future__ import annotations

import math
import os
import pwd
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

from appliance.errors import ConfigError, UsageError
from appliance.remote_site import read_remotes

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
    """Create a private directory (0700) or explain in one sentence why not.

    Every directory made on the way is 0700 too, whatever the umask: the home
    is usually made as the parent of the first directory asked for inside it,
    and mkdir(parents=True) would make it 0755. Existing directories are left
    as they are.
    """
    missing: list[Path] = []
    for directory in (path, *path.parents):
        if os.path.lexists(directory):
            break
        missing.append(directory)
    try:
        for directory in reversed(missing):
            try:
                directory.mkdir(mode=0o700)
            except FileExistsError:
                continue  # made meanwhile by another process: not ours to change
            directory.chmod(0o700)  # a umask such as 0277 would take the owner's bits
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


# "remote": the listed GPU servers answer every turn; this host loads no weights,
# only the model's tokenizer and chat template (engine/remote.py).
Backend = Literal["local", "llama-server", "remote"]
BACKENDS: tuple[str, ...] = get_args(Backend)
MAX_SLOTS = 64  # llama-server's parallel sequences; beyond this the KV cache is the limit


@dataclass(frozen=True)
class EngineSettings:
    """How llama.cpp runs a model. The same settings serve every request.

    `backend` "local" runs llama.cpp in this process, one answer at a time;
    "llama-server" runs it in a supervised child process that answers `slots`
    requests at once, each with a context window of `context_length` tokens.
    """

    context_length: int = 4096  # per answer (per slot)
    threads: int | None = None  # None: one per physical core this process may use
    gpu_layers: int | None = None  # None: all layers when a GPU backend is built in
    batch_size: int = 512
    # Reusing the KV cache of the previous prompt's common prefix makes long
    # chats faster, but the reused part was computed in different batches, so
    # greedy answers can differ in the last bits. Off: every answer is computed
    # from scratch and reproducible at temperature 0.
    reuse_prompt_cache: bool = False
    backend: Backend = "local"
    slots: int = 1  # answers generated at once

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise UsageError(f"engine backend must be one of {', '.join(BACKENDS)}")
        if not 1 <= self.slots <= MAX_SLOTS:
            raise UsageError(f"slots must be between 1 and {MAX_SLOTS}")
        if self.backend == "local" and self.slots != 1:
            raise UsageError(
                'the local engine answers one at a time: slots > 1 needs "llama-server"'
            )
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
    # Never end at an end-of-generation token (benchmarks and tests that need a
    # fixed number of tokens); stop strings and max_tokens still apply.
    ignore_eos: bool = False

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


CONFIG_FILE = "config.toml"
LANGUAGES = ("en", "ko")
MAX_BACKUP_RECIPIENTS = 16
MAX_BACKUP_HOURS = 8760.0  # a year between scheduled backups at most
# A recipient as `appliance keys generate` prints it; its checksum is checked where it is
# used (appliance/backup: config may not import the sealed format).
_RECIPIENT = re.compile(r"apr1[a-z2-7]{58}")


@dataclass(frozen=True)
class BackupSite:
    """[backup] in config.toml: where backups go, whom they are sealed to, how often.

    Site values, part of the home's signed state: a hand edit stops the service
    until an officer accepts it (`appliance audit state --accept`), so nobody
    chooses the recipients of a backup by running a command.
    """

    folder: Path  # absolute, outside the home
    recipients: tuple[str, ...]  # apr1... strings, lower case
    every_hours: float | None = None  # None: no scheduled backups, only `appliance backup`


_SHA256 = re.compile(r"[0-9a-f]{64}")
POOLINGS = ("mean", "cls")
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class EmbedderSite:
    """[embedder] in config.toml: an ONNX sentence-embedding model IT staff bring.

    The model and its tokenizer (Hugging Face tokenizer.json) are files outside
    the home, each pinned by its sha256: nothing is read into onnxruntime or the
    tokenizer before it matches. Part of the signed home state, like [backup].
    """

    model: Path
    model_sha256: str
    tokenizer: Path
    tokenizer_sha256: str
    query_prefix: str = ""
    passage_prefix: str = ""
    pooling: str = "mean"  # mean over the tokens, or the first (CLS) token
    max_tokens: int = 512
    device: str = "cpu"  # "cuda" takes onnxruntime-gpu (the `gpu` extra)
    least: float = 0.0  # dense floor for a question with Hangul (0: none)
    cross: float = 0.0  # the same without Hangul


@dataclass(frozen=True)
class HomeConfig:
    """What a home serves by default: `HOME/config.toml`, written by the installer.

    [model] path = a sealed file or GGUF (relative to the home), identity = the
    site identity files that unseal it, manifest = the installed release's
    signed bundle.json, whose model sha256 the sealed model must decrypt to;
    [ui] language = "en" or "ko" (default: the policy's), demo = true for a
    demonstration home; [keys] binding id = keys, to remap the UI;
    [engine] backend = "local" (in-process, the default), "llama-server"
    (a supervised child answering several requests at once) or "remote" (the
    listed GPU servers answer every turn; no weights are loaded here), slots = answers
    at once (llama-server only), context = tokens per answer, threads = CPU
    threads; [exports] folder = the absolute folder where clients write drafts
    and audit exports ("{user}" stands for the client's OS login; default
    ~/appliance-exports); [[remote]] = the GPU servers on the closed network
    turns may be sent to (remote_site.py); [backup] folder = the absolute folder
    the service writes sealed backups into, recipients = the apr1... keys they
    are sealed to, every_hours = how often the service makes one itself
    (docs/formats/backup.md); [embedder] = a site's ONNX embedding model for
    retrieval (docs/formats/documents.md). Command-line options override it.
    """

    model: Path | None = None
    manifest: Path | None = None  # pins the model's sha256 (written by the installer)
    identities: tuple[Path, ...] = ()
    language: str | None = None
    demo: bool = False  # made by `appliance demo`: every screen says so
    keymap: dict[str, str] = field(default_factory=dict)  # UI binding id -> keys
    backend: Backend = "local"
    slots: int = 1
    context: int | None = None  # tokens per answer; None: EngineSettings' default
    threads: int | None = None
    exports: str | None = None  # where clients write drafts; "{user}" is the OS login
    remotes: tuple[dict[str, Any], ...] = ()  # [[remote]]: GPU servers (remote_site.py)
    backup: BackupSite | None = None  # [backup]: None, no backups can be made
    embedder: EmbedderSite | None = None  # [embedder]: None, the shipped e5

    def engine_settings(
        self, *, context_length: int | None = None, threads: int | None = None
    ) -> EngineSettings:
        """The engine settings this home asks for; command-line values win."""
        context = context_length or self.context or EngineSettings.context_length
        return EngineSettings(
            context_length=context,
            threads=threads or self.threads,
            backend=self.backend,
            slots=self.slots,
        )


def load_home_config(home: Path) -> HomeConfig:
    """The home's config, or the defaults when it has none; ConfigError names the key."""
    path = home / CONFIG_FILE
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return HomeConfig()
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from None
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise ConfigError(f"{path}: cannot be read: arrays or tables nested too deeply") from None

    def fail(key: str, problem: str) -> ConfigError:
        return ConfigError(f"{path}: {key}: {problem}")

    allowed = {
        "model": {"path", "identity", "manifest"},
        "ui": {"language", "demo"},
        "engine": {"backend", "slots", "context", "threads"},
        "exports": {"folder"},
        "backup": {"folder", "recipients", "every_hours"},
        "embedder": {f.name for f in fields(EmbedderSite)} | {"backend"},
    }
    remotes = tuple(read_remotes(home, raw.pop("remote", []), fail))
    for section, table in raw.items():
        if section not in (*allowed, "keys") or not isinstance(table, dict):
            raise fail(section, "unknown section")
        for key in table:
            if section in allowed and key not in allowed[section]:
                raise fail(f"{section}.{key}", "unknown key")
    keymap = raw.get("keys", {})
    for key, value in keymap.items():
        if not isinstance(value, str) or not value:
            raise fail(f"keys.{key}", 'must be keys such as "f9" or "ctrl+x,f9"')
    demo = raw.get("ui", {}).get("demo", False)
    if not isinstance(demo, bool):
        raise fail("ui.demo", "must be true or false")
    model = raw.get("model", {})
    path_text = model.get("path")
    if path_text is not None and not isinstance(path_text, str):
        raise fail("model.path", "must be a string")
    manifest_text = model.get("manifest")
    if manifest_text is not None and not isinstance(manifest_text, str):
        raise fail("model.manifest", "must be a string")
    identities = model.get("identity", [])
    if isinstance(identities, str):
        identities = [identities]
    if not isinstance(identities, list) or not all(isinstance(i, str) for i in identities):
        raise fail("model.identity", "must be a path or a list of paths")
    language = raw.get("ui", {}).get("language")
    if language is not None and language not in LANGUAGES:
        raise fail("ui.language", f"must be one of {', '.join(LANGUAGES)}")
    engine = raw.get("engine", {})
    backend = engine.get("backend", "local")
    if backend not in BACKENDS:
        raise fail("engine.backend", f"must be one of {', '.join(BACKENDS)}")

    def whole(key: str, low: int, high: int | None = None) -> int | None:
        value = engine.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise fail(f"engine.{key}", f"must be a whole number of at least {low}")
        if high is not None and value > high:
            raise fail(f"engine.{key}", f"must be at most {high}")
        return value

    exports = raw.get("exports", {}).get("folder")
    if exports is not None and not _export_folder(exports):
        raise fail("exports.folder", 'must be an absolute path, "{user}" its only field')
    slots = whole("slots", 1, MAX_SLOTS) or 1
    if backend == "local" and slots != 1:
        raise fail("engine.slots", 'the local engine answers one at a time; use "llama-server"')
    return HomeConfig(
        model=home / path_text if path_text else None,
        manifest=home / manifest_text if manifest_text else None,
        identities=tuple(home / item for item in identities),
        language=language,
        demo=demo,
        keymap=keymap,
        backend=backend,
        slots=slots,
        context=whole("context", 64),
        threads=whole("threads", 1),
        exports=exports,
        remotes=remotes,
        backup=_backup_site(home, raw.get("backup"), fail),
        embedder=_embedder_site(raw.get("embedder"), fail),
    )


def _embedder_site(
    table: dict[str, Any] | None, fail: Callable[[str, str], ConfigError]
) -> EmbedderSite | None:
    """[embedder], checked key by key; absent or backend "e5": None."""
    if table is None or table.get("backend", "onnx") == "e5":
        return None
    if table.get("backend", "onnx") != "onnx":
        raise fail("embedder.backend", 'must be "e5" (shipped) or "onnx"')
    values: dict[str, Any] = {}
    for key in ("model", "tokenizer"):
        text = table.get(key)
        if not isinstance(text, str) or not text.startswith("/") or not text.isprintable():
            raise fail(f"embedder.{key}", "must be an absolute path")
        values[key] = Path(os.path.normpath(text))
        digest = table.get(f"{key}_sha256")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest.lower()):
            raise fail(f"embedder.{key}_sha256", "must be the file's sha256 (64 hex digits)")
        values[f"{key}_sha256"] = digest.lower()
    for key in ("query_prefix", "passage_prefix"):
        text = table.get(key, "")
        if not isinstance(text, str) or len(text) > 64 or not text.isprintable():
            raise fail(f"embedder.{key}", "must be printable text of at most 64 characters")
        values[key] = text
    choices = {"pooling": POOLINGS, "device": DEVICES}
    for key, allowed in choices.items():
        value = table.get(key, allowed[0])
        if value not in allowed:
            raise fail(f"embedder.{key}", f"must be one of {', '.join(allowed)}")
        values[key] = value
    tokens = table.get("max_tokens", 512)
    if isinstance(tokens, bool) or not isinstance(tokens, int) or not 8 <= tokens <= 8192:
        raise fail("embedder.max_tokens", "must be a whole number from 8 to 8192")
    values["max_tokens"] = tokens
    for key in ("least", "cross"):
        floor = table.get(key, 0.0)
        if isinstance(floor, bool) or not isinstance(floor, int | float) or not -1 <= floor <= 1:
            raise fail(f"embedder.{key}", "must be a similarity from -1 to 1")
        values[key] = float(floor)
    return EmbedderSite(**values)


def _backup_site(
    home: Path, table: dict[str, Any] | None, fail: Callable[[str, str], ConfigError]
) -> BackupSite | None:
    """[backup], checked key by key; absent: None."""
    if table is None:
        return None
    for key in ("folder", "recipients"):
        if key not in table:
            raise fail(f"backup.{key}", "missing")
    folder = table["folder"]
    if (
        not isinstance(folder, str)
        or not folder.startswith("/")
        or len(folder) > 1024
        or not folder.isprintable()
        or any(char.isspace() or char in "\\\"'%" for char in folder)
        or ".." in Path(folder).parts
    ):
        raise fail("backup.folder", "must be an absolute path (no spaces, quotes, % or \\)")
    path = Path(os.path.normpath(folder))
    own = Path(os.path.normpath(os.path.abspath(home)))
    if path == own or own in path.parents:
        raise fail("backup.folder", "must be outside the home (a backup that dies with it is none)")
    recipients = table["recipients"]
    if (
        not isinstance(recipients, list)
        or not 1 <= len(recipients) <= MAX_BACKUP_RECIPIENTS
        or not all(isinstance(item, str) for item in recipients)
    ):
        raise fail(
            "backup.recipients", f"must be a list of 1 to {MAX_BACKUP_RECIPIENTS} recipients"
        )
    texts = tuple(item.strip().lower() for item in recipients)
    for text in texts:
        if not _RECIPIENT.fullmatch(text):
            raise fail("backup.recipients", f"'{text[:12]}...' is not a recipient (apr1...)")
    if len(set(texts)) != len(texts):
        raise fail("backup.recipients", "lists a recipient twice")
    every = table.get("every_hours")
    if every is not None and (
        isinstance(every, bool)
        or not isinstance(every, int | float)
        or not math.isfinite(every)
        or not 0 < every <= MAX_BACKUP_HOURS
    ):
        raise fail("backup.every_hours", f"must be a number above 0, at most {MAX_BACKUP_HOURS:g}")
    return BackupSite(path, texts, None if every is None else float(every))


def _export_folder(value: object) -> bool:
    if not isinstance(value, str) or not value.startswith("/") or len(value) > 1024:
        return False
    if not value.isprintable() or "\\" in value:
        return False
    rest = value.replace("{user}", "")
    return "{" not in rest and "}" not in rest and ".." not in Path(rest).parts


def export_folder(template: str | None) -> Path:
    """Where this OS user's drafts and exports go: the site's folder (`{user}`: their
    login), else ~/appliance-exports."""
    if not template:
        return Path.home() / "appliance-exports"
    try:
        login = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        login = f"uid{os.getuid()}"
    return Path(template.replace("{user}", login))
