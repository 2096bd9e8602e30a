"""`appliance bundle init|build|verify|rotate`: the build station's commands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from appliance import adapters, seal
from appliance.bundle import repository
from appliance.bundle.build import BuildRequest, build
from appliance.bundle.verify import verify_bundle
from appliance.cli.passphrase import add_passphrase_option, read_secret
from appliance.cli.progress import byte_progress
from appliance.engine import sha256_file
from appliance.engine.compare import EVALUATION_TEXTS
from appliance.engine.quantize import FILE_TYPES
from appliance.errors import UsageError
from appliance.fsutil import read_limited

PROMPT = "Passphrase of the bundle signing keys"


def register(commands: Any) -> None:
    group = commands.add_parser("bundle", help="signed offline bundles (build station)")
    sub = group.add_subparsers(dest="bundle_command", metavar="ACTION", required=True)

    init = sub.add_parser("init", help="create the signing keys and root.json (once)")
    init.add_argument("--out", type=Path, required=True, metavar="DIR")
    add_passphrase_option(init, "that protects the new keys")
    init.set_defaults(run=run_init)

    builder = sub.add_parser("build", help="build NAME.bundle from a model, a policy and wheels")
    builder.add_argument("--model", type=Path, required=True, metavar="SRC.gguf")
    builder.add_argument(
        "--quantize",
        choices=FILE_TYPES,
        metavar="TYPE",
        help=f"quantize first ({', '.join(FILE_TYPES)})",
    )
    builder.add_argument(
        "--report-text",
        action="append",
        metavar="FILE",
        help="evaluation text for the quantized model's report (repeatable; "
        f"default: the shipped {' and '.join(EVALUATION_TEXTS)})",
    )
    builder.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="FILE[:NAME]",
        help="a LoRA adapter (GGUF) for the bundle's model, sealed and shipped with it "
        "(repeatable; NAME, as policies name it, defaults to the file's stem)",
    )
    builder.add_argument("--policy", type=Path, required=True, metavar="FILE")
    builder.add_argument(
        "--recipient",
        action="append",
        default=[],
        metavar="SITE_PUB",
        help="the site's apr1... recipient (repeatable)",
    )
    builder.add_argument(
        "--signing-key",
        type=Path,
        required=True,
        metavar="KEY",
        help="release.key in the directory made by 'bundle init'",
    )
    builder.add_argument("--version", dest="release", required=True, metavar="V")
    builder.add_argument("--out", type=Path, required=True, metavar="NAME.bundle")
    builder.add_argument(
        "--wheelhouse",
        type=Path,
        metavar="DIR",
        help="prepared wheels (default: collect them with pip)",
    )
    builder.add_argument(
        "--tools",
        type=Path,
        metavar="DIR",
        help="the built llama.cpp tools and preload the bundle ships (default: the cache "
        "'make setup' fills, python -m appliance.engine.tools path)",
    )
    builder.add_argument(
        "--timestamp-days",
        type=int,
        default=30,
        metavar="N",
        help="days until the bundle's timestamp expires (default 30)",
    )
    add_passphrase_option(builder, "of the signing keys")
    builder.set_defaults(run=run_build)

    verify = sub.add_parser("verify", help="check a bundle against a root, extracting nothing")
    verify.add_argument("bundle", type=Path, metavar="NAME.bundle")
    verify.add_argument("--trust", type=Path, required=True, metavar="root.json")
    verify.add_argument("--json", action="store_true", help="machine-readable output")
    verify.set_defaults(run=run_verify)

    rotate = sub.add_parser("rotate", help="replace the root or release key (revokes the old)")
    rotate.add_argument("--keys", type=Path, required=True, metavar="DIR")
    rotate.add_argument("--role", choices=("root", "release"), required=True)
    add_passphrase_option(rotate, "of the signing keys")
    rotate.set_defaults(run=run_rotate)


def run_init(args: argparse.Namespace) -> int:
    passphrase = read_secret(args.passphrase_file, PROMPT, confirm=True)
    root = repository.init(args.out, passphrase)
    print(f"Signing keys and root.json written to {args.out}. Pin root.json on each host;")
    print(f"its fingerprint, to compare out of band: {repository.root_fingerprint(root)}")
    return 0


def run_build(args: argparse.Namespace) -> int:
    request = BuildRequest(
        model=args.model,
        policy=args.policy,
        recipients=[seal.Recipient.parse(text) for text in args.recipient],
        signing_key=args.signing_key,
        passphrase=read_secret(args.passphrase_file, PROMPT),
        release=args.release,
        out=args.out,
        quantize=args.quantize,
        report_texts=tuple(args.report_text or EVALUATION_TEXTS),
        wheelhouse=args.wheelhouse,
        tools=args.tools,
        timestamp_days=args.timestamp_days,
        adapters=tuple(adapter_spec(text) for text in args.adapter),
    )
    result = build(request, byte_progress)
    if result.quantized is not None:
        print(f"quantized: {result.quantized.describe()}")
        if result.quantized.requantized:
            print("warning: the source was already quantized; quality is lost twice")
    if result.report is not None:
        print(f"report: {result.report.summary()}")
    print(f"model: {result.content_id} (sealed)")
    for entry in result.adapters:
        print(f"adapter: {entry['name']} (rank {entry['rank']}, sealed) sha256 {entry['sha256']}")
    print(f"bundle: {result.path} {result.size:,} bytes (inputs {result.inputs:,} bytes)")
    print(f"metadata version {result.metadata_version}; sha256 {sha256_file(result.path)}")
    return 0


def adapter_spec(text: str) -> tuple[Path, str]:
    """`FILE[:NAME]` as (file, name); NAME defaults to the file's stem (legal_v2.gguf:
    legal-v2). A colon followed by no valid name is part of the file's path."""
    head, colon, tail = text.rpartition(":")
    if colon and head and adapters.NAME.fullmatch(tail):
        return Path(head), tail
    if colon and head and Path(head).exists() and not Path(text).exists():
        return Path(head), adapters.check_name(tail)  # a name, but not a valid one
    path = Path(text)
    stem = path.name.removesuffix(".gguf").lower().replace("_", "-").replace(".", "-")
    if not adapters.NAME.fullmatch(stem):
        raise UsageError(f"give the adapter {path.name} a name: --adapter FILE:NAME")
    return path, stem


def run_verify(args: argparse.Namespace) -> int:
    root = read_limited(args.trust, repository.MAX_METADATA, "root metadata")
    with verify_bundle(args.bundle, None, root) as verified:
        report = {
            "bundle": str(args.bundle),
            "release": verified.release,
            "metadata_version": verified.metadata_version,
            "files": len(verified.targets),
            "adapters": verified.adapters,
            "sha256": sha256_file(args.bundle),
        }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        shipped = ", ".join(verified.adapters)
        print(
            f"verified: release {report['release']}, {report['files']} signed files, "
            f"metadata version {report['metadata_version']}"
            + (f"; adapters {shipped}" if shipped else "")
        )
    return 0


def run_rotate(args: argparse.Namespace) -> int:
    passphrase = read_secret(args.passphrase_file, PROMPT)
    version = repository.rotate(args.keys, passphrase, args.role)
    print(f"The {args.role} key was replaced; root version {version} revokes the old one.")
    return 0
