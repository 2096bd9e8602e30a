"""Let a disposable child process be the first to hand a file to llama.cpp.

The Python checks in `gguf.py` and `hparams.py` refuse every malformed file we
know of, but llama.cpp aborts the whole process on inconsistencies it treats as
programming errors, and a hostile file can look for one we do not know. So an
unauthenticated file is loaded once in a child process (CPU only, no context):
if the child dies, the appliance reports one sentence and lives on.

Files whose bytes are authenticated (a catalogued model matching its pinned
sha256, a sealed model that decrypted) skip the probe.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from appliance.errors import EngineError, ModelFormatError

TIMEOUT_SECONDS = 300
LOADED = "loaded"  # the child's last word when llama.cpp accepted the file
_CHILD = "import sys; from appliance.engine.probe import child; child(sys.argv[1])"
_FD_PATH = re.compile(r"/proc/self/fd/(\d+)")


def probe(path: Path) -> None:
    """Raise ModelFormatError if llama.cpp crashes loading `path`, EngineError if it refuses."""
    inherited = _FD_PATH.fullmatch(str(path))
    try:
        result = subprocess.run(
            [sys.executable, "-c", _CHILD, str(path)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
            pass_fds=(int(inherited.group(1)),) if inherited else (),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise EngineError(
            f"llama.cpp did not finish reading {path} within {TIMEOUT_SECONDS} seconds"
        ) from None
    if result.returncode == 0 and result.stdout.strip() == LOADED:
        return
    if result.returncode < 0:
        name = signal.Signals(-result.returncode).name
        raise ModelFormatError(
            f"{path} crashed llama.cpp's loader ({name}): it is corrupt or of a kind "
            "this engine does not support"
        )
    lines = result.stderr.strip().splitlines()
    raise EngineError(lines[-1] if lines else f"llama.cpp could not load {path}")


def child(path: str) -> None:
    """The probe's child process: load, report, and leave without native teardown."""
    from appliance.engine import native

    code = 0
    try:
        native.load_model_only(Path(path))
        print(LOADED)
    except EngineError as exc:
        print(exc, file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # _exit: the verdict is given; native teardown at exit (GPU runtimes) must
    # not turn a loaded model into a reported crash.
    os._exit(code)
