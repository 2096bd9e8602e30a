"""The appliance service: one process that owns the home and serves every user.

`server` runs the session pipeline for each connection, `client` is what the
commands use to reach it, `protocol` is the wire format
(docs/formats/protocol.md) and `endpoint` says where the service listens and
whether a command must use it. Public API; other modules import only this.
"""

from __future__ import annotations

from appliance.service.accounts import RemoteAccounts
from appliance.service.client import Answer, Client
from appliance.service.documents import RemoteDocuments
from appliance.service.embedded import embedded_service
from appliance.service.endpoint import (
    MARKER,
    as_home_owner,
    claim,
    find_service,
    holder,
    home_socket,
    listen,
    read_marker,
    require_home,
)
from appliance.service.server import SYSTEM, Server, recover_unanswered

__all__ = [
    "MARKER",
    "SYSTEM",
    "Answer",
    "Client",
    "RemoteAccounts",
    "RemoteDocuments",
    "Server",
    "as_home_owner",
    "claim",
    "embedded_service",
    "find_service",
    "holder",
    "home_socket",
    "listen",
    "read_marker",
    "recover_unanswered",
    "require_home",
]
