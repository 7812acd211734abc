"""A push of a tag that lands between a delete by digest's reading of the tags naming the
manifest and its transaction: the delete reads again (its transaction is conditional on
the push it read), so the tag goes with the manifest and never names a deleted one.
The push is made to land there by a hook on the delete's own TransactWriteItems call."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from oci import make_image, push_image
from skyport.registry import Registry
from skyport_api.app import create_app
from starlette.testclient import TestClient

REPO = "race/app"


@pytest.fixture
def app_client(registry: Registry) -> Iterator[TestClient]:
    with TestClient(create_app(registry), follow_redirects=False) as test_client:
        yield test_client


def _push_during_first_delete(registry: Registry, client: TestClient, image, tag: str) -> dict:
    state = {"pushed": False, "transactions": 0}

    def before_transaction(params, **_) -> None:
        items = params.get("TransactItems", [])
        deletes_manifest = (
            items and "Delete" in items[0] and "MANIFEST#" in items[0]["Delete"]["Key"]["SK"]["S"]
        )
        if deletes_manifest:
            state["transactions"] += 1
            if not state["pushed"]:
                state["pushed"] = True
                response = client.put(
                    f"/v2/{REPO}/manifests/{tag}",
                    content=image.manifest,
                    headers={"Content-Type": image.media_type},
                )
                assert response.status_code == 201, response.text

    events = registry.clients.dynamodb.meta.events
    events.register("before-parameter-build.dynamodb.TransactWriteItems", before_transaction)
    try:
        response = client.delete(f"/v2/{REPO}/manifests/{image.digest}")
    finally:
        events.unregister("before-parameter-build.dynamodb.TransactWriteItems", before_transaction)
    assert response.status_code == 202, response.text
    return state


def test_a_tag_pushed_during_a_delete_by_digest_goes_with_the_manifest(registry, app_client):
    image = make_image()
    push_image(app_client, REPO, image, "v1")

    state = _push_during_first_delete(registry, app_client, image, "v2")

    # The first transaction failed (pushed since read); the second took v1 and v2.
    assert state == {"pushed": True, "transactions": 2}
    assert app_client.get(f"/v2/{REPO}/manifests/{image.digest}").status_code == 404
    for tag in ("v1", "v2"):
        assert app_client.get(f"/v2/{REPO}/manifests/{tag}").status_code == 404
    assert app_client.get(f"/v2/{REPO}/tags/list").json().get("tags") in (None, [])
