"""With auth on: an immutable tag is refused to everyone who may push, admins included
(DENIED, never a challenge: more permissions would not help), and the rule is named."""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest
from oci import assert_error, make_image, push_image
from skyport.registry import Registry
from skyport_api.app import create_app
from starlette.testclient import TestClient

from .conftest import push_blobs, put


@pytest.fixture
def secured(settings, aws_clients) -> Registry:
    return Registry(replace(settings, auth="on"), clients=aws_clients)


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize("who", ["admin", "robot"])
def test_pushers_and_admins_alike_are_denied(secured, who):
    identities = secured.identities
    identities.add_user("root", "root-password-1", admin=True)
    robot, secret = identities.add_robot("ci")
    identities.grant("team/*", robot.name, ["*"])
    credentials = basic("root", "root-password-1") if who == "admin" else basic(robot.name, secret)
    rule = secured.immutability.add("team/*")
    with TestClient(create_app(secured), follow_redirects=False, headers=credentials) as client:
        first, second = make_image(), make_image()
        push_image(client, "team/app", first, "v1")
        push_blobs(client, "team/app", second)
        refused = put(client, "team/app", "v1", second)
        assert "WWW-Authenticate" not in refused.headers
        assert assert_error(refused, 403, "DENIED")["detail"]["rule"]["id"] == rule.id
        assert_error(client.delete("/v2/team/app/manifests/v1"), 403, "DENIED")
        assert_error(client.delete(f"/v2/team/app/manifests/{first.digest}"), 403, "DENIED")
        assert client.get("/v2/team/app/manifests/v1").content == first.manifest
