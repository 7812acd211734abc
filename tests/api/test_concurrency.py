"""Concurrent requests: pushes of one blob, one tag, PATCHes on one upload, a manifest push
against a blob delete. Each thread has its own TestClient (its own event loop) on the same
app, so the requests really overlap; a barrier starts them together."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import pytest
from oci import (
    OCI_MANIFEST,
    MiB,
    assert_error,
    fetch,
    make_image,
    push_blob,
    put_manifest,
    sha256,
    upload_path,
    with_digest,
)
from starlette.testclient import TestClient

ROUNDS = 3


@pytest.fixture
def clients(client):
    """Four clients on the app behind ``client`` (the first is ``client`` itself)."""
    with ExitStack() as stack:
        others = [stack.enter_context(TestClient(client.app, follow_redirects=False)) for _ in range(3)]
        yield [client, *others]


def together(*calls: Callable[[], object]) -> list:
    """Run the calls in threads released at the same instant; their results, in order."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return [future.result(timeout=120) for future in [pool.submit(run, call) for call in calls]]


@pytest.mark.parametrize("mode", ["post", "patch", "put"])
def test_same_blob_pushed_at_once(clients, storage, mode):
    data = os.urandom(300_000)
    digests = together(*[lambda c=c: push_blob(c, "team/app", data, mode=mode) for c in clients])
    assert digests == [sha256(data)] * len(clients)
    snapshot = storage.snapshot()
    assert [i["PK"]["S"] for i in snapshot["items"] if i["SK"]["S"] == "META"] == [f"BLOB#{sha256(data)}"]
    # The first writer's bytes are kept; the others' copies are deleted.
    assert len([key for key, _, _ in snapshot["objects"] if key.startswith("blobs/")]) == 1
    assert [key for key, _, _ in snapshot["objects"] if key.startswith("uploads/")] == []
    assert snapshot["multipart_uploads"] == []
    head = clients[0].head(f"/v2/team/app/blobs/{sha256(data)}")
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(data))
    assert fetch(clients[0].get(f"/v2/team/app/blobs/{sha256(data)}").headers["Location"]) == data


def test_same_blob_pushed_to_several_repositories_at_once(clients):
    data = os.urandom(50_000)
    repos = [f"team/app{i}" for i in range(len(clients))]
    together(
        *[lambda c=c, r=r: push_blob(c, r, data, mode="post") for c, r in zip(clients, repos, strict=True)]
    )
    for repo in repos:
        assert fetch(clients[0].get(f"/v2/{repo}/blobs/{sha256(data)}").headers["Location"]) == data


def test_same_tag_pushed_at_once(clients):
    client = clients[0]
    images = [make_image(layer_sizes=(10,)) for _ in range(2)]
    for image in images:
        for blob in (image.config, *image.layers):
            push_blob(client, "team/app", blob, mode="post")
    for _ in range(ROUNDS):
        responses = together(
            *[
                lambda c=c, i=i: put_manifest(c, "team/app", "latest", i.manifest, OCI_MANIFEST)
                for c, i in zip(clients[:2], images, strict=True)
            ]
        )
        assert [r.status_code for r in responses] == [201, 201]
        got = client.get("/v2/team/app/manifests/latest")
        assert got.status_code == 200
        assert got.content in (images[0].manifest, images[1].manifest)
        assert got.headers["Docker-Content-Digest"] == sha256(got.content)
        for image in images:
            assert client.get(f"/v2/team/app/manifests/{image.digest}").content == image.manifest
        assert client.get("/v2/team/app/tags/list").json()["tags"] == ["latest"]


def test_different_tags_pushed_at_once(clients):
    client = clients[0]
    image = make_image(layer_sizes=(10,))
    for blob in (image.config, *image.layers):
        push_blob(client, "team/app", blob, mode="post")
    tags = [f"t{i}" for i in range(len(clients))]
    responses = together(
        *[
            lambda c=c, t=t: put_manifest(c, "team/app", t, image.manifest, OCI_MANIFEST)
            for c, t in zip(clients, tags, strict=True)
        ]
    )
    assert [r.status_code for r in responses] == [201] * len(clients)
    assert client.get("/v2/team/app/tags/list").json()["tags"] == tags
    assert client.get("/v2/_catalog").json()["repositories"] == ["team/app"]


