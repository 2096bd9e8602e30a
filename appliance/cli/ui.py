"""`appliance ui`: the terminal UI, opened on a model loaded before anything is drawn."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from appliance.audit import Actor, AuditLog, audit_dir
from appliance.cli.auth import local_account
from appliance.cli.generate import add_model_options, open_engine
from appliance.config import appliance_home, load_home_config
from appliance.errors import ServiceError
from appliance.policy import active_policy
from appliance.service import find_service
from appliance.session import check_airgap

if TYPE_CHECKING:
    from appliance.tui import AppContext


def register(commands: Any) -> None:
    ui = commands.add_parser("ui", help="the terminal UI (sign in, chat, audit)")
    add_model_options(ui)
    ui.set_defaults(run=run_ui)


def run_ui(args: argparse.Namespace) -> int:
    from appliance.tui import ApplianceApp  # Textual only when the UI runs

    service = find_service(appliance_home())
    if service is not None:  # never a second copy of the home's model, or around its service
        raise ServiceError(
            f"the appliance service at {service} owns this home, and the terminal UI does "
            "not run as its client yet; use 'appliance chat' there"
        )

    with open_context(args) as context:
        ApplianceApp(context).run()
    return 0


@contextlib.contextmanager
def open_context(args: argparse.Namespace) -> Iterator[AppContext]:
    """The home's policy, audit log and model, opened and checked before anything is drawn."""
    from appliance.tui import AppContext

    home = appliance_home()
    policy = active_policy(home)
    system = Actor("appliance", "system")
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(AuditLog(audit_dir(home), require_content=policy.require_content))
        airgap = check_airgap(home, policy, system, log)
        log.start_heartbeat(system)
        # llama.cpp redirects the process's stdout and stderr while it loads:
        # load before Textual takes the terminal.
        engine, model = stack.enter_context(open_engine(args))
        config = load_home_config(home)
        yield AppContext(
            home,
            policy,
            log,
            engine,
            model,
            airgap,
            local_account(),
            language=config.language,
            demo=config.demo,
            keymap=config.keymap,
        )
