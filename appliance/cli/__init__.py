"""The `appliance` command: argument parsing, exit codes, printing.

Every failure a user can cause ends here as one sentence on stderr and the
exit code its error class documents (README, "Exit codes"). Anything else is a
bug: it is reported in one line too, with the traceback only under
APPLIANCE_DEBUG=1.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from appliance import __version__
from appliance.cli import (
    adapters,
    airgap,
    audit,
    backup,
    bundle,
    demo,
    docs,
    doctor,
    engines,
    generate,
    host,
    models,
    policy,
    restore,
    seal,
    serve,
    ui,
    users,
)
from appliance.errors import EXIT_INTERRUPTED, ApplianceError, BlockedError, UsageError
from appliance.policy.egress import EgressDenied, install_guard
from appliance.textsafe import printable

PROG = "appliance"


class Parser(argparse.ArgumentParser):
    """argparse that reports mistakes as an ApplianceError, in one line."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> Parser:
    parser = Parser(
        prog=PROG,
        description="Air-gapped LLM appliance: local models, no network, ever.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True
    generate.register(commands)
    models.register(commands)
    adapters.register(commands)
    engines.register(commands)
    seal.register(commands)
    audit.register(commands)
    backup.register(commands)
    policy.register(commands)
    airgap.register(commands)
    users.register(commands)
    ui.register(commands)
    demo.register(commands)
    bundle.register(commands)
    host.register(commands)
    doctor.register(commands)
    serve.register(commands)
    restore.register(commands)
    docs.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    install_guard()  # before anything runs: no command of the appliance uses the network
    try:
        args = build_parser().parse_args(seal.route(list(sys.argv[1:] if argv is None else argv)))
        return int(args.run(args) or 0)
    except ApplianceError as exc:
        return _fail(str(exc), exc.exit_code)
    except EgressDenied as exc:
        return _fail(str(exc), BlockedError.exit_code)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`appliance ask ... | head`): stop quietly.
        _silence_stdout()
        return 0
    except Exception as exc:  # a bug, not a user error: still one line by default
        if os.environ.get("APPLIANCE_DEBUG") == "1":
            traceback.print_exc()
        message = f"internal error ({type(exc).__name__}: {exc}); rerun with APPLIANCE_DEBUG=1"
        return _fail(message, ApplianceError.exit_code)


def _fail(message: str, code: int) -> int:
    # Messages quote what users typed and what files hold: escaped, one line, no codes.
    print(f"{PROG}: {printable(message)}", file=sys.stderr)
    return code


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
