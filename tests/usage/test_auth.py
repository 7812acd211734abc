"""The usage extension with auth on: each caller sees, in the listing and in the total,
only the repositories it may pull (never another's names or sizes); a repository it may
not pull is refused exactly as its tags are; tokens from the token endpoint work as Basic
credentials do. Through the ASGI app and the API behind the local Lambda gateway."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import pytest
from harness import api_behind_lambda
from oci import push_image
from skyport.registry import Registry
from skyport_api.app import create_app
from starlette.testclient import TestClient

from .conftest import SHARED_LAYER, blob_bytes, image_with_shared_layer

PASSWORDS = {"root": "root-password-1", "alice": "alice-password-1", "bob": "bob-password-1"}


def basic(user: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()}


@pytest.fixture(params=["asgi", "lambda"])
def world(request, registry: Registry, template: dict):
    """team-a/app and team-a/lib (alice pulls team-a/*), team-b/app (bob pulls team-b/*),
    all sharing one layer; root is an admin."""
    auth_registry = Registry(replace(registry.settings, auth="on"), clients=registry.clients)
    identities = auth_registry.identities
    identities.add_user("root", PASSWORDS["root"], admin=True)
    identities.add_user("alice", PASSWORDS["alice"])
    identities.add_user("bob", PASSWORDS["bob"])
    identities.grant("team-a/*", "alice", ["pull"])
    identities.grant("team-b/*", "bob", ["pull"])
    app = create_app(auth_registry) if request.param == "asgi" else api_behind_lambda(auth_registry, template)
    images = {
        "team-a/app": image_with_shared_layer(1000),
        "team-a/lib": image_with_shared_layer(2000),
        "team-b/app": image_with_shared_layer(4000),
    }
    with TestClient(app, follow_redirects=False) as client:
        with TestClient(create_app(auth_registry), headers=basic("root"), follow_redirects=False) as admin:
            for repository, image in images.items():
                push_image(admin, repository, image, "v1")
        yield client, images


def test_each_caller_sees_only_what_it_may_pull(world):
    client, images = world
    for user, visible in (("alice", ["team-a/app", "team-a/lib"]), ("bob", ["team-b/app"])):
        response = client.get("/v2/_skyport/usage", headers=basic(user))
        assert response.status_code == 200, response.text
        body = response.json()
        assert [r["name"] for r in body["repositories"]] == visible
        hidden = [name for name in images if name not in visible]
        assert not any(name in response.text for name in hidden)
        total = body["total"]
        assert total["repositories"] == len(visible)
        # The shared layer once, and nothing of the repositories the caller cannot pull.
        expected = sum(blob_bytes(images[name]) for name in visible) - len(SHARED_LAYER) * (len(visible) - 1)
        assert total["blob_bytes"] == expected
    everything = client.get("/v2/_skyport/usage", headers=basic("root")).json()
    assert everything["total"]["repositories"] == 3


def test_a_repository_the_caller_may_not_pull_is_refused_as_its_tags_are(world):
    client, _ = world
    for headers in (basic("alice"), {}):
        usage = client.get("/v2/team-b/app/_skyport/usage", headers=headers)
        tags = client.get("/v2/team-b/app/tags/list", headers=headers)
        assert usage.status_code == tags.status_code and usage.status_code in (401, 403)
        assert [e["code"] for e in usage.json()["errors"]] == [e["code"] for e in tags.json()["errors"]]
        assert usage.headers.get("www-authenticate", "").replace("_skyport/usage", "") == tags.headers.get(
            "www-authenticate", ""
        ).replace("tags/list", "")
        assert "stored_bytes" not in usage.text
    allowed = client.get("/v2/team-a/app/_skyport/usage", headers=basic("alice"))
    assert allowed.status_code == 200 and allowed.json()["name"] == "team-a/app"


def test_anonymous_callers_see_what_the_catalog_shows_them(world):
    client, _ = world
    usage = client.get("/v2/_skyport/usage")
    catalog = client.get("/v2/_catalog")
    assert usage.status_code == catalog.status_code
    if usage.status_code == 200:
        assert [r["name"] for r in usage.json()["repositories"]] == catalog.json()["repositories"] == []


def test_a_token_for_the_catalog_scope_shows_the_identitys_repositories(world):
    client, _ = world
    token = client.get(
        "/auth/token", params={"service": "skyport", "scope": "registry:catalog:*"}, headers=basic("alice")
    )
    assert token.status_code == 200, token.text
    bearer = {"Authorization": f"Bearer {token.json()['token']}"}
    response = client.get("/v2/_skyport/usage", headers=bearer)
    assert response.status_code == 200, response.text
    assert [r["name"] for r in response.json()["repositories"]] == ["team-a/app", "team-a/lib"]
    # The catalog token does not reach one repository's figures: that needs its pull scope.
    refused = client.get("/v2/team-a/app/_skyport/usage", headers=bearer)
    assert refused.status_code == 401 and "repository:team-a/app:pull" in refused.headers["www-authenticate"]
    scoped = client.get(
        "/auth/token",
        params={"service": "skyport", "scope": "repository:team-a/app:pull"},
        headers=basic("alice"),
    ).json()["token"]
    one = client.get("/v2/team-a/app/_skyport/usage", headers={"Authorization": f"Bearer {scoped}"})
    assert one.status_code == 200 and json.loads(one.text)["name"] == "team-a/app"


def test_the_registry_total_covers_only_what_the_caller_may_pull(world):
    client, images = world
    alice = client.get("/v2/_skyport/usage/total", headers=basic("alice"))
    assert alice.status_code == 200, alice.text
    body = alice.json()
    assert body["complete"] is True and body["total"]["repositories"] == 2
    visible = ("team-a/app", "team-a/lib")
    assert body["total"]["blob_bytes"] == sum(blob_bytes(images[name]) for name in visible) - len(
        SHARED_LAYER
    )
    assert client.get("/v2/_skyport/usage/total", headers=basic("root")).json()["total"]["repositories"] == 3
