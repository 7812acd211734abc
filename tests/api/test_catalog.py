"""The catalog (`GET /v2/_catalog`, as Distribution serves it): lexical order, `n`/`last`, Link."""

import re
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import pytest
from oci import assert_error, make_image, push_blob, push_image
from skyport.catalog import MAX_EXAMINED, SCAN_PAGE
from skyport.registry import Registry
from skyport.storage import keys
from skyport_api.app import create_app
from starlette.testclient import TestClient

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


# --- bounded work for callers who see few repositories (auth on) ---------------------------

MANY = MAX_EXAMINED + 1500  # more than one request examines


def add_catalog_entries(registry: Registry, names: list[str]) -> None:
    """Catalog items written straight to the table: what pushes to ``names`` would leave
    in the catalog, at a fraction of the cost."""
    dynamodb, table = registry.clients.dynamodb, registry.settings.table
    for start in range(0, len(names), 25):  # BatchWriteItem takes 25 items
        dynamodb.batch_write_item(
            RequestItems={
                table: [
                    {"PutRequest": {"Item": keys.catalog_entry(name)}} for name in names[start : start + 25]
                ]
            }
        )


@pytest.fixture
def many_repositories(registry: Registry) -> list[str]:
    names = [f"repo/{i:05d}" for i in range(MANY)]
    add_catalog_entries(registry, names)
    return names


@pytest.fixture
def auth_client(registry: Registry) -> TestClient:
    with TestClient(
        create_app(Registry(replace(registry.settings, auth="on"), clients=registry.clients)),
        follow_redirects=False,
    ) as client:
        yield client


def follow(client: TestClient, path: str) -> tuple[list[str], list[list[str]]]:
    """Every page from ``path`` on, following Link headers: (all names, the pages)."""
    pages = []
    while path:
        response = client.get(path)
        assert response.status_code == 200, response.text
        pages.append(response.json()["repositories"])
        link = response.headers.get("Link")
        path = LINK.match(link)["url"] if link else None
    return [name for page in pages for name in page], pages


def test_a_caller_who_sees_nothing_gets_a_bounded_answer(auth_client, many_repositories, dynamodb_calls):
    """One request reads at most MAX_EXAMINED names, SCAN_PAGE per Query, then answers
    with what it found (here nothing) and a Link on from the last name it examined."""
    dynamodb_calls.clear()
    response = auth_client.get("/v2/_catalog?n=1")
    assert response.status_code == 200
    assert response.json() == {"repositories": []}
    assert dynamodb_calls.partitions.count(keys.CATALOG) <= -(-MAX_EXAMINED // SCAN_PAGE)
    parts = urlsplit(LINK.match(response.headers["Link"])["url"])
    assert parse_qs(parts.query) == {"n": ["1"], "last": [many_repositories[MAX_EXAMINED - 1]]}
    # The anonymous caller sees nothing, and no Link leads past the end.
    names, pages = follow(auth_client, "/v2/_catalog?n=1")
    assert names == [] and len(pages) == 2


@pytest.mark.parametrize("n", [1, 2, 100])
def test_following_links_reaches_every_visible_repository_once(
    registry, auth_client, many_repositories, dynamodb_calls, n
):
    visible = [many_repositories[i] for i in (0, 1, 2, MAX_EXAMINED - 1, MAX_EXAMINED, MANY - 1)]
    for name in visible:
        registry.identities.set_public(name)
    dynamodb_calls.clear()
    names, pages = follow(auth_client, f"/v2/_catalog?n={n}")
    assert names == visible
    assert all(len(page) <= n for page in pages)
    # No request examined more than its share: the whole walk costs about one Query
    # per SCAN_PAGE names, not one per page of n.
    assert dynamodb_calls.partitions.count(keys.CATALOG) <= len(pages) + -(-MANY // SCAN_PAGE)
