"""`doctor`'s check of the shipped binaries: llama.cpp's tools and the preload.

On an installed host each release carries them as `releases/V/libexec/NAME`,
verified at install against the bundle's signed metadata, and its signed
manifest (`releases/V/bundle.json`) names each one's sha256. The check finds
the release the running program belongs to (engine/tools.py's
`installed_release`: the folder beside `sys.prefix`), and for every file of
SHIPPED_FILES says whether it is there (a regular file, not a link), usable
(the tools executable, the preload readable), writable by its owner alone, and
still the bytes the manifest signs. In a checkout there is no signed manifest:
it checks that the build cache (`make setup`) holds them, and only warns.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from appliance.bundle.manifest import BINARIES_DIR, MANIFEST, model_pin
from appliance.engine import sha256_file
from appliance.engine.tools import NODUMP_PRELOAD, SHIPPED_FILES, installed_release, tools_dir
from appliance.errors import ApplianceError

NAME = "binaries"  # the check's name in doctor's report


def check_binaries(release: Path | None = None) -> dict[str, Any]:
    """Doctor's check: {"name", "ok" (True, False, or None for a warning), "detail",
    "files": [{"name", "path", "ok", "detail"}, ...]}. `release` defaults to the
    installed release this program runs from; None there means a checkout."""
    release = release or installed_release()
    if release is None:
        return _checkout(tools_dir())
    try:
        signed = model_pin(release / MANIFEST).binaries
    except ApplianceError as exc:
        return _result(False, str(exc), [])
    if not signed:
        return _result(
            False,
            f"release {release.name} ships no binaries (its bundle was built before they "
            "were shipped); upgrade to a newer bundle",
            [],
        )
    files = [
        _installed(release, name, signed.get(f"{BINARIES_DIR}{name}")) for name in SHIPPED_FILES
    ]
    bad = [f for f in files if not f["ok"]]
    if bad:
        return _result(False, "; ".join(f"{f['name']}: {f['detail']}" for f in bad), files)
    return _result(
        True,
        f"{len(files)} files in {release / BINARIES_DIR} match release {release.name}'s "
        "signed manifest",
        files,
    )


def _installed(release: Path, name: str, expected: str | None) -> dict[str, Any]:
    path = release / BINARIES_DIR / name
    problem = _usable(path, name)
    if problem is None:
        if expected is None:
            problem = "not named by the release's signed manifest"
        elif sha256_file(path) != expected:
            problem = "modified: its sha256 is not the one the release's manifest signs"
    return _file(name, path, problem)


def _checkout(folder: Path) -> dict[str, Any]:
    files = [_file(name, folder / name, _usable(folder / name, name)) for name in SHIPPED_FILES]
    bad = [f for f in files if not f["ok"]]
    if bad:
        missing = "; ".join(f"{f['name']}: {f['detail']}" for f in bad)
        return _result(None, f"{missing} (in {folder}); run make setup", files)
    return _result(
        True, f"{len(files)} files built in {folder} (a checkout: not signed, not checked)", files
    )


def _usable(path: Path, name: str) -> str | None:
    """Why `path` cannot serve as the shipped file `name`, or None."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if info.st_mode & 0o022:
        return f"writable by others (mode {stat.S_IMODE(info.st_mode):04o})"
    if name == NODUMP_PRELOAD:
        return None if os.access(path, os.R_OK) else "not readable"
    return None if os.access(path, os.R_OK | os.X_OK) else "not executable"


def _file(name: str, path: Path, problem: str | None) -> dict[str, Any]:
    return {"name": name, "path": str(path), "ok": problem is None, "detail": problem or "ok"}


def _result(ok: bool | None, detail: str, files: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": NAME, "ok": ok, "detail": detail, "files": files}
