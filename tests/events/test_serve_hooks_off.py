"""`skyport serve` with a DynamoDB endpoint that serves no SQS or EventBridge (DynamoDB
Local, say): the registry starts with hooks off, its banner says why, and pushes work.

The endpoint is a small proxy in front of the session's moto that passes DynamoDB and
DynamoDB Streams calls (by their ``X-Amz-Target``) and answers every other service's call
as DynamoDB answers an operation it does not know (400, UnknownOperationException). S3 is
moto itself (``--s3-endpoint``). The server is the CLI in a subprocess, as `make run` starts it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from direct.running import free_port
from oci import make_image, push_image

READY_TIMEOUT = 30.0
# What the proxy passes to moto: DynamoDB's JSON protocol names its operations so.
DYNAMODB_TARGETS = ("DynamoDB_20120810.", "DynamoDBStreams_20120810.")


class DynamoDBOnly(BaseHTTPRequestHandler):
    """Forwards DynamoDB calls to ``server.upstream``; refuses every other call, and
    counts them in ``server.refused``."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        target = self.headers.get("X-Amz-Target", "")
        if not target.startswith(DYNAMODB_TARGETS):
            self.server.refused.append(target or self.path)  # type: ignore[attr-defined]
            self._answer(
                400,
                {"Content-Type": "application/x-amz-json-1.0"},
                json.dumps(
                    {
                        "__type": "com.amazonaws.dynamodb.v20120810#UnknownOperationException",
                        "message": "An unknown operation was requested.",
                    }
                ).encode(),
            )
            return
        headers = {name: value for name, value in self.headers.items() if name.lower() != "host"}
        request = urllib.request.Request(
            self.server.upstream + self.path,  # type: ignore[attr-defined]
            data=body,
            headers=headers,
            method="POST",
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=30) as response:
                self._answer(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as error:
            self._answer(error.code, dict(error.headers), error.read())

    def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def dynamodb_only(moto_endpoint: str) -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), DynamoDBOnly)
    server.upstream = moto_endpoint  # type: ignore[attr-defined]
    server.refused = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _banner(proc: subprocess.Popen, log: Path) -> str:
    """The server's output up to its banner's last line; fails if it exits or never gets there."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if "Ctrl-C stops it." in text:
            return text
        if proc.poll() is not None:
            pytest.fail(f"skyport serve exited with {proc.returncode}:\n{text}")
        time.sleep(0.1)
    pytest.fail(f"no banner in {READY_TIMEOUT:.0f}s:\n{log.read_text(errors='replace')}")


def test_serve_on_a_dynamodb_only_endpoint_starts_with_hooks_off_and_says_why(
    request, moto_endpoint, dynamodb_only, tmp_path
):
    host, port = dynamodb_only.server_address[:2]
    proxy = f"http://{host}:{port}"
    name = f"skyport-nohooks-{uuid.uuid4().hex[:12]}"
    registry_port = free_port()
    roots = [str(p) for p in request.config.getini("pythonpath")]
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AWS_ENDPOINT_URL") and not key.startswith("SKYPORT_")
    }
    environment.update(
        PYTHONPATH=os.pathsep.join(roots),
        SKYPORT_STATE_DIR=str(tmp_path / "state"),
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        AWS_ACCESS_KEY_ID=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        AWS_SECRET_ACCESS_KEY=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
    )
    argv = [
        *(sys.executable, "-m", "skyport_cli", "serve", "--host", "127.0.0.1"),
        *("--port", str(registry_port), "--table", name, "--bucket", name),
        *("--s3-endpoint", moto_endpoint, "--dynamodb-endpoint", proxy),
    ]
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            cwd=request.config.rootpath,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        banner = _banner(proc, log)
        (hooks_line,) = [line for line in banner.splitlines() if line.strip().startswith("hooks:")]
        assert hooks_line.startswith(f"  hooks: off: {proxy} serves no SQS or EventBridge (")
        assert "UnknownOperationException" in hooks_line
        assert hooks_line.endswith("point --dynamodb-endpoint at a moto server (skyport moto) for them")
        assert "EventsFunction" not in banner  # no pipeline thread was started
        # The call that found the endpoint wanting: the bus, the first hook resource made.
        assert dynamodb_only.refused == ["AWSEvents.CreateEventBus"]

        registry_url = f"http://127.0.0.1:{registry_port}"
        with httpx.Client(base_url=registry_url, trust_env=False, timeout=30) as client:
            image = make_image()
            digest = push_image(client, "team/app", image, "1.0")
            pulled = client.get("/v2/team/app/manifests/1.0", headers={"Accept": image.media_type})
        assert pulled.status_code == 200
        assert pulled.headers["Docker-Content-Digest"] == digest
        assert pulled.content == image.manifest
        assert proc.poll() is None
        assert dynamodb_only.refused == ["AWSEvents.CreateEventBus"]  # nothing else looked for hooks
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
