"""Blobs through the cache: a miss is a redirect the client follows without our upstream
credentials (case a: upstream's storage; case b: an anonymous upstream's own URL), while
one de-duplicated fill copies the blob into S3, verified; later pulls redirect to S3."""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

from direct.running import serve
from oci import assert_error, fetch, make_image, push_image, sha256
from skyport_api.app import create_app
from starlette.testclient import TestClient

from .conftest import PREFIX, wait_for, with_settings


def linked(registry, repository: str, digest: str) -> bool:
    item = registry.clients.dynamodb.get_item(
        TableName=registry.settings.table,
        Key={"PK": {"S": f"REPO#{repository}"}, "SK": {"S": f"BLOB#{digest}"}},
    )
    return "Item" in item


def test_miss_redirects_to_upstream_storage_then_to_ours(cache, cache_client, upstream, upstream_client):
    image = make_image((2048,))
    push_image(upstream_client, "team/app", image, "v1")
    layer = image.layers[0]
    digest = sha256(layer)
    response = cache_client.get(f"/v2/{PREFIX}/team/app/blobs/{digest}")
    assert response.status_code == 307
    location = response.headers["Location"]
    # Case (a): the upstream's own redirect (a presigned URL of its bucket), never ours.
    assert upstream.settings.bucket in location and cache.settings.bucket not in location
    assert fetch(location) == layer
    wait_for(lambda: linked(cache, f"{PREFIX}/team/app", digest))
    again = cache_client.get(f"/v2/{PREFIX}/team/app/blobs/{digest}")
    assert again.status_code == 307 and cache.settings.bucket in again.headers["Location"]
    assert fetch(again.headers["Location"]) == layer
    head = cache_client.head(f"/v2/{PREFIX}/team/app/blobs/{digest}")
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(layer))


def test_a_head_miss_gives_the_size_when_upstreams_head_is_a_redirect(
    cache, cache_client, upstream_client, control, storage
):
    image = make_image((3000,))
    push_image(upstream_client, "team/app", image, "v1")
    digest = sha256(image.layers[0])
    before = storage.snapshot()
    control.mode = "head-redirect"
    head = cache_client.head(f"/v2/{PREFIX}/team/app/blobs/{digest}")
    assert head.status_code == 200, head.headers
    assert head.headers["Content-Length"] == "3000" and head.headers["Docker-Content-Digest"] == digest
    # Asked of upstream: its HEAD, then the first byte by a ranged GET (its redirect to its
    # storage followed); a HEAD copies nothing.
    assert control.count("HEAD", f"/blobs/{digest}") == 1 and control.count("GET", f"/blobs/{digest}") == 1
    assert cache.cache_fill.launcher.launched == 0
    assert storage.snapshot() == before
    missing = cache_client.head(f"/v2/{PREFIX}/team/app/blobs/sha256:{'4' * 64}")
    assert missing.status_code == 404


def test_an_anonymous_upstream_serving_bytes_itself_is_redirected_to(
    cache, upstream, upstream_client, control
):
    # Case (b): an upstream that answers 200 with the bytes (its blob delivery is "proxy").
    proxying = with_settings(upstream, blob_delivery="proxy")
    with serve(proxying) as served:
        cache.cache_rules.add("anon", served.url)
        image = make_image((1024,))
        push_image(upstream_client, "team/app", image, "v1")
        digest = sha256(image.layers[0])
        with TestClient(create_app(cache), follow_redirects=False) as client:
            response = client.get(f"/v2/anon/team/app/blobs/{digest}")
            assert response.status_code == 307
            assert response.headers["Location"] == f"{served.url}/v2/team/app/blobs/{digest}"
            wait_for(lambda: linked(cache, "anon/team/app", digest))


