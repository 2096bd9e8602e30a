"""`appliance serve` (the service the systemd unit runs) and `appliance service status`."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from appliance.audit import AuditLog, Event, audit_dir
from appliance.cli.auth import add_auth_options
from appliance.cli.generate import add_model_options, open_engine
from appliance.config import appliance_home, ensure_dir
from appliance.errors import ServiceError
from appliance.homestate import check_state
from appliance.policy import active_policy
from appliance.service import (
    SYSTEM,
    Server,
    claim,
    find_service,
    home_socket,
    listen,
    read_marker,
    recover_unanswered,
    require_home,
)
from appliance.textsafe import json_line, printable


def register(commands: Any) -> None:
    serve = commands.add_parser(
        "serve", help="run the appliance service: one model, every user, on a UNIX socket"
    )
    add_model_options(serve)
    serve.add_argument(
        "--socket",
        type=Path,
        metavar="PATH",
        help="where to listen (default: the installer's marker, else HOME/service.sock)",
    )
    serve.set_defaults(run=run_serve)

    service = commands.add_parser("service", help="the running appliance service")
    actions = service.add_subparsers(dest="service_command", metavar="ACTION", required=True)
    status = actions.add_parser("status", help="sessions, the answer queue and the engine")
    add_auth_options(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(run=run_status)


def run_serve(args: argparse.Namespace) -> int:
    home = appliance_home()
    marker = read_marker()
    if marker is not None:
        require_home(marker, home)
    path = args.socket or (marker.socket if marker else home_socket(home))
    policy = active_policy(home)
    claim(ensure_dir(home))
    reason = ["stopped"]

    with contextlib.ExitStack() as stack:
        log = stack.enter_context(AuditLog(audit_dir(home), require_content=policy.require_content))
        check_state(home, log)  # what it reads is what was last signed, or it serves nothing
        recovered = recover_unanswered(log)
        engine, model = stack.enter_context(open_engine(args))
        listener = listen(path)
        stack.callback(_remove, path)
        server = Server(home, policy, log, engine, model, listener)
        details = {
            "policy": policy.name,
            "version": policy.version,
            "sha256": policy.sha256,
            "socket": str(path),
            "recovered": recovered,
        }
        log.record(Event(SYSTEM, "start", "service", details=details))
        log.start_heartbeat(SYSTEM)

        def stop(signum: int, frame: FrameType | None) -> None:
            reason[0] = signal.Signals(signum).name
            server.close_listener()  # serve() returns within its accept timeout

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        print(f"appliance: serving {printable(model)} on {printable(str(path))}", file=sys.stderr)
        server.serve()
        server.stop(reason[0])
    return 0


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def run_status(args: argparse.Namespace) -> int:
    from appliance.cli.client import signed_in_client

    path = find_service(appliance_home())
    if path is None:
        raise ServiceError("no appliance service runs for this home")
    with signed_in_client(args, path) as client:
        status = client.status()
    if args.json:
        print(json_line(status, indent=2))
        return 0
    engine = status.get("engine", {})
    queue = status.get("queue", {})
    running = queue.get("running")
    since = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(status.get("since", 0)))
    lines = [
        f"service   pid {status.get('pid')}, up since {since}, appliance {status.get('appliance')}",
        f"policy    {status.get('policy')}",
        f"engine    {status.get('model')} ({engine.get('quantization')}, "
        f"{engine.get('backend')}, context {engine.get('context')})",
        f"queue     {'answering for ' + str(running['user']) if running else 'idle'}; "
        f"{len(queue.get('waiting', []))} waiting; {queue.get('answered', 0)} answered",
        f"sessions  {len(status.get('sessions', []))} of {status['limits']['max_sessions']}",
    ]
    for session in status.get("sessions", []):
        who = session.get("user") or "(signing in)"
        lines.append(
            f"  {who} ({session.get('role') or '-'}), uid {session.get('peer_uid')} "
            f"pid {session.get('peer_pid')}{', answering' if session.get('answering') else ''}"
        )
    print("\n".join(printable(line) for line in lines))
    return 0
