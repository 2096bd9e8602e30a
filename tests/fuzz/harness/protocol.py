"""Service: the wire protocol a hostile client speaks."""

from __future__ import annotations

import socket

from appliance.errors import UsageError
from appliance.service.protocol import OPS, LineReader, ProtocolError, decode, parse_request
from tests.fuzz.harness.common import refusals


def fuzz_protocol(data: bytes) -> None:
    """Framing (at most 64 KiB a line here), JSON, then the request's fields."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(data[: 256 << 10])
        theirs.shutdown(socket.SHUT_WR)
        reader = LineReader(ours, max_line=64 << 10)
        with refusals(ProtocolError):
            while (line := reader.read()) is not None:
                with refusals(ProtocolError, UsageError):
                    request = parse_request(decode(line))
                    assert request.op in OPS
                    assert set(request.args) <= set(OPS[request.op])
