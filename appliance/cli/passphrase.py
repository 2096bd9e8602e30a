"""Passphrases come from the terminal or a file: never argv, never the environment."""

from __future__ import annotations

import argparse
import getpass
import os
from collections.abc import Callable
from pathlib import Path

from appliance.errors import UsageError
from appliance.fsutil import read_private
from appliance.seal import Identity, Opener, Passphrase, read_identity

MAX_PASSPHRASE_FILE = 4096


def add_passphrase_option(parser: argparse.ArgumentParser, purpose: str) -> None:
    parser.add_argument(
        "--passphrase-file",
        metavar="FILE",
        type=Path,
        help=f"read the passphrase {purpose} from FILE (first line) instead of the terminal",
    )


def read_passphrase(file: Path | None, prompt: str, *, confirm: bool = False) -> Passphrase:
    """The passphrase from `file`, else typed (twice with `confirm`) on the terminal."""
    return Passphrase(read_secret(file, prompt, confirm=confirm).encode("utf-8"))


def read_secret(file: Path | None, prompt: str, *, confirm: bool = False) -> str:
    """A passphrase or password: the first line of `file`, else typed on the terminal."""
    if file is not None:
        kind = "password" if "password" in prompt.lower() else "passphrase"
        try:
            return _from_file(file, kind).decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"the file {file} does not hold UTF-8 text") from None
    _require_terminal()
    first = getpass.getpass(f"{prompt}: ")
    if confirm and getpass.getpass(f"{prompt} (again): ") != first:
        raise UsageError("the two entries differ")
    return first


def passphrase_source(file: Path | None, prompt: str) -> Callable[[], Passphrase]:
    """Ask lazily: only files that turn out to be wrapped need a passphrase."""
    return lambda: read_passphrase(file, prompt)


def openers(identity_files: list[Path] | None, passphrase_file: Path | None) -> list[Opener]:
    """What opens a sealed file: the identities given, else its passphrase slot.

    With identities, a passphrase (file or terminal) unlocks wrapped identity
    files; without, it is the sealed file's own passphrase.
    """
    if identity_files:
        identities: list[Identity] = []
        for path in identity_files:
            ask = passphrase_source(passphrase_file, f"Passphrase for the identity {path}")
            identities.append(read_identity(path, ask))
        return list(identities)
    return [read_passphrase(passphrase_file, "Passphrase for the sealed file")]


def _from_file(file: Path, kind: str) -> bytes:
    """The first line of a private file (mode 0600 or stricter), as identities must be."""
    data = read_private(file, MAX_PASSPHRASE_FILE, f"the {kind} file")
    line = data.split(b"\n", 1)[0].removesuffix(b"\r")
    if not line:
        raise UsageError(f"the {kind} file {file} holds an empty {kind}")
    return line


def _require_terminal() -> None:
    """getpass would silently fall back to stdin (echoing); refuse instead."""
    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
    except OSError:
        raise UsageError(
            "no terminal to ask for the passphrase on; give --passphrase-file"
        ) from None
