"""Mutual TLS to the GPU servers on the closed network: the endpoints and their contexts.

Each endpoint is reached over TLS 1.3 only, with this appliance's client
certificate, and trusted in one of two ways (both may be given):

- `ca`: the site's CA certificate, itself pinned by the sha256 of its DER
  bytes (a swapped file is refused). It is the only trust anchor: the
  system's store is never loaded. OpenSSL verifies the chain, the validity
  dates and that the certificate names `server_name`.
- `fingerprint`: the sha256 of the server certificate's DER bytes, compared
  in constant time right after the handshake, before any byte of a request
  is sent. With no CA the chain cannot be verified, so the pin is the trust:
  it names the one certificate accepted, which is stronger than any name in
  it, so the name is not checked then (the validity dates are). With a CA
  too, both checks apply.

The client key is read once, by its opened descriptor, and only if it is a
regular file no other user may read or write (as identity files). OpenSSL
takes a certificate chain and key only from files, so the checked bytes are
handed to it through anonymous memory files (memfd), never through the disk,
argv, the environment or a log. Certificates renewed on disk are read when
the engine is next started.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import hmac
import ipaddress
import os
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from appliance.errors import ConfigError, EngineError, IntegrityError
from appliance.fsutil import read_limited, read_private

PEM_LIMIT = 1 << 20  # a certificate chain or key file; real ones are a few KiB
_HEX64 = re.compile(r"[0-9a-f]{64}")
_DNS = re.compile(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+")
_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    """One OpenAI-compatible server (vLLM, SGLang, llama-server) on the closed network.

    `host` is an IP address, never a name: a name would need a resolver, which
    is traffic the appliance does not make. `server_name` is the name its
    certificate must carry (default: `host`); `ca` with `ca_sha256`, or
    `fingerprint` (the server certificate's DER sha256), or both, say what
    proves it; `certificate` and `key` are this appliance's client certificate
    chain and private key (PEM). `model` is the id the server answers to (the
    OpenAI "model" field). `max_level` and `interface` are carried for the
    caller; the engine does not use them.
    """

    name: str
    host: str
    port: int
    server_name: str = ""
    ca: Path | None = None
    ca_sha256: str | None = None
    fingerprint: str | None = None
    certificate: Path
    key: Path
    model: str
    max_level: str
    interface: str | None = None

    def __post_init__(self) -> None:
        def fail(reason: str) -> ConfigError:
            return ConfigError(f"remote endpoint {self.name!r}: {reason}")

        if not self.name or not self.name.isprintable():
            raise ConfigError("a remote endpoint needs a name of printable characters")
        try:
            address = ipaddress.ip_address(self.host)
        except ValueError:
            raise fail("host must be an IP address (a name would need a resolver)") from None
        object.__setattr__(self, "host", str(address))
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise fail("port must be a number")
        if not 1 <= self.port <= 65535:
            raise fail("port must be from 1 to 65535")
        if not self.model or not self.model.isprintable():
            raise fail("model must be the id the server answers to")
        server_name = self.server_name or self.host
        if not (_DNS.fullmatch(server_name) or _is_address(server_name)):
            raise fail("server_name must be a DNS name or an IP address")
        object.__setattr__(self, "server_name", server_name)
        for field in ("ca", "certificate", "key"):
            value = getattr(self, field)
            if value is not None:
                object.__setattr__(self, field, Path(value))
        for field in ("ca_sha256", "fingerprint"):
            value = getattr(self, field)
            if value is None:
                continue
            digest = value.replace(":", "").lower() if isinstance(value, str) else ""
            if not _HEX64.fullmatch(digest):
                raise fail(f"{field} must be a sha256 in hex (64 digits)")
            object.__setattr__(self, field, digest)
        if (self.ca is None) != (self.ca_sha256 is None):
            raise fail("ca and ca_sha256 go together: the CA file is pinned by its sha256")
        if self.ca is None and self.fingerprint is None:
            raise fail("give the site's CA (ca, ca_sha256) or the server certificate's fingerprint")

    @property
    def label(self) -> str:
        """How messages name it: `gpu-a (10.0.0.5:8443)`."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.name} ({host}:{self.port})"


def tls_context(endpoint: Endpoint) -> ssl.SSLContext:
    """The client context for `endpoint`: TLS 1.3 only, its pinned CA as the only trust
    anchor (none with a fingerprint alone: `check_peer` is then the trust), this
    appliance's certificate and key. One-line errors: InputError for a missing or
    unprotected file, IntegrityError for a CA file that is not the pinned one,
    ConfigError for a file that is not what it should be."""
    chain = _certificates(endpoint.certificate, "the client certificate")
    key = _private_key(endpoint.key)
    if chain[0].public_key().public_bytes(*_SPKI) != key.public_key().public_bytes(*_SPKI):
        raise ConfigError(
            f"the client key {endpoint.key} does not belong to the certificate "
            f"{endpoint.certificate}"
        )
    expiry = _expiry(chain[0], "the client certificate")
    if expiry:
        raise ConfigError(f"{expiry} ({endpoint.certificate})")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no trust anchors yet
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    if endpoint.ca is not None and endpoint.ca_sha256 is not None:
        context.load_verify_locations(
            cadata=_pinned_ca(endpoint.name, endpoint.ca, endpoint.ca_sha256)
        )
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        # A self-signed or privately issued certificate pinned by its digest:
        # OpenSSL cannot verify a chain without an anchor; check_peer does the work.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    certificates = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with _memory_file(certificates) as cert_path, _memory_file(private) as key_path:
        try:
            context.load_cert_chain(cert_path, key_path, password=b"")
        except ssl.SSLError as exc:
            raise ConfigError(
                f"the client certificate {endpoint.certificate} cannot be used: "
                f"{exc.reason or exc.strerror}"
            ) from None
    return context


def check_peer(endpoint: Endpoint, certificate: bytes | None) -> str:
    """The server certificate's DER sha256, once it passes the endpoint's pin and (with
    no CA, which would have checked them) its validity dates; EngineError otherwise.
    Called right after the handshake, before a request is sent."""
    if not certificate:
        raise EngineError(handshake_failed(endpoint, "the server presented no certificate"))
    digest = hashlib.sha256(certificate).hexdigest()
    pinned = endpoint.fingerprint
    if pinned is not None and not hmac.compare_digest(digest.encode(), pinned.encode()):
        raise EngineError(
            handshake_failed(
                endpoint,
                f"the server's certificate is not the pinned one (it presented sha256 {digest})",
            )
        )
    if endpoint.ca is None:
        try:
            parsed = x509.load_der_x509_certificate(certificate)
        except ValueError:
            raise EngineError(
                handshake_failed(endpoint, "the server's certificate cannot be read")
            ) from None
        expiry = _expiry(parsed, "the server's certificate")
        if expiry:
            raise EngineError(handshake_failed(endpoint, expiry))
    return digest


def handshake_failed(endpoint: Endpoint, reason: str) -> str:
    return f"{endpoint.label}: the TLS handshake failed: {reason}"


# OpenSSL's verification results (X509_V_ERR_*), as operators understand them.
_VERIFY = {
    2: "unknown CA",
    18: "unknown CA: the certificate is self-signed",
    19: "unknown CA",
    20: "unknown CA",
    21: "unknown CA",
    9: "the server's certificate is not yet valid",
    10: "the server's certificate has expired",
    23: "the server's certificate was revoked",
    26: "the server's certificate is not for a TLS server",
}
_ALERT = re.compile(r"(?:SSLV3|TLSV1|TLSV13)_ALERT_([A-Z0-9_]+)")
# Alerts a server sends when it does not accept the client's certificate.
_CLIENT_REFUSED = {
    "CERTIFICATE_REQUIRED",
    "BAD_CERTIFICATE",
    "UNKNOWN_CA",
    "CERTIFICATE_EXPIRED",
    "CERTIFICATE_REVOKED",
    "CERTIFICATE_UNKNOWN",
    "UNSUPPORTED_CERTIFICATE",
    "ACCESS_DENIED",
    "DECRYPT_ERROR",
}
_NOT_TLS = {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"}


def server_alert(exc: BaseException) -> str | None:
    """The alert a TLS error carries from the server (`unknown ca`), if any."""
    if not isinstance(exc, ssl.SSLError):
        return None
    found = _ALERT.search(str(exc.reason or exc))
    return found.group(1) if found else None


def describe_tls_error(endpoint: Endpoint, exc: BaseException) -> str:
    """Why a handshake failed, in words (the part after `the TLS handshake failed:`)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = exc.verify_code
        if code in (62, 64):  # X509_V_ERR_HOSTNAME_MISMATCH, _IP_ADDRESS_MISMATCH
            detail = f"name mismatch: the certificate is not for {endpoint.server_name!r}"
        else:
            detail = _VERIFY.get(code) or (exc.verify_message or "unknown reason").rstrip(".")
        return f"certificate verify failed ({detail})"
    alert = server_alert(exc)
    if alert is not None:
        words = alert.lower().replace("_", " ")
        if alert in _CLIENT_REFUSED:
            return f"the server refused the client certificate ({words})"
        if alert == "PROTOCOL_VERSION":
            return "the server does not offer TLS 1.3"
        return f"the server refused the handshake ({words})"
    if isinstance(exc, ssl.SSLError):
        reason = str(exc.reason or "")
        if reason in _NOT_TLS or reason.startswith("HTTP"):
            return "the server does not speak TLS (plain HTTP?)"
        if reason == "UNSUPPORTED_PROTOCOL":
            return "the server does not offer TLS 1.3"
        if isinstance(exc, ssl.SSLEOFError) or reason == "UNEXPECTED_EOF_WHILE_READING":
            return "the server closed the connection"
        return " ".join(str(reason or exc).lower().replace("_", " ").split())
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, ConnectionError):
        return "the server closed the connection"
    if isinstance(exc, OSError):
        return (exc.strerror or str(exc)).lower()
    return type(exc).__name__


def _pinned_ca(name: str, path: Path, pinned: str) -> bytes:
    """The CA certificate's DER bytes, once they match the pinned sha256."""
    certificates = _certificates(path, "the CA certificate")
    if len(certificates) != 1:
        raise ConfigError(f"the CA file {path} must hold exactly one certificate")
    der = certificates[0].public_bytes(serialization.Encoding.DER)
    digest = hashlib.sha256(der).hexdigest()
    if not hmac.compare_digest(digest.encode(), pinned.encode()):
        raise IntegrityError(
            f"the CA certificate {path} is not the one remote endpoint {name!r} pins "
            f"(its sha256 is {digest}, the pin {pinned})"
        )
    return der


def _certificates(path: Path, what: str) -> list[x509.Certificate]:
    data = read_limited(path, PEM_LIMIT, what)
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        certificates = []
    if not certificates:
        raise ConfigError(f"{what} {path} is not a PEM certificate")
    return certificates


def _private_key(path: Path) -> PrivateKeyTypes:
    data = read_private(path, PEM_LIMIT, "the client key")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ConfigError(
            f"the client key {path} is encrypted; it must be stored unencrypted, "
            "protected by its file mode (0600)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(f"the client key {path} is not a PEM private key") from None


def _expiry(certificate: x509.Certificate, what: str) -> str | None:
    """Why `certificate` is not valid now, or None."""
    now = datetime.datetime.now(datetime.UTC)
    if now < certificate.not_valid_before_utc:
        return f"{what} is not valid before {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
    if now > certificate.not_valid_after_utc:
        return f"{what} expired on {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    return None


@contextlib.contextmanager
def _memory_file(data: bytes) -> Iterator[str]:
    """A path OpenSSL can open to read `data`, in anonymous memory only."""
    descriptor = os.memfd_create("appliance-tls", os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view) :]
        yield f"/proc/self/fd/{descriptor}"
    finally:
        os.close(descriptor)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
