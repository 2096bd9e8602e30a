"""`appliance ui`: the terminal UI, a client of the appliance service.

Where a service owns the home the UI connects to it. Elsewhere (hosts no
installer configured) it starts the service in its own process first, on a
private socket, with the model loaded before anything is drawn.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from appliance.audit import Checkpoint
from appliance.cli.client import refuse_local_options
from appliance.cli.generate import add_model_options
from appliance.cli.serve import serving_home
from appliance.config import appliance_home
from appliance.service import SYSTEM, embedded_service, find_service
from appliance.session import check_airgap


def register(commands: Any) -> None:
    ui = commands.add_parser("ui", help="the terminal UI (sign in, chat, audit)")
    add_model_options(ui)
    ui.add_argument(
        "--trusted-checkpoint",
        type=Path,
        metavar="FILE",
        help="an officer's last verified checkpoint: F2 checks the log extends it",
    )
    ui.add_argument(
        "--exports",
        type=Path,
        metavar="DIR",
        help="where drafts (F9) and audit exports (F3) go "
        "(default: the site's folder, else ~/appliance-exports)",
    )
    ui.set_defaults(run=run_ui)


def run_ui(args: argparse.Namespace) -> int:
    from appliance.tui import AppContext, ApplianceApp  # Textual only when the UI runs

    trusted = None
    if args.trusted_checkpoint is not None:
        trusted = Checkpoint.read_file(args.trusted_checkpoint).to_file_bytes().decode()
    with service_for(args) as path:
        context = AppContext(path, trusted=trusted)
        if args.exports is not None:
            context.exports = args.exports
        ApplianceApp(context).run()
    return 0


@contextlib.contextmanager
def service_for(args: argparse.Namespace) -> Iterator[Path]:
    """The home's service, or one started in this process where none runs."""
    home = appliance_home()
    running = find_service(home)
    if running is not None:
        refuse_local_options(args)
        yield running
        return
    with serving_home(args, home) as (policy, log, engine, remote, model, _):
        check_airgap(home, policy, SYSTEM, log)  # refused before anything is drawn
        log.start_heartbeat(SYSTEM)
        with embedded_service(home, policy, log, engine, model, remote) as path:
            yield path
