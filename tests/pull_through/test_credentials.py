"""A rule with credentials against an upstream with token auth on (a Skyport): the
password from the environment variable the rule names (locally), the Docker token flow;
a blob the upstream serves itself (case c) is waited for, then redirected to our S3;
wrong or missing credentials are DENIED without the secret; never a credential in a
redirect."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
from direct.running import Served, serve
from harness import new_stack
from oci import OCI_MANIFEST, assert_error, fetch, make_image, push_image, sha256
from skyport.registry import Registry
from skyport_api.app import create_app
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
