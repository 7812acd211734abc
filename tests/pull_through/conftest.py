"""Fixtures of the pull-through cache suite: an upstream registry (a second Skyport, its own
bucket and table on the session's moto, served over real HTTP by uvicorn, behind a
middleware that counts what it is asked and can play an upstream that is down or limits
us), and the cache (the test's registry, with a rule ``up`` -> that upstream)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import pytest
from direct.running import Served, serve
from harness import new_stack
from skyport.registry import Registry
from skyport.storage.clients import AwsClients
from skyport_api.app import create_app
from starlette.testclient import TestClient

PREFIX = "up"


@dataclass
class UpstreamControl:
    """An ASGI middleware: records (method, path) of every request; ``mode`` "down" answers
    503, "limit" answers 429 with Retry-After, "metadata-redirect" redirects blob GETs to a
    link-local address, "head-redirect" answers blob HEADs with a redirect to the blob's
    GET (as Distribution on S3 does: no size in it); None passes through."""

    app: object = None
    requests: list[tuple[str, str]] = field(default_factory=list)
    mode: str | None = None

    def wrap(self, app):
        self.app = app
        return self

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            self.requests.append((scope["method"], scope["path"]))
            if self.mode in ("down", "limit"):
                status = 503 if self.mode == "down" else 429
                body = json.dumps({"errors": [{"code": "UNAVAILABLE", "message": "test"}]}).encode()
                headers = [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ]
                if self.mode == "limit":
                    headers.append((b"retry-after", b"7"))
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            if self.mode == "head-redirect" and scope["method"] == "HEAD" and "/blobs/" in scope["path"]:
                headers = [(b"location", scope["path"].encode()), (b"content-length", b"0")]
                await send({"type": "http.response.start", "status": 307, "headers": headers})
                await send({"type": "http.response.body", "body": b""})
                return
            if self.mode == "metadata-redirect" and "/blobs/" in scope["path"]:
                location = b"http://169.254.169.254/latest/meta-data/"
                headers = [(b"location", location), (b"content-length", b"0")]
                await send({"type": "http.response.start", "status": 307, "headers": headers})
                await send({"type": "http.response.body", "body": b""})
                return
        await self.app(scope, receive, send)

    def count(self, method: str, part: str) -> int:
        return sum(1 for m, path in self.requests if m == method and part in path)


@pytest.fixture
def upstream(moto_endpoint: str, aws_clients: AwsClients, template: dict) -> Registry:
    return Registry(new_stack(moto_endpoint, aws_clients, template, "up"), clients=aws_clients)


@pytest.fixture
def control() -> UpstreamControl:
    return UpstreamControl()


@pytest.fixture
def served_upstream(upstream: Registry, control: UpstreamControl) -> Iterator[Served]:
    with serve(upstream, wrap=control.wrap) as running:
        yield running


@pytest.fixture
def upstream_client(upstream: Registry) -> Iterator[TestClient]:
    with TestClient(create_app(upstream), follow_redirects=False) as client:
        yield client


@pytest.fixture
def cache(registry: Registry, served_upstream: Served) -> Registry:
    """The cache: the test's registry with rule ``up`` -> the upstream."""
    registry.cache_rules.add(PREFIX, served_upstream.url)
    return registry


@pytest.fixture
def cache_client(cache: Registry) -> Iterator[TestClient]:
    with TestClient(create_app(cache), follow_redirects=False) as client:
        yield client


def with_settings(registry: Registry, **changes) -> Registry:
    return Registry(replace(registry.settings, **changes), clients=registry.clients)


def wait_for(predicate, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


# The real-client tests (test_e2e.py) drive skopeo and podman as tests/e2e does, with its fixtures.
from e2e.conftest import podman, skopeo  # noqa: E402, F401
