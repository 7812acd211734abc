"""The catalog (`GET /v2/_catalog`, as Distribution serves it): lexical order, `n`/`last`, Link."""

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from oci import assert_error, make_image, push_blob, push_image

REPOSITORIES = ["b", "a/x", "a", "c/d/e", "a-b", "ab", "a/x/y", "0"]
LINK = re.compile(r'^<(?P<url>[^>]+)>; rel="next"$')


@pytest.fixture
def repositories(client):
    image = make_image(layer_sizes=())  # a config blob and a manifest per repository
    for name in REPOSITORIES:
        push_image(client, name, image, "v1")
    return sorted(REPOSITORIES)


def test_empty_registry(client):
    response = client.get("/v2/_catalog")
    assert response.status_code == 200
    assert response.json() == {"repositories": []}


def test_sorted_lexically(client, repositories):
    response = client.get("/v2/_catalog")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"repositories": repositories}
    assert "Link" not in response.headers


def test_only_repositories_with_manifests(client, repositories):
    push_blob(client, "blobs/only", b"data", mode="post")
    assert client.get("/v2/_catalog").json()["repositories"] == repositories


def test_n_and_link(client, repositories):
    response = client.get("/v2/_catalog?n=2")
    assert response.json() == {"repositories": repositories[:2]}
    parts = urlsplit(LINK.match(response.headers["Link"])["url"])
    assert parts.path == "/v2/_catalog"
    assert parse_qs(parts.query) == {"n": ["2"], "last": [repositories[1]]}


@pytest.mark.parametrize("n", [1, 3])
def test_following_links_gives_every_repository_once(client, repositories, n):
    path, items, pages = f"/v2/_catalog?n={n}", [], 0
    while path:
        response = client.get(path)
        assert response.status_code == 200
        page = response.json()["repositories"]
        assert 0 < len(page) <= n
        items += page
        pages += 1
        link = response.headers.get("Link")
        path = LINK.match(link)["url"] if link else None
    assert items == repositories
    assert pages == -(-len(repositories) // n)


def test_last_with_a_slash(client, repositories):
    response = client.get("/v2/_catalog", params={"last": "a/x"})
    assert response.json()["repositories"] == [r for r in repositories if r > "a/x"]
    response = client.get("/v2/_catalog", params={"n": 1, "last": "a/x"})
    assert response.json()["repositories"] == ["a/x/y"]
    parts = urlsplit(LINK.match(response.headers["Link"])["url"])
    assert parse_qs(parts.query)["last"] == ["a/x/y"]


def test_n_zero(client, repositories):
    response = client.get("/v2/_catalog?n=0")
    assert response.status_code == 200
    assert response.json() == {"repositories": []}
    assert "Link" not in response.headers


@pytest.mark.parametrize("n", ["-1", "x", "1e3"])
def test_invalid_n(client, n):
    assert_error(client.get("/v2/_catalog", params={"n": n}), 400, "PAGINATION_NUMBER_INVALID")


def test_repository_stays_listed_after_its_tags_go(client):
    push_image(client, "team/app", make_image(), "v1")
    assert client.delete("/v2/team/app/manifests/v1").status_code == 202
    assert client.get("/v2/_catalog").json() == {"repositories": ["team/app"]}
