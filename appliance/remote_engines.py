"""The site's GPU servers as the service uses them: the listed [[remote]] entries made
endpoints of one remote engine, where the policy allows any.

The egress guard is opened for exactly their addresses and ports before the
first connection; the unit's drop-in (`appliance engines unit`) opens the
kernel's side. The remote model's weights are the server's: the appliance
verifies the server's certificate, never its model (README, IT staff).
"""

from __future__ import annotations

import datetime
import os
import socket
import ssl
from pathlib import Path
from typing import Any

from cryptography import x509

from appliance.config import EngineSettings, GenerationParams, load_home_config
from appliance.engine import Message
from appliance.engine.remote import RemoteEngine
from appliance.engine.tls import Endpoint, tls_context
from appliance.errors import ApplianceError, ConfigError, EngineError, PolicyError
from appliance.policy import Policy
from appliance.policy.egress import allow
from appliance.remote_site import DROPIN, render_dropin
from appliance.service import read_marker


def endpoints_for(remotes: tuple[dict[str, Any], ...], policy: Policy) -> list[Endpoint]:
    """The listed servers, each level one the policy knows."""
    endpoints = []
    for entry in remotes:
        try:
            policy.level(entry["max_level"])
        except PolicyError:
            raise ConfigError(
                f"the GPU server {entry['name']} is listed up to '{entry['max_level']}', "
                f"a level policy {policy.describe()} does not have"
            ) from None
        endpoints.append(Endpoint(**entry))
    return endpoints


def open_remote(
    remotes: tuple[dict[str, Any], ...],
    policy: Policy,
    manifest: str | os.PathLike[str],
    settings: EngineSettings,
    verified: bool,
) -> RemoteEngine | None:
    """One engine over every listed server (None when none are listed or the policy
    allows no remote engine); `manifest` is the local model it formats prompts for."""
    if not remotes or not policy.remote.allowed:
        return None
    endpoints = endpoints_for(remotes, policy)
    allow([(endpoint.host, endpoint.port) for endpoint in endpoints])
    return RemoteEngine(manifest, endpoints, settings, verified=verified)


EXPIRY_WARNING = datetime.timedelta(days=30)


def check_remotes(
    home: Path,
    policy: Policy,
    manifest: str | os.PathLike[str],
    settings: EngineSettings,
    verified: bool,
) -> list[dict[str, Any]]:
    """`doctor`'s checks of the listed servers: the unit's drop-in matches them (on an
    installed host), and each answers one token over mutual TLS with the model it
    is listed for; a certificate that ends within a month is a warning."""
    remotes = load_home_config(home).remotes
    if not remotes or not policy.remote.allowed:
        return []
    checks = [_dropin(remotes)] if read_marker() is not None else []
    try:
        engine = open_remote(remotes, policy, manifest, settings, verified)
        if engine is not None:
            with engine:
                checks += [_probe(engine, endpoint) for endpoint in engine.endpoints]
    except ApplianceError as exc:
        checks.append(_check("remote", False, str(exc)))
    return checks


def _probe(engine: RemoteEngine, endpoint: Endpoint) -> dict[str, Any]:
    name = f"remote {endpoint.name}"
    try:
        generation = engine.chat(
            [Message("user", "ping")],
            GenerationParams(max_tokens=1, temperature=0.0),
            endpoints=[endpoint.name],
        )
        list(generation)
        certificate = server_certificate(endpoint)
    except ApplianceError as exc:
        return _check(name, False, str(exc))
    detail = (
        f"{endpoint.label}: mutual TLS, model {endpoint.model}, one token; "
        f"certificate sha256 {generation.stats.endpoint_certificate}"
    )
    soon = [
        f"{what} ends on {cert.not_valid_after_utc:%Y-%m-%d}"
        for what, cert in (
            ("the server's certificate", certificate),
            ("the client certificate", _first(endpoint.certificate)),
        )
        if cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC) < EXPIRY_WARNING
    ]
    if soon:
        return _check(name, None, f"{detail}; {', '.join(soon)}")
    return _check(name, True, detail)


def server_certificate(endpoint: Endpoint) -> x509.Certificate:
    """The certificate the server presents, over the same mutual TLS as an answer."""
    context = tls_context(endpoint)
    try:
        with (
            socket.create_connection((endpoint.host, endpoint.port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=endpoint.server_name) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as exc:
        raise EngineError(f"{endpoint.label}: {exc}") from None
    if der is None:
        raise EngineError(f"{endpoint.label}: the server sent no certificate")
    return x509.load_der_x509_certificate(der)


def _first(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificates(path.read_bytes())[0]


def _dropin(remotes: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    expected = render_dropin(remotes)
    try:
        found = DROPIN.read_text(encoding="utf-8")
    except OSError:
        found = None
    if found == expected:
        return _check("unit", True, f"{DROPIN} opens exactly the listed GPU servers")
    state = "is missing" if found is None else "does not match config.toml"
    return _check(
        "unit",
        False,
        f"{DROPIN} {state}: write it from `appliance engines unit`, then "
        "`systemctl daemon-reload` and restart the service",
    )


def _check(name: str, ok: bool | None, detail: str) -> dict[str, Any]:
    return {"name": name, "ok": ok, "detail": detail}
