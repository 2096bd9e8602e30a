"""`appliance models ...`: the catalog, preparing, inspecting and lightweighting models."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from appliance import catalog
from appliance.cli import lightweight
from appliance.cli.progress import byte_progress
from appliance.config import appliance_home
from appliance.engine import ModelInfo, inspect_model
from appliance.engine.report import Report, report_for
from appliance.errors import UsageError
from appliance.service import read_marker
from appliance.textsafe import json_line, printable


def register(commands: Any) -> None:
    group = commands.add_parser("models", help="list, prepare and inspect models")
    sub = group.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    listing = sub.add_parser("list", help="catalogued models and whether they are prepared")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(run=run_list)

    prepare = sub.add_parser("prepare", help="assemble a catalogued model into the home")
    prepare.add_argument("model", nargs="?", help="catalog id (default: the default model)")
    prepare.set_defaults(run=run_prepare)

    inspect = sub.add_parser("inspect", help="validate a GGUF file and describe it")
    inspect.add_argument("path", help="path to a .gguf file")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.set_defaults(run=run_inspect)

    lightweight.register(sub)


def run_list(args: argparse.Namespace) -> int:
    home = appliance_home()
    known = catalog.load_catalog()
    rows = []
    for entry in known.entries.values():
        path = catalog.model_path(entry, home)
        rows.append(
            {
                "id": entry.id,
                "default": entry.id == known.default,
                "name": entry.name,
                "quantization": entry.quantization,
                "context_length": entry.context_length,
                "licence": entry.licence,
                "sha256": entry.sha256,
                "prepared": path.is_file(),
                "path": str(path),
            }
        )
    if args.json:
        print(json_line(rows, indent=2))
        return 0
    for row in rows:
        mark = "*" if row["default"] else " "
        state = "prepared" if row["prepared"] else "not prepared"
        print(f"{mark} {row['id']:<24} {row['quantization']:<8} {state:<13} {row['name']}")
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    home = appliance_home()
    if read_marker() is not None:  # the service's home is no command's to write
        raise UsageError(
            "on an installed host the model comes with the signed release "
            "('appliance upgrade NAME.bundle'), and the service prepares its own"
        )
    known = catalog.load_catalog()
    entry = known.get(args.model) if args.model else known.default_entry
    with byte_progress(f"Preparing {entry.id}") as progress:
        path = catalog.prepare(entry, home, progress)
    print(path)
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    info = inspect_model(args.path)
    # The lightweighting report beside the file, if it measured these very bytes.
    report = report_for(Path(info.path), info.sha256) if info.sha256 else None
    if args.json:
        print(json_line({**info.to_dict(), "report": report and report.to_dict()}, indent=2))
    else:
        print(format_info(info, report))
    return 0


def format_info(info: ModelInfo, report: Report | None = None) -> str:
    context = f"{info.context_length:,} tokens" if info.context_length else "unknown"
    rows = [
        ("path", info.path),
        ("name", info.name),
        ("architecture", info.architecture),
        ("parameters", f"{info.parameters:,}"),
        ("quantization", info.quantization),
        ("context length", context),
        ("file size", f"{info.file_size:,} bytes"),
        ("GGUF version", str(info.gguf_version)),
        ("tensors", str(info.tensor_count)),
        ("chat template", "yes" if info.has_chat_template else "no (plain transcript)"),
        ("sha256", info.sha256 or "not computed"),
        ("report", report.summary() if report else "none (appliance models compare)"),
    ]
    # Name and architecture come from the file: escaped, so they cannot forge lines.
    return "\n".join(f"{label:<15} {printable(str(value))}" for label, value in rows)