def test_racing_patches_on_one_upload(clients):
    """Both claim the upload at offset 0: one wins, the other is refused with an OCI error
    (409 while the winner holds the upload, 416 once the winner has moved it on).

    moto's conditional writes are not atomic under concurrent requests, so now and then
    both claims go through (DynamoDB never lets them); the loser then fails at its save
    (409), and must leave the winner's upload whole: each request's tail object is its
    own (storage/keys.py), so its clean-up cannot delete the winner's."""
    client = clients[0]
    for _ in range(ROUNDS):
        location = upload_path(client.post("/v2/team/app/blobs/uploads/").headers["Location"])
        bodies = [os.urandom(MiB), os.urandom(MiB)]
        responses = together(
            *[
                lambda c=c, b=b, at=location: c.patch(
                    at, content=b, headers={"Content-Range": f"0-{len(b) - 1}"}
                )
                for c, b in zip(clients[:2], bodies, strict=True)
            ]
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses in ([202, 409], [202, 416]), [(r.status_code, r.text) for r in responses]
        loser = next(r for r in responses if r.status_code != 202)
        assert_error(loser, loser.status_code, {409: "UPLOAD_BUSY", 416: "RANGE_INVALID"}[loser.status_code])
        winner = bodies[[r.status_code for r in responses].index(202)]
        status = client.get(location)
        assert status.status_code == 204 and status.headers["Range"] == f"0-{MiB - 1}"
        response = client.put(with_digest(location, sha256(winner)))
        assert response.status_code == 201, response.text
        assert fetch(client.get(f"/v2/team/app/blobs/{sha256(winner)}").headers["Location"]) == winner


def test_racing_streamed_patches_on_one_upload(clients):
    """Without Content-Range (docker's streamed PATCH) a second request that finds the
    upload free appends; one that finds it held is refused. Either way the upload holds
    the bytes of the requests that succeeded, in the order they succeeded."""
    client = clients[0]
    location = upload_path(client.post("/v2/team/app/blobs/uploads/").headers["Location"])
    bodies = [b"a" * 100_000, b"b" * 100_000]
    responses = together(
        *[lambda c=c, b=b: c.patch(location, content=b) for c, b in zip(clients[:2], bodies, strict=True)]
    )
    for response in responses:
        if response.status_code != 202:
            assert_error(response, 409, "UPLOAD_BUSY")
    # Each success moved the upload on by its body; in the order of their Range ends.
    done = sorted(
        (int(r.headers["Range"].split("-")[1]), body)
        for r, body in zip(responses, bodies, strict=True)
        if r.status_code == 202
    )
    assert [end for end, _ in done] == [100_000 * (i + 1) - 1 for i in range(len(done))]
    data = b"".join(body for _, body in done)
    response = client.put(with_digest(location, sha256(data)))
    assert response.status_code == 201, response.text


@pytest.fixture
def direct_clients(asgi_client):
    """Two clients straight on the ASGI app: a request can stop half way through its body
    (behind the Lambda gateway the body is read whole before the function starts)."""
    with TestClient(asgi_client.app, follow_redirects=False) as second:
        yield asgi_client, second


def test_upload_held_by_a_request_is_busy(direct_clients, storage):
    first, second = direct_clients
    location = upload_path(first.post("/v2/team/app/blobs/uploads/").headers["Location"])
    started, release = threading.Event(), threading.Event()

    def slow_body():  # half the body, then wait: the PATCH holds the upload meanwhile
        yield b"x" * 1000
        started.set()
        assert release.wait(30)
        yield b"y" * 1000

    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(first.patch, location, content=slow_body())
        assert started.wait(30)
        before = storage.snapshot()
        assert_error(
            second.patch(location, content=b"z", headers={"Content-Range": "0-0"}),
            409,
            "UPLOAD_BUSY",
        )
        assert_error(second.patch(location, content=b"z"), 409, "UPLOAD_BUSY")
        assert_error(second.put(with_digest(location, sha256(b"z")), content=b"z"), 409, "UPLOAD_BUSY")
        assert storage.snapshot() == before
        status = second.get(location)  # reading the status is not writing
        assert status.status_code == 204 and status.headers["Range"] == "0-0"
        release.set()
        response = slow.result(30)
    assert response.status_code == 202 and response.headers["Range"] == "0-1999"
    data = b"x" * 1000 + b"y" * 1000
    assert second.put(with_digest(location, sha256(data))).status_code == 201
    assert fetch(second.get(f"/v2/team/app/blobs/{sha256(data)}").headers["Location"]) == data


def test_upload_cancelled_under_a_request(direct_clients, storage):
    first, second = direct_clients
    location = upload_path(first.post("/v2/team/app/blobs/uploads/").headers["Location"])
    started, release = threading.Event(), threading.Event()

    def slow_body():
        yield b"x" * 1000
        started.set()
        assert release.wait(30)
        yield b"y" * 1000

    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(first.patch, location, content=slow_body())
        assert started.wait(30)
        assert second.delete(location).status_code == 204
        release.set()
        response = slow.result(30)
    # The upload is gone: the request that was writing to it learns so, as an OCI error.
    assert_error(response, 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(second.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
    snapshot = storage.snapshot()
    assert [i for i in snapshot["items"] if i["PK"]["S"].startswith("UPLOAD#")] == []
    assert snapshot["multipart_uploads"] == []


def test_manifest_push_racing_blob_delete(clients):
    """Serializable outcomes only: the push checks its blobs in the same transaction that
    writes the manifest, so either it ran first (201, and the delete then unlinks the
    layer, as the spec allows) or the delete did (MANIFEST_BLOB_UNKNOWN, nothing stored)."""
    client = clients[0]
    outcomes = set()
    for round_number in range(ROUNDS * 2):
        image = make_image(layer_sizes=(10,))
        for blob in (image.config, *image.layers):
            push_blob(client, "team/app", blob, mode="post")
        layer = sha256(image.layers[0])
        tag, body = f"r{round_number}", image.manifest
        push, delete = together(
            lambda tag=tag, body=body: put_manifest(clients[1], "team/app", tag, body, OCI_MANIFEST),
            lambda layer=layer: clients[2].delete(f"/v2/team/app/blobs/{layer}"),
        )
        assert delete.status_code == 202, delete.text
        got = client.get(f"/v2/team/app/manifests/{image.digest}")
        if push.status_code == 201:
            outcomes.add("pushed first")
            assert client.head(f"/v2/team/app/blobs/{layer}").status_code == 404
            assert got.status_code == 200 and got.content == image.manifest
            assert client.get(f"/v2/team/app/manifests/r{round_number}").status_code == 200
        else:
            outcomes.add("deleted first")
            # No HEAD check here: moto rolls a failed transaction back by restoring the
            # whole table as it was when the transaction began, which can bring back the
            # link deleted meanwhile. DynamoDB isolates transactions; moto does not.
            assert_error(push, 404, "MANIFEST_BLOB_UNKNOWN")
            assert_error(got, 404, "MANIFEST_UNKNOWN")
            assert_error(client.get(f"/v2/team/app/manifests/r{round_number}"), 404, "MANIFEST_UNKNOWN")
    assert outcomes  # which orders occurred depends on scheduling
