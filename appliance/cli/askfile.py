"""`ask --file` and `chat --file`: one file the user names grounds the answers.

The command reads the file itself, as `docs add` does: a regular file, its
size checked before a byte is read, one line when it cannot. In-process it is
parsed, labelled and chunked by `documents.onefile` (this process hardened
first: it holds the file); on a service host it goes in the upload parts of
`docs add` and each `ask` names it by size and sha256. It joins no collection
and nothing of it is written anywhere.
"""

from __future__ import annotations

import argparse
import os
import stat
from pathlib import Path
from typing import Any

from appliance.config import appliance_home
from appliance.documents.onefile import OneFile, read_file
from appliance.errors import DocumentError, InputError, UsageError
from appliance.policy import active_policy
from appliance.seal import harden_process
from appliance.service import Client, RemoteDocuments
from appliance.session import Session

MAX_READ = 1 << 30  # the most any policy takes (documents.max_file_mb is at most 1024)


def add_file_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--file",
        type=Path,
        metavar="PATH",
        help="answer from this one file (HWP/HWPX, PDF, DOCX, text) without adding it",
    )


def check_file_options(args: argparse.Namespace) -> None:
    if args.file is not None and args.docs:
        raise UsageError("--file asks about one file and --docs about your documents: give one")


def load_file(args: argparse.Namespace, *, in_process: bool) -> bytes | None:
    """The bytes of --file, if given: within the policy's size in-process, else within
    the most any policy takes (the service applies its own)."""
    if args.file is None:
        return None
    harden_process()  # this process is about to hold the file
    limit = active_policy(appliance_home()).documents.max_file_bytes if in_process else MAX_READ
    return read_named(args.file, limit)


def read_named(path: Path, limit: int) -> bytes:
    """A regular file's bytes, refused (one sentence) above `limit` before reading."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise InputError(f"cannot read the document {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"the document {path} is not a regular file")
        if info.st_size > limit:
            raise _too_large(path, limit)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        try:
            data = handle.read(limit + 1)
        except OSError as exc:
            raise InputError(f"cannot read the document {path}: {exc.strerror}") from None
    if len(data) > limit:  # it grew while being read
        raise _too_large(path, limit)
    return data


def _too_large(path: Path, limit: int) -> DocumentError:
    return DocumentError(
        f"{path.name} is larger than the {limit >> 20} MiB a document may be",
        code="too_large",
        name=path.name,
        most_mib=limit >> 20,
    )


def open_file(args: argparse.Namespace, session: Session, data: bytes | None) -> OneFile | None:
    """In-process: the file read for this session's questions (audited `doc_ask`)."""
    if data is None:
        return None
    session.check_still_allowed()
    return read_file(
        args.file.name,
        data,
        policy=session.policy,
        principal=session.principal,
        log=session.audit,
        level=session.level,
    )


def file_fields(client: Client, path: Path | None, data: bytes | None) -> dict[str, Any]:
    """Through the service: the file uploaded on this connection, and the `ask` fields
    that name it (each ask uses the upload once, so a chat sends it for every turn)."""
    if path is None or data is None:
        return {}
    sent = RemoteDocuments(client).upload(data)
    return {"file": path.name, "file_size": sent["size"], "file_sha256": sent["sha256"]}