def test_a_hundred_concurrent_misses_start_one_fill(cache, upstream_client, control):
    image = make_image((4096,))
    push_image(upstream_client, "team/app", image, "v1")
    digest = sha256(image.layers[0])
    statuses: list[int] = []
    with TestClient(create_app(cache), follow_redirects=False) as client:

        def pull() -> None:
            statuses.append(client.get(f"/v2/{PREFIX}/team/app/blobs/{digest}").status_code)

        threads = [threading.Thread(target=pull) for _ in range(30)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert statuses == [307] * 30
    wait_for(lambda: linked(cache, f"{PREFIX}/team/app", digest))
    fills = cache.cache_fill.launcher
    wait_for(lambda: fills.tally.total() == fills.launched)
    # One copy. A miss that came as the fill ended may have launched again, found it present.
    assert fills.tally["filled"] == 1, fills.tally
    assert set(fills.tally) <= {"filled", "present"}, fills.tally
    # Each miss asked upstream for its redirect once, and one fill fetched the blob.
    assert control.count("GET", f"/blobs/{digest}") <= 30 + 1


def test_a_corrupted_upstream_blob_is_never_stored(cache, cache_client, upstream, upstream_client, storage):
    image = make_image((3000,))
    push_image(upstream_client, "team/app", image, "v1")
    digest = sha256(image.layers[0])
    record = upstream.clients.dynamodb.get_item(
        TableName=upstream.settings.table, Key={"PK": {"S": f"BLOB#{digest}"}, "SK": {"S": "META"}}
    )["Item"]
    upstream.clients.s3.put_object(
        Bucket=upstream.settings.bucket, Key=record["s3_key"]["S"], Body=b"x" * 3000
    )
    before = storage.snapshot()
    response = cache_client.get(f"/v2/{PREFIX}/team/app/blobs/{digest}")
    assert response.status_code == 307  # upstream's own URL: the client checks the digest itself
    fills = cache.cache_fill.launcher
    wait_for(lambda: fills.outcomes.get(f"{PREFIX}/team/app@{digest}") is not None)
    assert fills.outcomes[f"{PREFIX}/team/app@{digest}"] == "mismatch"
    assert storage.snapshot() == before  # no object, no upload, no record; the lease is gone


def test_unknown_blob_upstream(cache_client, storage):
    before = storage.snapshot()
    response = cache_client.get(f"/v2/{PREFIX}/team/app/blobs/sha256:{'1' * 64}")
    assert_error(response, 404, "BLOB_UNKNOWN")
    assert storage.snapshot() == before


def test_redirects_carry_no_credentials(cache_client, upstream_client, served_upstream):
    image = make_image((1024,))
    push_image(upstream_client, "team/app", image, "v1")
    response = cache_client.get(f"/v2/{PREFIX}/team/app/blobs/{sha256(image.layers[0])}")
    location = urlsplit(response.headers["Location"])
    assert location.username is None and location.password is None


def test_cached_content_takes_part_in_events_and_usage(cache, cache_client, upstream_client):
    from skyport.events import registry_events
    from stream_reader import stream_records

    image = make_image((1024,))
    digest = push_image(upstream_client, "team/app", image, "v1")
    repository = f"{PREFIX}/team/app"
    assert (
        cache_client.get(f"/v2/{repository}/manifests/v1", headers={"Accept": image.media_type}).status_code
        == 200
    )
    layer = sha256(image.layers[0])
    cache_client.get(f"/v2/{repository}/blobs/{layer}")
    wait_for(lambda: linked(cache, repository, layer))
    events = [event for record in stream_records(cache) for event in registry_events(record)]
    kinds = {(event.type, event.repository, event.digest) for event in events}
    assert ("manifest.pushed", repository, digest) in kinds
    assert ("tag.created", repository, digest) in kinds
    usage = cache.usage.of(repository)
    assert usage.fields()["blobs"] >= 1 and usage.stored_bytes >= len(image.layers[0])


def test_an_upstream_redirect_to_a_link_local_address_is_not_followed(cache, cache_client, control, storage):
    before = storage.snapshot()
    control.mode = "metadata-redirect"
    response = cache_client.get(f"/v2/{PREFIX}/team/app/blobs/sha256:{'2' * 64}")
    error = assert_error(response, 503, "UNAVAILABLE")
    assert "169.254" not in response.headers.get("Location", "")
    assert "not followed" in error["message"]
    assert cache.cache_fill.launcher.launched == 0
    assert storage.snapshot() == before


def test_a_blob_miss_while_upstream_is_down_or_limiting(cache_client, control, storage):
    before = storage.snapshot()
    path = f"/v2/{PREFIX}/team/app/blobs/sha256:{'3' * 64}"
    control.mode = "down"
    response = cache_client.get(path)
    assert_error(response, 503, "UNAVAILABLE")
    assert response.headers["Retry-After"].isdigit()
    control.mode = "limit"
    response = cache_client.get(path)
    assert_error(response, 429, "TOOMANYREQUESTS")
    assert response.headers["Retry-After"] == "7"
    assert storage.snapshot() == before
