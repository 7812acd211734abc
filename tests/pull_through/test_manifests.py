"""Manifests through the cache against a live upstream (a second Skyport over HTTP): miss,
hit, the tag's re-check by HEAD, stale copies with a Warning while upstream is down or
limiting, digest checks, and what an upstream error becomes without a cached copy."""

from __future__ import annotations

from oci import OCI_MANIFEST, assert_error, make_image, push_image
from skyport_api.app import create_app
from starlette.testclient import TestClient

from .conftest import PREFIX, with_settings

ACCEPT = {"Accept": OCI_MANIFEST}


def test_miss_fetches_once_then_hits_without_upstream(cache_client, upstream_client, control, cache):
    image = make_image()
    digest = push_image(upstream_client, "library/app", image, "v1")
    response = cache_client.get(f"/v2/{PREFIX}/library/app/manifests/v1", headers=ACCEPT)
    assert response.status_code == 200, response.text
    assert response.content == image.manifest
    assert response.headers["Docker-Content-Digest"] == digest
    assert "Warning" not in response.headers
    assert control.count("GET", "/manifests/v1") == 1
    asked = len(control.requests)
    for path in (f"/v2/{PREFIX}/library/app/manifests/v1", f"/v2/{PREFIX}/library/app/manifests/{digest}"):
        again = cache_client.get(path, headers=ACCEPT)
        assert again.status_code == 200 and again.content == image.manifest
        assert cache_client.head(path, headers=ACCEPT).status_code == 200
    assert len(control.requests) == asked  # within the re-check time: no upstream call
    # Stored like a push: the catalog and the tag list show it.
    assert f"{PREFIX}/library/app" in cache_client.get("/v2/_catalog").json()["repositories"]
    assert cache_client.get(f"/v2/{PREFIX}/library/app/tags/list").json()["tags"] == ["v1"]


def test_a_stale_tag_is_rechecked_with_a_head(cache, upstream_client, control):
    rechecking = with_settings(cache, cache_tag_recheck_seconds=0)
    with TestClient(create_app(rechecking), follow_redirects=False) as client:
        first = make_image()
        push_image(upstream_client, "team/app", first, "latest")
        path = f"/v2/{PREFIX}/team/app/manifests/latest"
        assert client.get(path, headers=ACCEPT).content == first.manifest
        gets = control.count("GET", "/manifests/")
        assert client.get(path, headers=ACCEPT).content == first.manifest
        assert control.count("HEAD", "/manifests/latest") == 1
        assert control.count("GET", "/manifests/") == gets  # unchanged upstream: HEAD only
        second = make_image()
        moved = push_image(upstream_client, "team/app", second, "latest")
        response = client.get(path, headers=ACCEPT)
        assert response.content == second.manifest
        assert response.headers["Docker-Content-Digest"] == moved


def test_upstream_down_or_limiting_serves_the_cached_copy_with_a_warning(cache, upstream_client, control):
    rechecking = with_settings(cache, cache_tag_recheck_seconds=0)
    with TestClient(create_app(rechecking), follow_redirects=False) as client:
        image = make_image()
        push_image(upstream_client, "team/app", image, "v1")
        path = f"/v2/{PREFIX}/team/app/manifests/v1"
        assert client.get(path, headers=ACCEPT).status_code == 200
        for mode in ("down", "limit"):
            control.mode = mode
            response = client.get(path, headers=ACCEPT)
            assert response.status_code == 200 and response.content == image.manifest
            assert response.headers["Warning"].startswith('110 - "Response is Stale: upstream 127.0.0.1:')
            assert client.head(path, headers=ACCEPT).headers["Warning"].startswith("110 - ")


def test_upstream_down_or_limiting_without_a_cached_copy(cache_client, control, storage):
    before = storage.snapshot()
    control.mode = "down"
    response = cache_client.get(f"/v2/{PREFIX}/team/app/manifests/v1", headers=ACCEPT)
    error = assert_error(response, 503, "UNAVAILABLE")
    assert "nothing is cached" in error["message"]
    assert response.headers["Retry-After"].isdigit()
    control.mode = "limit"
    response = cache_client.get(f"/v2/{PREFIX}/team/app/manifests/v1", headers=ACCEPT)
    assert_error(response, 429, "TOOMANYREQUESTS")
    assert response.headers["Retry-After"] == "7"
    assert storage.snapshot() == before


def test_unknown_upstream_tag_and_digest(cache_client, storage):
    before = storage.snapshot()
    assert_error(
        cache_client.get(f"/v2/{PREFIX}/team/none/manifests/v1", headers=ACCEPT), 404, "MANIFEST_UNKNOWN"
    )
    missing = "sha256:" + "0" * 64
    response = cache_client.get(f"/v2/{PREFIX}/team/none/manifests/{missing}", headers=ACCEPT)
    assert_error(response, 404, "MANIFEST_UNKNOWN")
    assert storage.snapshot() == before


def test_a_manifest_whose_bytes_do_not_match_its_digest_is_refused(
    cache_client, upstream, upstream_client, storage
):
    image = make_image()
    digest = push_image(upstream_client, "team/app", image, "v1")
    # The upstream's items now carry other bytes (of the same length) under the same digest.
    tampered = image.manifest.replace(b'"schemaVersion": 2', b'"schemaVersion": 3')
    assert tampered != image.manifest
    for key in (
        {"PK": {"S": "REPO#team/app"}, "SK": {"S": "TAG#v1"}},
        {"PK": {"S": "REPO#team/app"}, "SK": {"S": f"MANIFEST#{digest}"}},
    ):
        upstream.clients.dynamodb.update_item(
            TableName=upstream.settings.table,
            Key=key,
            UpdateExpression="SET body_inline = :b",
            ExpressionAttributeValues={":b": {"B": tampered}},
        )
    before = storage.snapshot()
    for reference in ("v1", digest):
        response = cache_client.get(f"/v2/{PREFIX}/team/app/manifests/{reference}", headers=ACCEPT)
        error = assert_error(response, 503, "UNAVAILABLE")
        assert "does not match" in error["message"]
    assert storage.snapshot() == before


def test_an_index_and_its_children_by_digest(cache_client, upstream_client, control):
    from oci import OCI_INDEX, make_index

    images = [make_image(), make_image()]
    for image in images:
        push_image(upstream_client, "team/multi", image)
    index, media_type = make_index(images)
    response = upstream_client.put(
        "/v2/team/multi/manifests/v2", content=index, headers={"Content-Type": media_type}
    )
    assert response.status_code == 201, response.text
    got = cache_client.get(f"/v2/{PREFIX}/team/multi/manifests/v2", headers={"Accept": OCI_INDEX})
    assert got.status_code == 200 and got.content == index
    for image in images:
        child = cache_client.get(f"/v2/{PREFIX}/team/multi/manifests/{image.digest}", headers=ACCEPT)
        assert child.status_code == 200 and child.content == image.manifest
