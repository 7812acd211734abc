"""A rule with credentials against an upstream with token auth on (a Skyport): the
password from the environment variable the rule names (locally), the Docker token flow;
a blob the upstream serves itself (case c) is waited for, then redirected to our S3;
wrong or missing credentials are DENIED without the secret; never a credential in a
redirect."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from direct.running import Served, serve
from harness import new_stack
from oci import OCI_MANIFEST, assert_error, fetch, make_image, push_image, sha256
from skyport.registry import Registry
from skyport_api.app import create_app
from skyport_api.auth import TOKEN_PATH
from starlette.testclient import TestClient

PASSWORD = "up-" + uuid.uuid4().hex


@pytest.fixture
def guarded(moto_endpoint, aws_clients, template) -> Iterator[Served]:
    """An upstream with auth on that serves blob bytes itself (proxy delivery)."""
    settings = replace(
        new_stack(moto_endpoint, aws_clients, template, "auth"),
        auth="on",
        signing_key_in_memory=True,
        blob_delivery="proxy",
    )
    registry = Registry(settings, clients=aws_clients)
    registry.identities.add_user("puller", PASSWORD)
    registry.identities.grant("team/*", "puller", ["push"])
    with serve(registry) as running:
        yield running


@pytest.fixture
def pushed(guarded: Served):
    image = make_image((2048,))
    open_settings = replace(guarded.registry.settings, auth="off")
    with TestClient(create_app(Registry(open_settings, clients=guarded.registry.clients))) as client:
        push_image(client, "team/app", image, "v1")
    return image


def test_credentials_from_the_named_variable_and_case_c(registry, guarded, pushed, monkeypatch):
    monkeypatch.setenv("UP_PASSWORD", PASSWORD)
    registry.cache_rules.add("up", guarded.url, username="puller", password_env="UP_PASSWORD")
    with TestClient(create_app(registry), follow_redirects=False) as client:
        response = client.get("/v2/up/team/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
        assert response.status_code == 200 and response.content == pushed.manifest
        layer = pushed.layers[0]
        blob = client.get(f"/v2/up/team/app/blobs/{sha256(layer)}")
        # Case (c): the upstream serves bytes itself to credentials only: waited for, then S3.
        assert blob.status_code == 307
        location = blob.headers["Location"]
        assert registry.settings.bucket in location and PASSWORD not in location
        assert fetch(location) == layer


class TokenRequired:
    """An ASGI middleware making a registry that lets anyone pull ask for a token first, as
    Docker Hub and Harbor do: a request without Authorization (but the token endpoint's)
    is a 401 Bearer challenge naming the registry's own token endpoint."""

    def __init__(self, app, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope, receive, send) -> None:
        headers = dict(scope.get("headers") or ())
        if scope["type"] == "http" and scope["path"] != TOKEN_PATH and b"authorization" not in headers:
            host = headers.get(b"host", b"").decode()
            challenge = f'Bearer realm="http://{host}{TOKEN_PATH}",service="{self.service}"'
            body = b'{"errors":[{"code":"UNAUTHORIZED","message":"token required"}]}'
            start = [(b"www-authenticate", challenge.encode()), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 401, "headers": start})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def test_an_anonymous_token_upstream_serving_bytes_itself_is_case_c(registry, guarded, pushed):
    """A rule without credentials, an upstream that lets anyone pull but only with a token
    (as Harbor does): sending the client to the upstream's blob URL would earn it a 401
    from a registry it never logged in to. The blob is waited for and served from S3."""
    upstream = guarded.registry
    upstream.identities.grant("team/*", "*", ["pull"])
    layer = pushed.layers[0]
    service = upstream.settings.token_service
    with (
        serve(upstream, wrap=lambda app: TokenRequired(app, service)) as tokens_only,
        TestClient(create_app(registry), follow_redirects=False) as client,
    ):
        assert httpx.get(f"{tokens_only.url}/v2/team/app/blobs/{sha256(layer)}").status_code == 401
        registry.cache_rules.add("public", tokens_only.url)
        response = client.get("/v2/public/team/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
        assert response.status_code == 200 and response.content == pushed.manifest
        blob = client.get(f"/v2/public/team/app/blobs/{sha256(layer)}")
        assert blob.status_code == 307, blob.text
        location = blob.headers["Location"]
        assert registry.settings.bucket in location and guarded.url not in location
        assert fetch(location) == layer


def test_wrong_or_missing_credentials_are_denied_without_the_secret(
    registry, guarded, pushed, monkeypatch, storage
):
    monkeypatch.setenv("UP_PASSWORD", "not-" + PASSWORD)
    registry.cache_rules.add("wrong", guarded.url, username="puller", password_env="UP_PASSWORD")
    registry.cache_rules.add("anon", guarded.url)
    registry.cache_rules.add("unset", guarded.url, username="puller", password_env="UP_UNSET_VARIABLE")
    before = storage.snapshot()
    with TestClient(create_app(registry), follow_redirects=False) as client:
        for prefix in ("wrong", "anon"):
            response = client.get(f"/v2/{prefix}/team/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
            error = assert_error(response, 403, "DENIED")
            assert f"cache rule {prefix}" in error["message"] and PASSWORD not in response.text
            blob = client.get(f"/v2/{prefix}/team/app/blobs/{sha256(pushed.layers[0])}")
            assert_error(blob, 403, "DENIED")
        response = client.get("/v2/unset/team/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
        error = assert_error(response, 503, "UNAVAILABLE")
        assert "UP_UNSET_VARIABLE" in error["message"]
    after = storage.snapshot()
    assert after["objects"] == before["objects"]
    assert [i for i in after["items"] if i["PK"]["S"].startswith("REPO#")] == []
