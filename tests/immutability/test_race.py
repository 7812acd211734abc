"""Concurrent pushes of one new immutable tag: the tag's write in put_manifest's
transaction carries TAG_NEW_OR_SAME_DIGEST, so of two pushes with different digests
exactly one wins, every round; with the same digest both succeed. Each thread has its own
TestClient on the same app (its own event loop), released together by a barrier."""

from __future__ import annotations

from contextlib import ExitStack

import pytest
from oci import assert_error, make_image
from starlette.testclient import TestClient

from .conftest import push_blobs, put, together

REPO = "team/app"
ROUNDS = 5


@pytest.fixture
def clients(client):
    with ExitStack() as stack:
        others = [stack.enter_context(TestClient(client.app, follow_redirects=False)) for _ in range(3)]
        yield [client, *others]


def test_racing_pushes_of_one_new_immutable_tag_have_one_winner(clients, rules):
    rules.add("team/*")
    client = clients[0]
    images = [make_image(layer_sizes=(10,)) for _ in clients]
    for image in images:
        push_blobs(client, REPO, image)
    winners: set[str] = set()
    for round_ in range(ROUNDS):
        tag = f"v{round_}"
        responses = together(
            *[lambda c=c, i=i, t=tag: put(c, REPO, t, i) for c, i in zip(clients, images, strict=True)]
        )
        statuses = [r.status_code for r in responses]
        assert sorted(statuses) == [201] + [403] * (len(clients) - 1), [
            (r.status_code, r.text) for r in responses
        ]
        winner = images[statuses.index(201)]
        for response in responses:
            if response.status_code == 403:
                assert assert_error(response, 403, "DENIED")["detail"]["tag"] == tag
        got = client.get(f"/v2/{REPO}/manifests/{tag}")
        assert got.status_code == 200 and got.content == winner.manifest
        winners.add(winner.digest)
        # The losers' manifests were not stored either: the transaction was refused whole.
        for image in images:
            if image.digest not in winners:
                assert_error(client.get(f"/v2/{REPO}/manifests/{image.digest}"), 404, "MANIFEST_UNKNOWN")
    assert client.get(f"/v2/{REPO}/tags/list").json()["tags"] == [f"v{i}" for i in range(ROUNDS)]


def test_racing_pushes_of_one_immutable_tag_with_one_digest_all_succeed(clients, rules):
    rules.add("team/*")
    image = make_image(layer_sizes=(10,))
    push_blobs(clients[0], REPO, image)
    for round_ in range(ROUNDS):
        responses = together(*[lambda c=c, t=f"v{round_}": put(c, REPO, t, image) for c in clients])
        assert [r.status_code for r in responses] == [201] * len(clients), [r.text for r in responses]
        assert clients[0].get(f"/v2/{REPO}/manifests/v{round_}").content == image.manifest
