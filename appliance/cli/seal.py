"""`appliance seal`, `appliance seal inspect`, `appliance unseal`, `appliance keys`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from appliance import catalog, seal
from appliance.cli.passphrase import add_passphrase_option, openers, read_passphrase
from appliance.cli.progress import byte_progress
from appliance.engine import read_gguf, sha256_file
from appliance.errors import UsageError

INSPECT_COMMAND = "seal-inspect"  # `appliance seal inspect FILE` is routed here


def register(commands: Any) -> None:
    sealer = commands.add_parser(
        "seal",
        help="encrypt a model to recipients (or: seal inspect FILE)",
        description="Encrypt IN to OUT for the given recipients and/or a passphrase. "
        "'appliance seal inspect FILE' shows a sealed file's header.",
    )
    sealer.add_argument("input", type=Path, metavar="IN")
    sealer.add_argument("output", type=Path, metavar="OUT")
    sealer.add_argument(
        "--recipient", action="append", default=[], metavar="R", help="apr1... (repeatable)"
    )
    sealer.add_argument(
        "--passphrase", action="store_true", help="also add a passphrase slot (scrypt)"
    )
    add_passphrase_option(sealer, "for the passphrase slot")
    sealer.add_argument(
        "--content-id",
        metavar="ID",
        help="name@release bound into the keys (default: the catalog's, else FILE-STEM@SHA256)",
    )
    sealer.add_argument(
        "--segment-size", type=int, default=seal.DEFAULT_SEGMENT_SIZE, metavar="BYTES"
    )
    sealer.set_defaults(run=run_seal)

    # No help=: argparse then leaves it out of the command list.
    inspect = commands.add_parser(INSPECT_COMMAND, prog="appliance seal inspect")
    inspect.add_argument("path", type=Path, metavar="FILE")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.set_defaults(run=run_inspect)

    unsealer = commands.add_parser(
        "unseal", help="decrypt a sealed file to plaintext (recovery only)"
    )
    unsealer.add_argument("input", type=Path, metavar="IN")
    unsealer.add_argument("output", type=Path, metavar="OUT")
    add_open_options(unsealer)
    unsealer.set_defaults(run=run_unseal)

    keys = commands.add_parser("keys", help="identities for sealed files")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    generate = keys_sub.add_parser("generate", help="create an identity; prints its recipient")
    generate.add_argument("--out", type=Path, required=True, metavar="FILE")
    generate.add_argument(
        "--no-passphrase",
        action="store_true",
        help="store the key unwrapped (for unattended services; file mode 0600)",
    )
    add_passphrase_option(generate, "that wraps the identity")
    generate.set_defaults(run=run_keys_generate)


def add_open_options(parser: argparse.ArgumentParser) -> None:
    """How a command opens a sealed file: identities, or the file's passphrase."""
    parser.add_argument(
        "--identity",
        action="append",
        type=Path,
        metavar="KEYFILE",
        help="identity file (repeatable); without one, the file's passphrase is asked",
    )
    add_passphrase_option(parser, "(of the identity, or of the sealed file)")
    parser.add_argument(
        "--content-id", metavar="ID", help="refuse a sealed file that holds anything else"
    )


def route(argv: list[str]) -> list[str]:
    """`seal inspect FILE` is a sub-action of `seal`, which otherwise takes IN OUT."""
    if argv[:2] == ["seal", "inspect"]:
        return [INSPECT_COMMAND, *argv[2:]]
    return argv


def run_seal(args: argparse.Namespace) -> int:
    recipients: list[seal.Sealer] = [seal.Recipient.parse(text) for text in args.recipient]
    if args.passphrase or (args.passphrase_file and not recipients):
        recipients.append(
            read_passphrase(args.passphrase_file, "Passphrase for the sealed file", confirm=True)
        )
    if not recipients:
        raise UsageError("give at least one --recipient or --passphrase")
    content_id = args.content_id or default_content_id(args.input)
    with byte_progress(f"Sealing {args.input.name}") as progress:
        header = seal.seal_file(
            args.input,
            args.output,
            recipients,
            content_id,
            segment_size=args.segment_size,
            progress=progress,
        )
    print(f"sealed {header.length:,} bytes as {header.content_id} to {args.output}")
    return 0


