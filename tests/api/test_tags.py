"""Tag listing (distribution-spec "Listing Tags"): lexical order, `n`/`last`, the Link header."""

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from oci import OCI_MANIFEST, assert_error, make_image, push_image, put_manifest

TAGS = ["latest", "v1.10", "v1.9", "1.0", "10", "2", "A", "a-b", "_x"]
LINK = re.compile(r'^<(?P<url>[^>]+)>; rel="next"$')


@pytest.fixture
def tagged(client):
    image = make_image(layer_sizes=())
    push_image(client, "team/app", image)
    for tag in TAGS:
        assert put_manifest(client, "team/app", tag, image.manifest, OCI_MANIFEST).status_code == 201
    return sorted(TAGS)  # Python's str order is the bytewise (lexical) order for ASCII


def follow(client, path):
    """All pages, following Link headers; returns (items, pages)."""
    items, pages = [], []
    while True:
        response = client.get(path)
        assert response.status_code == 200, response.text
        page = response.json()["tags"]
        pages.append(page)
        items += page
        link = response.headers.get("Link")
        if link is None:
            return items, pages
        match = LINK.match(link)
        assert match, link
        path = match["url"]


def test_sorted_lexically(client, tagged):
    response = client.get("/v2/team/app/tags/list")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"name": "team/app", "tags": tagged}
    assert "Link" not in response.headers


def test_n_limits_and_link_leads_on(client, tagged):
    response = client.get("/v2/team/app/tags/list?n=2")
    assert response.json() == {"name": "team/app", "tags": tagged[:2]}
    url = LINK.match(response.headers["Link"])["url"]
    parts = urlsplit(url)
    assert parts.path == "/v2/team/app/tags/list"
    assert parse_qs(parts.query) == {"n": ["2"], "last": [tagged[1]]}


@pytest.mark.parametrize("n", [1, 2, 4])
def test_following_links_gives_every_tag_once(client, tagged, n):
    items, pages = follow(client, f"/v2/team/app/tags/list?n={n}")
    assert items == tagged
    assert all(len(page) == n for page in pages[:-1]) and 0 < len(pages[-1]) <= n


def test_n_equal_to_the_count_has_no_link(client, tagged):
    response = client.get(f"/v2/team/app/tags/list?n={len(tagged)}")
    assert response.json()["tags"] == tagged
    assert "Link" not in response.headers
    response = client.get(f"/v2/team/app/tags/list?n={len(tagged) + 1}")
    assert response.json()["tags"] == tagged and "Link" not in response.headers


def test_last(client, tagged):
    response = client.get(f"/v2/team/app/tags/list?last={tagged[3]}")
    assert response.json()["tags"] == tagged[4:]
    # `last` need not be a tag that exists: the listing starts after it, lexically.
    response = client.get("/v2/team/app/tags/list?last=b")
    assert response.json()["tags"] == [t for t in tagged if t > "b"]
    response = client.get(f"/v2/team/app/tags/list?n=2&last={tagged[0]}")
    assert response.json()["tags"] == tagged[1:3]


def test_last_past_the_end(client, tagged):
    response = client.get("/v2/team/app/tags/list?last=zzzz")
    assert response.status_code == 200
    assert response.json() == {"name": "team/app", "tags": []}
    assert "Link" not in response.headers


def test_n_zero(client, tagged):
    response = client.get("/v2/team/app/tags/list?n=0")
    assert response.status_code == 200
    assert response.json() == {"name": "team/app", "tags": []}
    assert "Link" not in response.headers


@pytest.mark.parametrize("n", ["-1", "abc", "1.5", " 2"])
def test_invalid_n(client, n):
    assert_error(client.get("/v2/team/app/tags/list", params={"n": n}), 400, "PAGINATION_NUMBER_INVALID")


def test_unknown_repository(client):
    assert_error(client.get("/v2/team/nothing/tags/list"), 404, "NAME_UNKNOWN")
    assert_error(client.get("/v2/team/tags/list"), 404, "NAME_UNKNOWN")
    assert_error(client.get("/v2/team/nothing/tags/list?n=0"), 404, "NAME_UNKNOWN")


def test_repository_with_blobs_only_is_unknown(client):
    from oci import push_blob

    push_blob(client, "blobs/only", b"data", mode="post")
    assert_error(client.get("/v2/blobs/only/tags/list"), 404, "NAME_UNKNOWN")


def test_untagged_repository_lists_no_tags(client):
    image = make_image()
    push_image(client, "team/app", image, "only")
    assert client.delete("/v2/team/app/manifests/only").status_code == 202
    response = client.get("/v2/team/app/tags/list")
    assert response.status_code == 200 and response.json() == {"name": "team/app", "tags": []}


def test_tags_are_per_repository(client):
    image = make_image()
    push_image(client, "team/app", image, "a")
    push_image(client, "team/app/sub", image, "b")
    push_image(client, "team/ap", image, "c")
    assert client.get("/v2/team/app/tags/list").json() == {"name": "team/app", "tags": ["a"]}
    assert client.get("/v2/team/app/sub/tags/list").json() == {
        "name": "team/app/sub",
        "tags": ["b"],
    }
    assert client.get("/v2/team/ap/tags/list").json() == {"name": "team/ap", "tags": ["c"]}


def test_tag_grammar(client):
    image = make_image()
    push_image(client, "team/app", image)
    longest = "t" + "x" * 127
    for tag in ("_", "a", "A.b-c_d", "1", longest):
        assert put_manifest(client, "team/app", tag, image.manifest, OCI_MANIFEST).status_code == 201, tag
    assert client.get("/v2/team/app/tags/list").json()["tags"] == sorted(["_", "a", "A.b-c_d", "1", longest])
    for tag in (longest + "x", ".a", "-a", "a+b", "a:b"):
        response = put_manifest(client, "team/app", tag, image.manifest, OCI_MANIFEST)
        assert response.status_code == 400, tag
        assert response.json()["errors"][0]["code"] in ("TAG_INVALID", "DIGEST_INVALID"), tag
