"""An https destination with a self-signed certificate: refused at `add` unless --insecure
(then its certificate is not verified), and replicated to with it."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from direct.running import free_port
from machine import cannot_run
from oci import make_image, push_image
from skyport.registry import Registry
from skyport.replication.rules import RuleInvalid
from skyport_api.app import create_app

from .conftest import replicate_all


@pytest.fixture
def tls_destination(destination: Registry, tmp_path: Path):
    if shutil.which("openssl") is None:
        cannot_run("openssl is not installed (Debian package openssl)")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert)]
        + ["-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    config = uvicorn.Config(
        create_app(destination),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ssl_keyfile=str(key),
        ssl_certfile=str(cert),
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # --insecure asks for it
def test_an_unverifiable_certificate_needs_insecure(
    rules, replicator, feed, source_client, destination, tls_destination
):
    with pytest.raises(RuleInvalid, match="the destination is unreachable: .*SSL"):
        rules.add("*", tls_destination)
    rules.add("*", tls_destination, insecure=True)
    image = make_image()
    push_image(source_client, "app", image, "1")
    replicate_all(replicator, feed.new())
    assert destination.manifests.resolve("app", "1").digest == image.digest
