"""The usage extension over HTTP, through every ``client`` flavour: per repository figures,
the total that counts a shared layer once, the repository endpoint agreeing with the
listing, pagination with Link, and hostile query values answered 400 with nothing stored."""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from oci import assert_error, make_image

from .conftest import SHARED_LAYER, blob_bytes, image_with_shared_layer, push, record_pull

LINK = re.compile(r'^<(?P<url>[^>]+)>; rel="next"$')


@pytest.fixture
def pushed(client):
    """Three repositories: team/a and team/b share a layer; other/c shares nothing."""
    started = int(time.time() * 1000)
    images = {
        "team/a": image_with_shared_layer(1000),
        "team/b": image_with_shared_layer(2000),
        "other/c": make_image((500,)),
    }
    for repository, image in images.items():
        push(client, repository, image, "v1")
    push(client, "team/a", images["team/a"], "latest")  # a second tag, same manifest
    return images, started, int(time.time() * 1000)


def test_each_repository_and_the_total_that_counts_a_shared_layer_once(client, pushed, registry):
    images, started, ended = pushed
    pulled_at = record_pull(registry, "team/b", images["team/b"].digest)

    response = client.get("/v2/_skyport/usage")

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    by_name = {r["name"]: r for r in body["repositories"]}
    assert list(by_name) == ["other/c", "team/a", "team/b"]  # catalog order
    for name, image in images.items():
        usage = by_name[name]
        assert usage["blobs"] == 1 + len(image.layers)
        assert usage["blob_bytes"] == blob_bytes(image)
        assert (usage["manifests"], usage["manifest_bytes"]) == (1, len(image.manifest))
        assert usage["stored_bytes"] == blob_bytes(image) + len(image.manifest)
        assert started <= usage["last_push_ms"] <= ended
    assert by_name["team/a"]["tags"] == 2 and by_name["team/b"]["tags"] == 1
    assert by_name["team/a"]["last_pull_ms"] is None  # never
    assert by_name["team/b"]["last_pull_ms"] == pulled_at

    total = body["total"]
    every = sum(blob_bytes(image) for image in images.values())
    assert total["blob_bytes"] == every - len(SHARED_LAYER)  # the shared layer once
    assert total["blobs"] == sum(r["blobs"] for r in by_name.values()) - 1
    assert total["manifest_bytes"] == sum(len(image.manifest) for image in images.values())
    assert total["stored_bytes"] == total["blob_bytes"] + total["manifest_bytes"]
    assert (total["repositories"], total["manifests"], total["tags"]) == (3, 3, 4)
    assert total["last_pull_ms"] == pulled_at
    assert total["last_push_ms"] == max(r["last_push_ms"] for r in by_name.values())


def test_the_repository_endpoint_agrees_with_the_listing(client, pushed):
    listed = {r["name"]: r for r in client.get("/v2/_skyport/usage").json()["repositories"]}
    for name in listed:
        response = client.get(f"/v2/{name}/_skyport/usage")
        assert response.status_code == 200, response.text
        assert response.json() == listed[name]


def test_pages_follow_link_and_each_total_covers_its_page(client, pushed):
    names, path = [], "/v2/_skyport/usage?n=2"
    pages = 0
    while path:
        response = client.get(path)
        assert response.status_code == 200, response.text
        body = response.json()
        names += [r["name"] for r in body["repositories"]]
        assert body["total"]["repositories"] == len(body["repositories"])
        pages += 1
        link = response.headers.get("Link")
        path = LINK.match(link)["url"] if link else None
        if path:
            assert parse_qs(urlsplit(path).query)["n"] == ["2"]
    assert (names, pages) == (["other/c", "team/a", "team/b"], 2)
    last = client.get("/v2/_skyport/usage", params={"last": "team/a"}).json()
    assert [r["name"] for r in last["repositories"]] == ["team/b"]


def test_an_empty_registry_and_n_zero(client):
    assert client.get("/v2/_skyport/usage").json()["repositories"] == []
    assert client.get("/v2/_skyport/usage").json()["total"]["stored_bytes"] == 0
    response = client.get("/v2/_skyport/usage?n=0")
    assert response.status_code == 200 and response.json()["repositories"] == []
    assert "Link" not in response.headers


def test_an_unknown_or_invalid_repository(client):
    assert_error(client.get("/v2/team/none/_skyport/usage"), 404, "NAME_UNKNOWN")
    assert_error(client.get("/v2/Team/_skyport/usage"), 400, "NAME_INVALID")


@pytest.mark.parametrize("n", ["-1", "x", "1e3", "\u0661", "\uff11", "1 ", "0x10"])
def test_hostile_n_is_a_400_and_stores_nothing(client, pushed, storage, n):
    before = storage.snapshot()
    assert_error(client.get("/v2/_skyport/usage", params={"n": n}), 400, "PAGINATION_NUMBER_INVALID")
    assert storage.snapshot() == before


def test_a_huge_n_is_clamped_and_leads_on(client, pushed):
    response = client.get("/v2/_skyport/usage", params={"n": "9" * 400})
    assert response.status_code == 200, response.text
    assert len(response.json()["repositories"]) == 3


@pytest.mark.parametrize("last", ["../x", "UPPER", "a" * 300, "team/a\r\nX: y", "\u0661", "_skyport"])
def test_a_bad_last_is_a_400(client, pushed, storage, last):
    before = storage.snapshot()
    assert_error(client.get("/v2/_skyport/usage", params={"last": last}), 400, "NAME_INVALID")
    assert storage.snapshot() == before


def test_the_registry_total_covers_every_page(client, pushed):
    response = client.get("/v2/_skyport/usage/total")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["complete"] is True
    every = client.get("/v2/_skyport/usage").json()["total"]  # one page holds all three
    assert body["total"] == every
    one_page = client.get("/v2/_skyport/usage", params={"n": 1}).json()["total"]
    assert one_page["repositories"] == 1 and body["total"]["repositories"] == 3


def test_the_total_stops_at_its_deadline_with_a_lower_bound(registry, client, pushed):
    total, complete = registry.usage.total(deadline=0)
    assert complete is False and total.repositories == 0
    total, complete = registry.usage.total()
    assert complete is True and total.repositories == 3
