"""`appliance ui`: the terminal UI, opened on a model loaded before anything is drawn."""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

from appliance.audit import Actor, AuditLog, audit_dir
from appliance.cli.auth import local_account
from appliance.cli.generate import add_model_options, check_airgap, open_engine
from appliance.config import appliance_home
from appliance.policy import active_policy


def register(commands: Any) -> None:
    ui = commands.add_parser("ui", help="the terminal UI (sign in, chat, audit)")
    add_model_options(ui)
    ui.set_defaults(run=run_ui)


def run_ui(args: argparse.Namespace) -> int:
    from appliance.tui import AppContext, ApplianceApp  # Textual only when the UI runs

    home = appliance_home()
    policy = active_policy(home)
    system = Actor("appliance", "system")
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(AuditLog(audit_dir(home), require_content=policy.require_content))
        airgap = check_airgap(policy, system, log)
        log.start_heartbeat(system)
        # llama.cpp redirects the process's stdout and stderr while it loads:
        # load before Textual takes the terminal.
        engine, model = stack.enter_context(open_engine(args))
        context = AppContext(home, policy, log, engine, model, airgap, local_account())
        ApplianceApp(context).run()
    return 0
