"""Webhook tests: a registry whose Secrets Manager is the moto server, real HTTP receivers
(http.server in a thread) that check signatures with the README's own code, and registry
events from the samples in events/registry (written from real pushes by tests/events)."""

from __future__ import annotations

import json
import os
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from skyport.config import Settings
from skyport.events import RegistryEvent
from skyport.registry import Registry
from skyport.storage.clients import AwsClients
from skyport.webhooks import WebhookAdmin
from skyport_cli.webhooks import SecretsManagerWriter

REGION = "us-east-1"
ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "events" / "registry"
REGISTRY_URL = "https://registry.example.com"
SECRETS_ENDPOINT = "AWS_ENDPOINT_URL_SECRETS_MANAGER"


def readme_verifier() -> Callable[..., bool]:
    """verify_skyport_signature, exactly as README.md's Hooks section shows it."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    code = next(block for block in blocks if "def verify_skyport_signature" in block)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    return namespace["verify_skyport_signature"]


def sample_event(name: str, **changes) -> RegistryEvent:
    """A registry event of events/registry/<name>.json (its first)."""
    fields = json.loads((SAMPLES / f"{name}.json").read_text())[0]
    event = RegistryEvent.from_dict(fields)
    return replace(event, **changes)


@pytest.fixture(scope="session")
def hook_clients(moto_endpoint: str) -> AwsClients:
    """Clients whose Secrets Manager is the moto server, made once (as
    AWS_ENDPOINT_URL_SECRETS_MANAGER does deployed-like; the variable is set only while the
    client is made)."""
    clients = AwsClients(
        Settings(
            bucket="-", table="-", region=REGION, s3_endpoint=moto_endpoint, dynamodb_endpoint=moto_endpoint
        )
    )
    saved = os.environ.get(SECRETS_ENDPOINT)
    os.environ[SECRETS_ENDPOINT] = moto_endpoint
    try:
        assert clients.secretsmanager.meta.endpoint_url == moto_endpoint
        assert clients.dynamodb
    finally:
        if saved is None:
            del os.environ[SECRETS_ENDPOINT]
        else:
            os.environ[SECRETS_ENDPOINT] = saved
    return clients


@pytest.fixture
def hook_registry(settings: Settings, hook_clients: AwsClients) -> Registry:
    """A fresh table (and so its own secret prefix), with a public registry URL."""
    return Registry(replace(settings, registry_url=REGISTRY_URL), clients=hook_clients)


def webhook_admin(registry: Registry, **options) -> WebhookAdmin:
    """The admin as `skyport webhook` builds it: secrets written with the CLI's writer."""
    return WebhookAdmin(registry, SecretsManagerWriter(registry.clients.secretsmanager), **options)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook receiver: answers ``status`` after ``delay`` seconds (with ``location``
    on a redirect), and keeps every request."""

    status: int = 200
    delay: float = 0.0
    location: str = ""
    requests: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    tls: bool = False

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host}:{port}/hooks/skyport?team=a"


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        receiver: Receiver = self.server.receiver  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        receiver.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        if receiver.delay:
            time.sleep(receiver.delay)
        try:
            self.send_response(receiver.status)
            if receiver.location:
                self.send_header("Location", receiver.location)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
        except OSError:
            pass  # the sender gave up waiting (the timeout tests)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    """Start receivers on free loopback ports (port 0); all stop after the test."""
    started: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    def start(certificate: tuple[Path, Path] | None = None, **behaviour) -> Receiver:
        receiver = Receiver(tls=certificate is not None, **behaviour)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        if certificate is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*certificate)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        server.daemon_threads = True
        server.receiver = receiver  # type: ignore[attr-defined]
        receiver.server = server
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        started.append((server, thread))
        return receiver

    yield start
    for server, thread in started:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL where nothing listens."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks"


@pytest.fixture(scope="session")
def self_signed(tmp_path_factory) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that no CA signed (a receiver's own), and its key."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "skyport-test-receiver")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("receiver-tls")
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path
