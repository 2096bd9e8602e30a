"""`appliance engines list|unit|cert`: the site's GPU servers on the closed network."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from appliance.config import appliance_home, load_home_config
from appliance.errors import UsageError
from appliance.fsutil import atomic_writer
from appliance.policy import active_policy
from appliance.remote_site import DROPIN, render_dropin
from appliance.textsafe import json_line, printable


def register(commands: Any) -> None:
    group = commands.add_parser("engines", help="the GPU servers on the closed network")
    sub = group.add_subparsers(dest="engines_command", metavar="ACTION", required=True)

    listing = sub.add_parser("list", help="the servers [[remote]] in config.toml lists")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(run=run_list)

    unit = sub.add_parser("unit", help=f"print the unit's drop-in for them ({DROPIN})")
    unit.set_defaults(run=run_unit)

    cert = sub.add_parser("cert", help="make this appliance's client key and certificate request")
    cert.add_argument("--name", required=True, help="the name the certificate will carry")
    cert.add_argument("--out", type=Path, required=True, metavar="DIR")
    cert.set_defaults(run=run_cert)


def run_list(args: argparse.Namespace) -> int:
    home = appliance_home()
    remotes = load_home_config(home).remotes
    rules = active_policy(home).remote
    if args.json:
        print(json_line({"allowed": rules.allowed, "remotes": [_shown(r) for r in remotes]}))
        return 0
    if not remotes:
        print("no GPU servers listed ([[remote]] in config.toml)")
    elif not rules.allowed:
        print("the policy allows no remote engine: these are not used")
    for remote in remotes:
        via = f" on {remote['interface']}" if remote["interface"] else ""
        print(
            printable(
                f"{remote['name']:<16} {remote['host']}:{remote['port']}{via}  "
                f"{remote['server_name']}  model {remote['model']}  up to {remote['max_level']}"
            )
        )
    return 0


def run_unit(args: argparse.Namespace) -> int:
    text = render_dropin(load_home_config(appliance_home()).remotes)
    if not text:
        raise UsageError("no GPU servers are listed in config.toml: the unit needs no drop-in")
    print(text, end="")
    return 0


def run_cert(args: argparse.Namespace) -> int:
    """An EC P-256 key (0600, never printed) and a request for the site's CA to sign."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key_path, request_path = args.out / "client.key", args.out / "client.csr"
    for path in (key_path, request_path):
        if path.exists() or path.is_symlink():
            raise UsageError(f"{path} already exists; refusing to overwrite it")
    args.out.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, args.name)])
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(name)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    with atomic_writer(key_path, mode=0o600) as sink:
        os.fchmod(sink.fileno(), 0o600)
        sink.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    with atomic_writer(request_path, mode=0o644) as sink:
        sink.write(request.public_bytes(serialization.Encoding.PEM))
    print(f"key:     {key_path} (0600; it stays on this host)")
    print(f"request: {request_path} (have the site's CA sign it for client authentication)")
    return 0


def _shown(remote: dict[str, Any]) -> dict[str, Any]:
    return {key: str(value) if isinstance(value, Path) else value for key, value in remote.items()}
