"""The service inside the UI's own process, for hosts no installer configured.

On a development or single-user host nothing runs `appliance serve`, yet the
terminal UI speaks only the service's protocol: it starts the same `Server`
on a socket in a private folder (0700, removed after) and is its client. One
code path for the UI whatever the host; the home's lock keeps a real service
from opening the home meanwhile.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from appliance.audit import AuditLog
from appliance.engine import ChatEngine
from appliance.engine.remote import RemoteEngine
from appliance.policy import Policy
from appliance.service.endpoint import listen
from appliance.service.server import Server


@contextlib.contextmanager
def embedded_service(
    home: Path,
    policy: Policy,
    log: AuditLog,
    engine: ChatEngine,
    model: str,
    remote: RemoteEngine | None = None,
) -> Iterator[Path]:
    """Serve the home from a thread of this process; yields the socket's path."""
    with tempfile.TemporaryDirectory(prefix="appliance-") as private:  # 0700
        path = Path(private) / "service.sock"
        server = Server(home, policy, log, engine, model, listen(path), remote)
        thread = threading.Thread(target=server.serve, name="service", daemon=True)
        thread.start()
        try:
            yield path
        finally:
            server.stop("closed")
            thread.join()
