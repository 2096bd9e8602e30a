"""`appliance serve` (the service the systemd unit runs) and `appliance service status`."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from appliance.audit import AuditLog, Event, audit_dir
from appliance.cli.auth import add_auth_options
from appliance.cli.generate import add_model_options, open_engines
from appliance.config import appliance_home, ensure_dir
from appliance.engine import ChatEngine
from appliance.engine.remote import RemoteEngine
from appliance.errors import ServiceError, UsageError
from appliance.homestate import check_state
from appliance.policy import Policy, active_policy
from appliance.service import (
    SYSTEM,
    Server,
    claim,
    find_service,
    holder,
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
    serve.add_argument(
        "--background",
        action="store_true",
        help="start it detached (a host no installer configured; log: HOME/serve.log)",
    )
    serve.set_defaults(run=run_serve)

    service = commands.add_parser("service", help="the running appliance service")
    actions = service.add_subparsers(dest="service_command", metavar="ACTION", required=True)
    status = actions.add_parser("status", help="sessions, the answer queue and the engine")
    add_auth_options(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(run=run_status)
    stop = actions.add_parser("stop", help="stop a service started with 'serve --background'")
    stop.set_defaults(run=run_stop)


def run_serve(args: argparse.Namespace) -> int:
    home = appliance_home()
    marker = read_marker()
    if args.background:
        return _start_background(home, marker is not None)
    if marker is not None:
        require_home(marker, home)
    path = args.socket or (marker.socket if marker else home_socket(home))
    reason = ["stopped"]

    with serving_home(args, home) as (policy, log, engine, remote, model, recovered):
        listener = listen(path)
        try:
            server = Server(home, policy, log, engine, model, listener, remote)
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
            print(
                f"appliance: serving {printable(model)} on {printable(str(path))}", file=sys.stderr
            )
            server.serve()
            server.stop(reason[0])
        finally:
            _remove(path)
    return 0


@contextlib.contextmanager
def serving_home(
    args: argparse.Namespace, home: Path
) -> Iterator[tuple[Policy, AuditLog, ChatEngine, RemoteEngine | None, str, int]]:
    """What a service needs, opened and checked: the home held by this process alone,
    its policy, its audit log (the home as last signed, every `ask` a crash left open
    recorded as failed) and its model. Yields those and how many asks were recovered."""
    policy = active_policy(home)
    claim(ensure_dir(home))
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(AuditLog(audit_dir(home), require_content=policy.require_content))
        check_state(home, log)  # what it reads is what was last signed, or it serves nothing
        recovered = recover_unanswered(log)
        engine, remote, model = stack.enter_context(open_engines(args, policy))

        def restarted(reason: str) -> None:  # the answers it held have failed, one line each
            details = {"reason": reason, "backend": engine.settings.backend}
            log.record(Event(SYSTEM, "engine_restart", model, "failed", details=details))

        engine.on_restart = restarted
        yield policy, log, engine, remote, model, recovered


def _start_background(home: Path, installed: bool) -> int:
    """`serve` again, detached, its output in HOME/serve.log; back once it serves."""
    if installed:
        raise UsageError("on this host the service runs under systemd: systemctl start appliance")
    if find_service(home) is not None:
        print(f"appliance: a service already serves {printable(str(home))}", file=sys.stderr)
        return 0
    log_path = ensure_dir(home) / "serve.log"
    command = [sys.executable, "-m", "appliance", *(a for a in sys.argv[1:] if a != "--background")]
    with open(log_path, "ab") as log_file:
        child = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,  # outlives this command and its terminal
        )
    while find_service(home) is None:
        if child.poll() is not None:
            lines = log_path.read_text(errors="replace").strip().splitlines() or ["no output"]
            raise ServiceError(f"the service did not start: {printable(lines[-1])}")
        time.sleep(0.2)
    print(f"appliance: serving {printable(str(home))} (pid {child.pid}; log {log_path})")
    return 0


def run_stop(args: argparse.Namespace) -> int:
    home = appliance_home()
    if read_marker() is not None:
        raise UsageError("on this host the service runs under systemd: systemctl stop appliance")
    pid = holder(home)
    if pid is None:
        raise ServiceError("no appliance service runs for this home")
    os.kill(pid, signal.SIGTERM)  # it drains: a running answer may finish
    while holder(home) == pid:
        time.sleep(0.2)
    print(f"appliance: the service on {printable(str(home))} stopped")
    return 0


def _answering(running: list[dict[str, Any]], slots: int) -> str:
    if not running:
        return "idle"
    users = ", ".join(str(job.get("user")) for job in running)
    return f"answering {len(running)} of {slots} at once ({users})"


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
    running = queue.get("running") or []
    since = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(status.get("since", 0)))
    lines = [
        f"service   pid {status.get('pid')}, up since {since}, appliance {status.get('appliance')}",
        f"policy    {status.get('policy')}",
        f"engine    {status.get('model')} ({engine.get('quantization')}, "
        f"{engine.get('backend')}, context {engine.get('context')})",
        f"adapters  {', '.join(engine.get('adapters') or []) or 'none'}",
        f"queue     {_answering(running, engine.get('slots', 1))}; "
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
