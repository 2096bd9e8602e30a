"""Mutual TLS in tests and benchmarks: a test PKI, a llama-server on loopback TCP,
a TLS terminator in front of it, and upstreams that misbehave.

The certificates are made with `cryptography`'s x509 builder (EC P-256); the
terminator is Python's ssl on the server side (TLS 1.3, client certificates
required), one thread per connection copying bytes both ways.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import http.client
import ipaddress
import os
import select
import signal
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.config import EngineSettings
from appliance.engine.server_process import server_arguments
from appliance.engine.tools import llama_tool

DAY = datetime.timedelta(days=1)
READY_SECONDS = 120.0


@dataclass(frozen=True)
class Issued:
    certificate: Path
    key: Path
    der: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.der).hexdigest()


class Authority:
    def __init__(self, directory: Path, name: str) -> None:
        self.directory = directory
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - DAY)
            .not_valid_after(now + 30 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.path = directory / f"{name}.pem"
        self.path.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))
        self.sha256 = hashlib.sha256(
            self.certificate.public_bytes(serialization.Encoding.DER)
        ).hexdigest()

    def issue(
        self,
        name: str,
        *,
        client: bool = False,
        names: tuple[str, ...] = (),
        expired: bool = False,
    ) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        start, end = (now - 30 * DAY, now - DAY) if expired else (now - DAY, now + 30 * DAY)
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if names:
            alternatives: list[x509.GeneralName] = []
            for entry in names:
                try:
                    alternatives.append(x509.IPAddress(ipaddress.ip_address(entry)))
                except ValueError:
                    alternatives.append(x509.DNSName(entry))
            builder = builder.add_extension(
                x509.SubjectAlternativeName(alternatives), critical=False
            )
        certificate = builder.sign(self.key, hashes.SHA256())
        cert_path = self.directory / f"{name}.crt"
        key_path = self.directory / f"{name}.key"
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as sink:
            sink.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        return Issued(cert_path, key_path, certificate.public_bytes(serialization.Encoding.DER))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LlamaServer:
    """A real llama-server on loopback TCP with the backend's options (plain HTTP)."""

    def __init__(self, model: Path, settings: EngineSettings) -> None:
        self.model = model
        self.settings = settings
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        settings = self.settings
        command = [str(llama_tool("llama-server")), "-m", str(self.model)]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        command += server_arguments(settings, settings.context_length, gpu=False)
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "llama-server stopped while starting"
            with contextlib.suppress(OSError):
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                try:
                    connection.request("GET", "/health")
                    if connection.getresponse().status == 200:
                        return
                finally:
                    connection.close()
            time.sleep(0.05)
        raise AssertionError("llama-server was not ready in time")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


class Terminator:
    """TLS 1.3 in front of a plain TCP upstream, client certificates from `client_ca`
    required; one thread per connection copies bytes both ways."""

    def __init__(self, upstream: int, server: Issued, client_ca: Path) -> None:
        self.upstream = upstream
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_3
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.context.load_verify_locations(cafile=str(client_ca))
        self.context.load_cert_chain(str(server.certificate), str(server.key))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.handshakes = 0  # connections whose client certificate was accepted
        self.refused: list[str] = []  # why the others were not
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        # As TLS terminators in production (nginx's tcp_nodelay): events go out at once.
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.settimeout(10)
        try:
            tls = self.context.wrap_socket(client, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            with self._lock:
                self.refused.append(str(exc))
            client.close()
            return
        with self._lock:
            self.handshakes += 1
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream), timeout=10)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            tls.close()
            return
        with self._lock:
            self._open |= {tls, upstream}
        tls.settimeout(None)
        upstream.settimeout(None)
        try:
            pump(tls, upstream)
        finally:
            with self._lock:
                self._open -= {tls, upstream}
            upstream.close()
            tls.close()

    def stop(self) -> None:
        """Refuse new connections and drop the open ones."""
        stop_listening(self.listener)
        with self._lock:
            live = list(self._open)
        for sock in live:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)


def pump(tls: ssl.SSLSocket, upstream: socket.socket) -> None:
    """Copy both ways in one thread (an SSL object is never used by two at once)."""
    while True:
        ready = [tls] if tls.pending() else select.select([tls, upstream], [], [], 1.0)[0]
        try:
            for source in ready:
                target = upstream if source is tls else tls
                data = source.recv(1 << 16)
                if not data:
                    return
                target.sendall(data)
        except (OSError, ssl.SSLError):
            return


class Scripted:
    """A plain upstream that misbehaves: it reads a request (head and body), then
    answers `reply`, or holds the connection and says nothing when `reply` is None;
    `eager` answers whatever comes first (a plain HTTP server given a TLS hello)."""

    def __init__(self, reply: bytes | None, *, eager: bool = False) -> None:
        self.reply = reply
        self.eager = eager
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        held: list[socket.socket] = []
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            if self.reply is None:
                held.append(connection)
                continue
            with connection, contextlib.suppress(OSError):
                connection.settimeout(10)
                if self.eager:
                    connection.recv(65536)
                else:
                    read_request(connection)
                connection.sendall(self.reply)
                connection.shutdown(socket.SHUT_WR)
                while connection.recv(65536):
                    pass

    def stop(self) -> None:
        stop_listening(self.listener)


def read_request(connection: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            return
        body += chunk


def stop_listening(listener: socket.socket) -> None:
    """Refuse new connections now: a listener closed under a blocked accept() would
    go on accepting until that call returns."""
    with contextlib.suppress(OSError):
        listener.shutdown(socket.SHUT_RDWR)
    listener.close()