def default_content_id(path: Path) -> str:
    """The catalog's id@release for a catalogued model, else STEM@first-12-of-sha256.

    A GGUF input is validated first: sealing the wrong file is caught now, not
    when an operator loads it.
    """
    if _starts_with(path, b"GGUF"):
        read_gguf(path)
    digest = sha256_file(path)
    entry = catalog.load_catalog().by_sha256(digest)
    if entry is not None:
        return entry.content_id
    stem = "".join(c if c.isalnum() or c in "._-" else "-" for c in path.stem) or "file"
    return f"{stem[:100]}@{digest[:12]}"


def run_inspect(args: argparse.Namespace) -> int:
    parsed = seal.inspect_file(args.path)
    header = parsed.header
    expected_size = parsed.size + header.payload_size
    actual_size = args.path.stat().st_size
    slots = [_describe_slot(stanza) for stanza in header.stanzas]
    fields = {
        "path": str(args.path),
        "format": "appliance-sealed/v1",
        "suite": header.suite,
        "content_id": header.content_id,
        "length": header.length,
        "segment_size": header.segment_size,
        "segments": header.segment_count,
        "key_slots": slots,
        "header_size": parsed.size,
        "file_size": actual_size,
        "size_consistent": actual_size == expected_size,
        "authenticated": False,
    }
    if args.json:
        print(json.dumps(fields, indent=2))
        return 0
    size_note = (
        "as the header says"
        if fields["size_consistent"]
        else (f"header says {expected_size:,}: truncated or extended")
    )
    rows = [
        ("path", str(args.path)),
        ("format", "appliance-sealed/v1"),
        ("suite", header.suite),
        ("content id", header.content_id),
        ("plaintext", f"{header.length:,} bytes"),
        ("segments", f"{header.segment_count:,} of {header.segment_size:,} bytes"),
        ("key slots", ", ".join(slots)),
        ("file size", f"{actual_size:,} bytes ({size_note})"),
        ("authenticated", "no (inspect reads the header only; opening it needs a key)"),
    ]
    print("\n".join(f"{label:<14} {value}" for label, value in rows))
    return 0


def _describe_slot(stanza: seal.Stanza) -> str:
    if stanza.type == "scrypt" and len(stanza.args) == 2:
        return f"passphrase (scrypt 2^{stanza.args[1]})"
    return stanza.type


def run_unseal(args: argparse.Namespace) -> int:
    if args.output.exists():  # checked before any passphrase is asked for nothing
        raise UsageError(f"{args.output} already exists; refusing to overwrite it")
    keys = openers(args.identity, args.passphrase_file)
    with byte_progress(f"Unsealing {args.input.name}") as progress:
        seal.unseal_file(
            args.input,
            args.output,
            keys,
            expect_content_id=args.content_id,
            progress=progress,
        )
    print(
        f"warning: {args.output} holds the plaintext; delete it once recovery is done",
        file=sys.stderr,
    )
    return 0


def run_keys_generate(args: argparse.Namespace) -> int:
    if args.no_passphrase and args.passphrase_file:
        raise UsageError("--no-passphrase and --passphrase-file exclude each other")
    if args.out.exists():  # checked before any passphrase is asked for nothing
        raise UsageError(f"{args.out} already exists; refusing to overwrite an identity")
    passphrase = None
    if not args.no_passphrase:
        passphrase = read_passphrase(
            args.passphrase_file, "Passphrase to protect the new identity", confirm=True
        )
    identity = seal.Identity.generate()
    seal.write_identity(args.out, identity, passphrase)
    print(f"identity written to {args.out} (mode 0600); its public recipient:", file=sys.stderr)
    print(identity.recipient)
    return 0


def _starts_with(path: Path, magic: bytes) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(magic)) == magic
    except OSError:
        return False  # seal_file reports the unreadable input
