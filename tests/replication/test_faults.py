"""A destination that is down, answers 5xx, or refuses auth: ReplicationFailed with a clear
reason, the rule's status showing it, pushes to the source unaffected; and a big blob
streamed to an OCI destination in bounded chunks, never whole."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest
import uvicorn
from direct.running import free_port
from http_stub import serve_http, url_of
from oci import MiB, make_image, push_image, sha256
from skyport.registry import Registry
from skyport.replication import ReplicationFailed, Replicator
from skyport_api.app import create_app

from .conftest import replicate_all


@contextlib.contextmanager
def fake_registry(answer_v2: tuple[int, dict], answer_rest: tuple[int, dict]) -> Iterator[str]:
    """An HTTP server answering GET /v2/ and everything else with fixed statuses."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            status, headers = answer_v2 if self.path == "/v2/" else answer_rest
            body = b'{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}'
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _answer

        def log_message(self, *args) -> None:
            pass

    with serve_http(Handler) as server:
        yield url_of(server)


def _fails_with(rules, replicator, feed, source_client, url: str, expected: str, **options) -> None:
    rule = rules.add("*", url, probe=False, **options)
    push_image(source_client, "app", make_image(), "1")
    events = feed.new()
    with pytest.raises(ReplicationFailed) as failed:
        replicate_all(replicator, events)
    assert f"rule {rule.id} ({url})" in failed.value.reason and expected in failed.value.reason, (
        failed.value.reason
    )
    status = dict((r.id, s) for r, s in rules.list())[rule.id]
    assert expected in status.last_error and status.last_error_at and not status.last_success_at
    # The source took the push whatever the destination does.
    assert source_client.get("/v2/app/manifests/1").status_code == 200


def test_a_destination_that_is_down(rules, replicator, feed, source_client):
    port = free_port()
    _fails_with(
        rules, replicator, feed, source_client, f"http://127.0.0.1:{port}", f"127.0.0.1:{port} unreachable"
    )


def test_a_destination_answering_5xx(rules, replicator, feed, source_client):
    with fake_registry((200, {}), (503, {"Retry-After": "1"})) as url:
        _fails_with(rules, replicator, feed, source_client, url, "HTTP 503")


def test_a_destination_refusing_auth(rules, replicator, feed, source_client):
    challenge = {"WWW-Authenticate": 'Basic realm="dest"'}
    with fake_registry((401, challenge), (401, challenge)) as url:
        _fails_with(
            rules,
            replicator,
            feed,
            source_client,
            url,
            "the registry wants credentials",
        )
    with fake_registry((200, {}), (401, challenge)) as url:
        _fails_with(
            rules,
            replicator,
            feed,
            source_client,
            url,
            "HTTP 401",
            username="robot",
            password="wrong-password-xyz",
        )


def test_the_reason_never_holds_the_password(rules, replicator, feed, source_client):
    challenge = {"WWW-Authenticate": 'Basic realm="dest"'}
    with fake_registry((200, {}), (401, challenge)) as url:
        rule = rules.add("*", url, probe=False, username="robot", password="wrong-password-xyz")
        push_image(source_client, "app", make_image(), "1")
        with pytest.raises(ReplicationFailed) as failed:
            replicate_all(replicator, feed.new())
    status = dict((r.id, s) for r, s in rules.list())[rule.id]
    assert "wrong-password-xyz" not in failed.value.reason + status.last_error
    assert "cm9ib3Q6" not in failed.value.reason + status.last_error  # base64 of "robot:"


def test_a_failed_rule_is_retried_and_then_converges(
    rules, replicator, feed, source_client, destination, registry
):
    """Events retried after the destination comes back apply (the guard is only written
    after success)."""
    port = free_port()
    rules.add("*", f"http://127.0.0.1:{port}", probe=False)
    image = make_image()
    push_image(source_client, "app", image, "1")
    events = feed.new()
    with pytest.raises(ReplicationFailed):
        replicate_all(replicator, events)
    with serving(create_app(destination), port):
        replicator_again = Replicator(registry)  # another process: no cached destination
        replicate_all(replicator_again, events)
    assert destination.manifests.resolve("app", "1").digest == image.digest


class BodyMeter:
    """ASGI middleware: the largest request body the app received, and the request count."""

    def __init__(self, app) -> None:
        self.app = app
        self.largest = 0
        self.patches = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        size = 0
        if scope["method"] == "PATCH":
            self.patches += 1

        async def counting():
            nonlocal size
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                self.largest = max(self.largest, size)
            return message

        return await self.app(scope, counting, send)


@contextlib.contextmanager
def serving(app, port: int) -> Iterator[None]:
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(10)


def test_a_big_blob_goes_up_in_bounded_chunks(rules, replicator, feed, source_client, destination: Registry):
    size = 64 * MiB
    image = make_image((size,))
    push_image(source_client, "big", image, "1")
    meter = BodyMeter(create_app(destination))
    port = free_port()
    with serving(meter, port):
        rules.add("big", f"http://127.0.0.1:{port}")
        replicate_all(replicator, feed.new())
    layer = sha256(image.layers[0])
    assert destination.blobs.stat("big", layer).size == size
    assert destination.manifests.resolve("big", "1").digest == image.digest
    # Skyport advertises OCI-Chunk-Min-Length (5 MiB): chunks of exactly that, none bigger.
    chunk = destination.settings.chunk_min_length
    assert meter.largest == chunk
    assert meter.patches == -(-size // chunk) + 1  # the layer's chunks, and the config's one


REPLICATE_IN_A_PROCESS = """
import dataclasses, json, sys
from skyport.config import Settings
from skyport.events import RegistryEvent
from skyport.registry import Registry
from skyport.replication import Replicator

def peak_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

settings, batches = json.loads(sys.stdin.read())
replicator = Replicator(Registry(Settings(**settings)))
peaks = []
for batch in batches:
    for fields in batch:
        replicator.replicate(RegistryEvent(**fields))
    peaks.append(peak_kib())
print(json.dumps(peaks))
"""


def test_a_big_blob_is_streamed_not_held_in_memory(
    rules, feed, source_client, registry: Registry, served_destination
):
    """The replicator's process, alone: its peak memory after a 64 MiB layer is above its
    peak after a tiny one by a few chunks (5 MiB each here), not by the layer."""
    rules.add("*", served_destination.url)
    push_image(source_client, "small", make_image((1024,)), "1")
    small = [dataclasses.asdict(e) for e in feed.new()]
    push_image(source_client, "big", make_image((64 * MiB,)), "1")
    big = [dataclasses.asdict(e) for e in feed.new()]
    settings = dataclasses.asdict(registry.settings)
    result = subprocess.run(
        [sys.executable, "-c", REPLICATE_IN_A_PROCESS],
        input=json.dumps([settings, [small, big]]),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    after_small, after_big = json.loads(result.stdout.strip().splitlines()[-1])
    growth_mib = (after_big - after_small) / 1024
    print(
        f"replicator peak: {after_small / 1024:.0f} MiB after a tiny image, +{growth_mib:.1f} MiB for 64 MiB"
    )
    assert growth_mib < 24, growth_mib
    assert served_destination.registry.manifests.resolve("big", "1")
