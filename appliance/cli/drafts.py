"""`ask --save NAME`: where a draft goes and what the user is told.

A draft is a deliberate export: it goes to the user's export folder (the
site's `[exports] folder`, else ~/appliance-exports; `--exports DIR` for one
command), never into the appliance's home, and never over an existing file.
The format comes from the name's suffix. Everything here is checked before
the question is asked, so a bad name costs no answer.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from appliance.config import appliance_home, ensure_dir, export_folder
from appliance.errors import UsageError
from appliance.textsafe import printable

SUFFIXES = {".hwpx": "hwpx", ".docx": "docx", ".md": "md"}


def add_draft_options(parser: argparse.ArgumentParser, *, save: bool) -> None:
    """`ask --save NAME`; `chat`'s `/save NAME`; both take --exports."""
    if save:
        parser.add_argument(
            "--save",
            metavar="NAME",
            help="save the answer as a draft NAME.hwpx, .docx or .md in your export folder, "
            "marked with the answer's classification",
        )
        parser.add_argument(
            "--title", help="with --save: the draft's title (default: the question)"
        )
    parser.add_argument(
        "--exports", type=Path, metavar="DIR", help="where drafts go (default: the site's folder)"
    )


def draft_target(name: str, exports: Path | None, site_folder: str | None) -> tuple[Path, str]:
    """The file a draft will be written to, and its format (from the name's suffix)."""
    if os.sep in name or name in ("", ".", "..") or not name.isprintable():
        raise UsageError(f"a draft takes a file name, not a path: {printable(name)}")
    fmt = SUFFIXES.get(Path(name).suffix.lower())
    if fmt is None:
        raise UsageError(f"a draft's name ends in {', '.join(SUFFIXES)}")
    folder = exports or export_folder(site_folder)
    home = appliance_home().resolve()
    resolved = folder.expanduser().resolve()
    if resolved == home or home in resolved.parents:
        raise UsageError(f"drafts are not written inside the appliance's home ({home})")
    target = ensure_dir(resolved) / name
    if os.path.lexists(target):
        raise UsageError(f"{target} already exists; choose another name")
    return target, fmt


def report_saved(target: Path, result: dict[str, Any]) -> None:
    copy = f", copy {result['copy']}" if result.get("copy") else ""
    print(
        f"draft saved: {target} ({printable(str(result.get('label_name')))}{copy}, "
        f"sha256 {str(result.get('sha256'))[:16]}…)",
        file=sys.stderr,
    )
