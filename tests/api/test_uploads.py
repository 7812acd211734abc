"""Blob uploads (distribution-spec "Pushing blobs"): POST (plain, monolithic, mount), PATCH
(streamed or with Content-Range), PUT, GET status, DELETE."""

import base64
import contextlib
import hashlib
import os
import uuid
from dataclasses import replace
from urllib.parse import urlsplit

import pytest
from oci import (
    EMPTY_BLOB_SHA256,
    MiB,
    assert_error,
    fetch,
    path_of,
    push_blob,
    sha256,
    sha512,
    upload_path,
)
from skyport.errors import RangeInvalid
from skyport.registry import Registry
from skyport.storage import multipart
from skyport_api.app import create_app
from skyport_api.routes.uploads import parse_content_range
from starlette.testclient import TestClient


def upload_host(client) -> str:
    """The host a started upload's Location names: the upload service's in the
    ``uploadsvc`` variant, else none (relative, on the registry)."""
    return getattr(client, "upload_host", "")


def start(client, repo="team/app"):
    response = client.post(f"/v2/{repo}/blobs/uploads/")
    assert response.status_code == 202, response.text
    return upload_path(response.headers["Location"])


def patch(client, location, data, start_at=None, **headers):
    if start_at is not None:
        headers["Content-Range"] = f"{start_at}-{start_at + len(data) - 1}"
    return client.patch(
        location, content=data, headers={"Content-Type": "application/octet-stream", **headers}
    )


def patch_chunks(client, location, data, chunk=4 * MiB, start_at=0):
    """Ranged PATCHes of at most ``chunk`` bytes (small enough for a Lambda event)."""
    for offset in range(0, len(data), chunk):
        piece = data[offset : offset + chunk]
        response = patch(client, location, piece, start_at + offset)
        assert response.status_code == 202, response.text
        location = upload_path(response.headers["Location"])
    return location


def put(client, location, digest, data=b"", **headers):
    separator = "&" if "?" in location else "?"
    return client.put(f"{location}{separator}digest={digest}", content=data, headers=headers)


def assert_blob(client, repo, data, digest=None):
    digest = digest or sha256(data)
    head = client.head(f"/v2/{repo}/blobs/{digest}")
    assert head.status_code == 200, head.status_code
    assert head.headers["Content-Length"] == str(len(data))
    assert head.headers["Docker-Content-Digest"] == digest
    response = client.get(f"/v2/{repo}/blobs/{digest}")
    assert response.status_code == 307
    assert fetch(response.headers["Location"]) == data


def upload_leftovers(storage) -> dict:
    """Anything an upload in progress keeps: its session, multipart uploads, tail objects."""
    snapshot = storage.snapshot()
    return {
        "sessions": [i for i in snapshot["items"] if i["PK"]["S"].startswith("UPLOAD#")],
        "multipart_uploads": snapshot["multipart_uploads"],
        "tails": [o for o in snapshot["objects"] if o[0].startswith("uploads/")],
    }


NO_LEFTOVERS = {"sessions": [], "multipart_uploads": [], "tails": []}


# --- POST ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v2/team/app/blobs/uploads/", "/v2/team/app/blobs/uploads"])
def test_post_starts_an_upload(client, path):
    response = client.post(path)
    assert response.status_code == 202
    location = response.headers["Location"]
    upload_id = response.headers["Docker-Upload-UUID"]
    # On the registry's host, or (uploadsvc) the upload service's, with a capability.
    assert urlsplit(location).path == f"/v2/team/app/blobs/uploads/{upload_id}"
    assert urlsplit(location).netloc == upload_host(client)
    assert ("_capability" in urlsplit(location).query) == bool(upload_host(client))
    assert response.headers["Range"] == "0-0"
    # A hint, at most S3's smallest part (smaller chunks are coalesced anyway).
    assert 0 < int(response.headers["OCI-Chunk-Min-Length"]) <= 5 * MiB
    # Each POST is a new session.
    assert client.post(path).headers["Docker-Upload-UUID"] != upload_id


def test_monolithic_post(client, storage):
    data = os.urandom(20_000)
    digest = sha256(data)
    response = client.post(
        f"/v2/team/app/blobs/uploads/?digest={digest}",
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 201
    assert response.headers["Location"] == f"/v2/team/app/blobs/{digest}"
    assert response.headers["Docker-Content-Digest"] == digest
    assert_blob(client, "team/app", data)
    assert upload_leftovers(storage) == NO_LEFTOVERS


@pytest.mark.asgi_only
@pytest.mark.big_body_to_api
def test_monolithic_post_spanning_parts(client, storage):
    data = os.urandom(17 * MiB + 1)
    push_blob(client, "team/app", data, mode="post")
    assert_blob(client, "team/app", data)
    assert upload_leftovers(storage) == NO_LEFTOVERS


@pytest.mark.parametrize("size", [3 * MiB, pytest.param(12 * MiB + 5, marks=pytest.mark.asgi_only)])
def test_post_then_put_with_the_whole_blob(client, storage, size):
    data = os.urandom(size)
    location = start(client)
    response = put(client, location, sha256(data), data)
    assert response.status_code == 201
    # The blob, on the registry's host (uploadsvc: SKYPORT_REGISTRY_URL, absolute).
    assert path_of(response.headers["Location"]) == f"/v2/team/app/blobs/{sha256(data)}"
    assert response.headers["Docker-Content-Digest"] == sha256(data)
    assert_blob(client, "team/app", data)
    assert upload_leftovers(storage) == NO_LEFTOVERS


# --- mount -----------------------------------------------------------------------------------


def test_mount_from_another_repository(client):
    data = os.urandom(5000)
    digest = push_blob(client, "source/repo", data, mode="post")
    response = client.post(f"/v2/target/repo/blobs/uploads/?mount={digest}&from=source/repo")
    assert response.status_code == 201
    assert response.headers["Location"] == f"/v2/target/repo/blobs/{digest}"
    assert response.headers["Docker-Content-Digest"] == digest
    assert_blob(client, "target/repo", data)
    assert_blob(client, "source/repo", data)


@pytest.mark.parametrize("source", ["empty/repo", "Not..Valid", "team/app"])
def test_mount_from_a_repository_without_the_blob_starts_an_upload(client, source):
    data = b"not in the source"
    if source == "team/app":  # the target itself does not hold it either
        push_blob(client, "elsewhere", b"something else", mode="post")
    digest = sha256(data)
    response = client.post(f"/v2/team/app/blobs/uploads/?mount={digest}&from={source}")
    assert response.status_code == 202
    assert response.headers["Range"] == "0-0"
    location = upload_path(response.headers["Location"])
    assert path_of(location).startswith("/v2/team/app/blobs/uploads/")
    assert put(client, location, digest, data).status_code == 201
    assert_blob(client, "team/app", data)


def test_mount_from_a_repository_where_the_blob_was_deleted(client):
    digest = push_blob(client, "source", b"deleted there", mode="post")
    assert client.delete(f"/v2/source/blobs/{digest}").status_code == 202
    response = client.post(f"/v2/target/blobs/uploads/?mount={digest}&from=source")
    assert response.status_code == 202


def test_mount_without_from_finds_the_blob_anywhere(client):
    data = os.urandom(777)
    digest = push_blob(client, "somewhere/else", data, mode="post")
    response = client.post(f"/v2/team/app/blobs/uploads/?mount={digest}")
    assert response.status_code == 201
    assert response.headers["Docker-Content-Digest"] == digest
    assert_blob(client, "team/app", data)


def test_mount_without_from_of_an_unknown_blob_starts_an_upload(client):
    response = client.post(f"/v2/team/app/blobs/uploads/?mount={sha256(b'nowhere')}")
    assert response.status_code == 202
    assert path_of(response.headers["Location"]).startswith("/v2/team/app/blobs/uploads/")


def test_mount_without_from_with_automatic_mount_off_starts_an_upload(registry):
    """SKYPORT_AUTOMATIC_MOUNT=off (the conformance suite's OCI_AUTOMATIC_CROSSMOUNT=0): a
    `mount` without `from` always opens an upload session, even for a blob the target
    repository holds; a mount with `from` still mounts."""
    off = Registry(replace(registry.settings, automatic_mount=False), clients=registry.clients)
    with TestClient(create_app(off), follow_redirects=False) as client:
        data = os.urandom(777)
        digest = push_blob(client, "somewhere/else", data, mode="post")
        for target in ("team/app", "somewhere/else"):
            response = client.post(f"/v2/{target}/blobs/uploads/?mount={digest}")
            assert response.status_code == 202, target
            assert response.headers["Location"].startswith(f"/v2/{target}/blobs/uploads/")
        assert_error(client.head(f"/v2/team/app/blobs/{digest}"), 404, "BLOB_UNKNOWN")
        response = client.post(f"/v2/team/app/blobs/uploads/?mount={digest}&from=somewhere/else")
        assert response.status_code == 201
        assert_blob(client, "team/app", data)


# --- PATCH -----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [MiB + 1, pytest.param(17 * MiB + 123, marks=pytest.mark.asgi_only)])
def test_streamed_patch_without_content_length(client, storage, size):
    """docker, podman: one PATCH, chunked transfer encoding, then PUT ?digest=."""
    data = os.urandom(size)
    location = start(client)

    def body():
        for i in range(0, len(data), 256 * 1024):
            yield data[i : i + 256 * 1024]

    response = client.patch(location, content=body())
    assert response.request.headers.get("Content-Length") is None
    assert response.status_code == 202, response.text
    assert response.headers["Range"] == f"0-{len(data) - 1}"
    location = upload_path(response.headers["Location"])
    assert location.startswith("/v2/team/app/blobs/uploads/")
    response = put(client, location, sha256(data))
    assert response.status_code == 201 and response.headers["Docker-Content-Digest"] == sha256(data)
    assert_blob(client, "team/app", data)
    assert upload_leftovers(storage) == NO_LEFTOVERS


def test_small_chunks_coalesce_into_parts(client, storage):
    data = os.urandom(11 * MiB + 300)  # 11 chunks of 1 MiB, then 300 bytes
    location = start(client)
    offset = 0
    for number in range(1, 12):
        piece = data[offset : offset + MiB]
        response = patch(client, location, piece, offset)
        assert response.status_code == 202, response.text
        offset += len(piece)
        assert response.headers["Range"] == f"0-{offset - 1}"
        location = upload_path(response.headers["Location"])
        leftovers = upload_leftovers(storage)
        # Chunks wait in a tail object until 5 MiB (S3's smallest part) have come, then
        # go out as one part: every 5th chunk empties the tail.
        tail = [(number % 5) * MiB] if number % 5 else []
        assert [size for _, size, _ in leftovers["tails"]] == tail
        assert len(leftovers["multipart_uploads"]) == (1 if number >= 5 else 0)
        if number in (3, 5):
            status = client.get(location)
            assert status.status_code == 204 and status.headers["Range"] == f"0-{offset - 1}"
    response = patch(client, location, data[offset:], offset)  # a small last chunk
    assert response.status_code == 202
    response = put(client, upload_path(response.headers["Location"]), sha256(data))
    assert response.status_code == 201, response.text
    assert_blob(client, "team/app", data)
    assert upload_leftovers(storage) == NO_LEFTOVERS


@pytest.mark.asgi_only
def test_chunks_bigger_than_a_part(client, storage):
    data = os.urandom(2 * 6 * MiB + 1000)
    location = start(client)
    for offset in (0, 6 * MiB):
        response = patch(client, location, data[offset : offset + 6 * MiB], offset)
        assert response.status_code == 202, response.text
        assert response.headers["Range"] == f"0-{offset + 6 * MiB - 1}"
        location = upload_path(response.headers["Location"])
    # The last chunk rides in the closing PUT, with its Content-Range.
    rest = data[12 * MiB :]
    response = put(client, location, sha256(data), rest, **{"Content-Range": f"{12 * MiB}-{len(data) - 1}"})
    assert response.status_code == 201, response.text
    assert_blob(client, "team/app", data)
    assert upload_leftovers(storage) == NO_LEFTOVERS


def test_put_with_a_final_chunk_without_content_range(client):
    data = os.urandom(3000)
    location = start(client)
    response = patch(client, location, data[:1000], 0)
    response = put(client, upload_path(response.headers["Location"]), sha256(data), data[1000:])
    assert response.status_code == 201, response.text
    assert_blob(client, "team/app", data)


def test_patch_after_patch_without_ranges_appends(client):
    data = os.urandom(6 * MiB)
    location = start(client)
    for piece in (data[: 2 * MiB], data[2 * MiB :]):  # the second crosses a part's size
        response = client.patch(location, content=piece)
        assert response.status_code == 202
        location = upload_path(response.headers["Location"])
    assert response.headers["Range"] == f"0-{len(data) - 1}"
    assert put(client, location, sha256(data)).status_code == 201
    assert_blob(client, "team/app", data)


# --- GET status, DELETE ----------------------------------------------------------------------


def test_status(client):
    location = start(client)
    upload_id = urlsplit(location).path.rsplit("/", 1)[1]
    response = client.get(location)
    assert response.status_code == 204
    assert response.headers["Range"] == "0-0"
    assert path_of(response.headers["Location"]) == path_of(location)
    assert response.headers["Docker-Upload-UUID"] == upload_id
    patch(client, location, b"x" * 100, 0)
    response = client.get(location)
    assert response.status_code == 204 and response.headers["Range"] == "0-99"


def test_cancel(client, storage):
    data = os.urandom(6 * MiB + 10)
    location = start(client)
    patch_chunks(client, location, data[: 6 * MiB])  # a part is out...
    patch(client, location, data[6 * MiB :], 6 * MiB)  # ...and a tail waits
    leftovers = upload_leftovers(storage)
    assert len(leftovers["multipart_uploads"]) == 1 and len(leftovers["tails"]) == 1
    response = client.delete(location)
    assert response.status_code == 204
    assert upload_leftovers(storage) == NO_LEFTOVERS
    assert_error(client.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(patch(client, location, b"more"), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(put(client, location, sha256(data)), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(client.delete(location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert client.head(f"/v2/team/app/blobs/{sha256(data)}").status_code == 404


def test_finished_upload_is_gone(client):
    location = start(client)
    assert put(client, location, sha256(b"done"), b"done").status_code == 201
    assert_error(client.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(patch(client, location, b"again"), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(put(client, location, sha256(b"done"), b"done"), 404, "BLOB_UPLOAD_UNKNOWN")


@pytest.mark.parametrize("upload_id", [str(uuid.uuid4()), "not-an-upload", "x" * 300])
def test_unknown_upload(client, upload_id):
    location = f"/v2/team/app/blobs/uploads/{upload_id}"
    assert_error(client.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(patch(client, location, b"data", 0), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(put(client, location, sha256(b"data"), b"data"), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(client.delete(location), 404, "BLOB_UPLOAD_UNKNOWN")


def test_upload_id_under_another_repository_is_unknown(client, storage):
    location = start(client, "team/app")
    patch(client, location, b"first", 0)
    upload_id = urlsplit(location).path.rsplit("/", 1)[1]
    before = storage.snapshot()
    for other in ("team/other", "team", "team/app/sub"):
        stolen = f"/v2/{other}/blobs/uploads/{upload_id}"
        assert_error(client.get(stolen), 404, "BLOB_UPLOAD_UNKNOWN")
        assert_error(patch(client, stolen, b"evil", 5), 404, "BLOB_UPLOAD_UNKNOWN")
        assert_error(patch(client, stolen, b"evil"), 404, "BLOB_UPLOAD_UNKNOWN")
        assert_error(put(client, stolen, sha256(b"firstevil"), b"evil"), 404, "BLOB_UPLOAD_UNKNOWN")
        assert_error(client.delete(stolen), 404, "BLOB_UPLOAD_UNKNOWN")
    assert storage.snapshot() == before
    response = put(client, location, sha256(b"first second"), b" second")
    assert response.status_code == 201
    assert_blob(client, "team/app", b"first second")
    assert client.head(f"/v2/team/other/blobs/{sha256(b'first second')}").status_code == 404


# --- 416 and bad ranges ----------------------------------------------------------------------


def assert_416(response, location, end):
    assert_error(response, 416, "RANGE_INVALID")
    assert response.headers["Range"] == f"0-{end}"
    assert path_of(response.headers["Location"]) == path_of(location)


def test_out_of_order_and_overlapping_chunks(client, storage):
    data = os.urandom(4096)
    location = start(client)
    assert_416(patch(client, location, data[5:10], 5), location, 0)  # first chunk must start at 0
    response = patch(client, location, data[:1024], 0)
    assert response.status_code == 202
    before = storage.snapshot()
    assert_416(patch(client, location, data[2048:3072], 2048), location, 1023)  # a gap
    assert_416(patch(client, location, data[512:2048], 512), location, 1023)  # overlap
    assert_416(patch(client, location, data[:1024], 0), location, 1023)  # the same chunk again
    assert_416(
        put(
            client,
            location,
            sha256(data),
            data[2048:],
            **{"Content-Range": f"2048-{len(data) - 1}"},
        ),
        location,
        1023,
    )
    assert storage.snapshot() == before
    status = client.get(location)
    assert status.status_code == 204 and status.headers["Range"] == "0-1023"
    response = patch(client, location, data[1024:3000], 1024)  # resume where told
    assert response.status_code == 202 and response.headers["Range"] == "0-2999"
    response = put(client, location, sha256(data), data[3000:], **{"Content-Range": f"3000-{len(data) - 1}"})
    assert response.status_code == 201, response.text
    assert_blob(client, "team/app", data)


@pytest.mark.parametrize("sent", [50, 150])
def test_chunk_length_not_matching_content_range(client, storage, sent):
    data = os.urandom(300)
    location = start(client)
    assert patch(client, location, data[:100], 0).status_code == 202
    before = storage.snapshot()
    response = client.patch(location, content=data[100 : 100 + sent], headers={"Content-Range": "100-199"})
    assert_416(response, location, 99)
    assert storage.snapshot() == before
    assert patch(client, location, data[100:], 100).status_code == 202
    assert put(client, location, sha256(data)).status_code == 201
    assert_blob(client, "team/app", data)


@pytest.mark.parametrize("content_range", ["abc", "5", "10-5", "-5", "1-", "bytes */100", "0x0-0x5"])
def test_malformed_content_range(client, storage, content_range):
    location = start(client)
    assert patch(client, location, b"0123456789", 0).status_code == 202
    before = storage.snapshot()
    response = client.patch(location, content=b"abcdef", headers={"Content-Range": content_range})
    assert_416(response, location, 9)
    assert storage.snapshot() == before
    assert put(client, location, sha256(b"0123456789abcdef"), b"abcdef").status_code == 201


@pytest.mark.parametrize("content_range", ["\u00b2-5", "0-\u00b3", "bytes=\u00b9-2/10", "\u0663-\u0665"])
def test_content_range_of_non_ascii_digits_is_malformed(content_range):
    """Unicode digits pass str.isdigit but not int(): refused as malformed (a 416),
    never a 500. A server hands header bytes through as Latin-1 (so "\u00b2" arrives),
    the TestClient re-encodes them as UTF-8: the parser is called directly."""
    with pytest.raises(RangeInvalid):
        parse_content_range(content_range)
    assert parse_content_range("bytes 3-5/10") == (3, 5)


def test_content_range_forms(client):
    """The spec's `start-end`, and RFC 9110's `bytes start-end/total` some clients send."""
    data = os.urandom(30)
    location = start(client)
    assert patch(client, location, data[:10], **{"Content-Range": "0-9"}).status_code == 202
    assert patch(client, location, data[10:20], **{"Content-Range": "bytes 10-19/30"}).status_code == 202
    assert patch(client, location, data[20:], **{"Content-Range": "bytes 20-29/*"}).status_code == 202
    assert put(client, location, sha256(data)).status_code == 201
    assert_blob(client, "team/app", data)


# --- digests ---------------------------------------------------------------------------------


def test_empty_blob(client, storage):
    assert sha256(b"") == EMPTY_BLOB_SHA256
    push_blob(client, "mono", b"", mode="post")
    push_blob(client, "put", b"", mode="put")
    push_blob(client, "patch", b"", mode="patch")
    location = start(client, "ranged")
    assert put(client, location, EMPTY_BLOB_SHA256).status_code == 201
    for repo in ("mono", "put", "patch", "ranged"):
        assert_blob(client, repo, b"")
    assert upload_leftovers(storage) == NO_LEFTOVERS


def test_sha512_monolithic(client):
    data = os.urandom(10_000)
    digest = sha512(data)
    response = client.post(f"/v2/team/app/blobs/uploads/?digest={digest}", content=data)
    assert response.status_code == 201, response.text
    assert response.headers["Docker-Content-Digest"] == digest
    assert_blob(client, "team/app", data, digest)


def test_sha512_post_then_put(client):
    data = os.urandom(3 * MiB + 1)
    digest = sha512(data)
    response = put(client, start(client), digest, data)
    assert response.status_code == 201, response.text
    assert response.headers["Docker-Content-Digest"] == digest
    assert_blob(client, "team/app", data, digest)


def test_sha512_after_chunks(client, storage):
    data = os.urandom(6 * MiB + 1)
    location = start(client)
    patch_chunks(client, location, data[: 6 * MiB])
    response = put(client, location, sha512(data), data[6 * MiB :])
    assert response.status_code == 201, response.text
    assert_blob(client, "team/app", data, sha512(data))
    assert upload_leftovers(storage) == NO_LEFTOVERS


def test_sha512_after_chunks_mismatch(client, storage):
    data = os.urandom(2000)
    location = start(client)
    assert patch(client, location, data, 0).status_code == 202
    wrong = "sha512:" + hashlib.sha512(b"other").hexdigest()
    assert_error(put(client, location, wrong), 400, "DIGEST_INVALID")
    assert client.head(f"/v2/team/app/blobs/{wrong}").status_code == 404
    assert not [o for o in storage.snapshot()["objects"] if o[0].startswith("blobs/")]


@pytest.mark.parametrize("size", [100, 6 * MiB + 100])
def test_digest_mismatch_at_put_leaves_the_upload_usable(client, storage, size):
    data = os.urandom(size)
    location = start(client)
    patch_chunks(client, location, data)
    before = storage.snapshot()
    assert_error(put(client, location, sha256(b"something else")), 400, "DIGEST_INVALID")
    assert_error(put(client, location, sha256(data + b"?"), b"!"), 400, "DIGEST_INVALID")
    assert storage.snapshot() == before
    assert client.head(f"/v2/team/app/blobs/{sha256(data)}").status_code == 404
    status = client.get(location)
    assert status.status_code == 204 and status.headers["Range"] == f"0-{size - 1}"
    response = put(client, location, sha256(data))
    assert response.status_code == 201, response.text
    assert_blob(client, "team/app", data)
    assert upload_leftovers(storage) == NO_LEFTOVERS


def test_put_without_digest(client, storage):
    location = start(client)
    before = storage.snapshot()
    assert_error(client.put(location, content=b"data"), 400, "DIGEST_INVALID")
    assert storage.snapshot() == before
    assert put(client, location, sha256(b"data"), b"data").status_code == 201


def test_same_blob_pushed_twice_is_one_blob(client, storage):
    data = os.urandom(2000)
    push_blob(client, "a", data, mode="post")
    push_blob(client, "b", data, mode="patch")
    push_blob(client, "a", data, mode="put")
    snapshot = storage.snapshot()
    assert len([o for o in snapshot["objects"] if o[0].startswith("blobs/")]) == 1
    assert [i["PK"]["S"] for i in snapshot["items"] if i["SK"]["S"] == "META"] == [f"BLOB#{sha256(data)}"]
    assert_blob(client, "a", data)
    assert_blob(client, "b", data)


@pytest.mark.asgi_only
def test_refused_request_leaves_no_multipart_upload_behind(client, storage):
    """A request that fills a part, then is refused, must not leave the part's multipart
    upload behind (nothing would ever point to it again)."""
    data = os.urandom(9 * MiB)
    location = start(client)
    before = storage.snapshot()
    response = client.patch(location, content=data, headers={"Content-Range": f"0-{len(data)}"})
    assert_error(response, 416, "RANGE_INVALID")
    assert_error(put(client, location, sha256(b"wrong"), data), 400, "DIGEST_INVALID")
    assert storage.snapshot() == before
    assert put(client, location, sha256(data), data).status_code == 201
    assert upload_leftovers(storage) == NO_LEFTOVERS


# --- what a request leaves over: a short last part, a tail object, a fold ------------------
# An upload's first request, a PATCH without Content-Range (docker, podman, skopeo stream the
# whole blob), uploads what is left over as a short last part, so the empty PUT only
# completes. Otherwise the leftover is kept as a tail object, which an empty PUT puts in
# server-side. Bytes that follow a short last part fold the upload into a new one,
# server-side. A short last part needs a first PATCH of more than a part: such tests are
# too big for a Lambda event (asgi_only).

PART = 8 * MiB  # the part size, in both client flavours (config default, template.yaml)
MIN_PART = 5 * MiB
SHORT = PART + MiB + 5  # one full part and a short one


@contextlib.contextmanager
def s3_calls(registry):
    """The S3 API calls the registry makes meanwhile, in order (botocore's before-call
    event on the registry's own client, which both client flavours share)."""
    calls: list[str] = []

    def record(event_name, **_):
        calls.append(event_name.rsplit(".", 1)[-1])

    events = registry.clients.s3.meta.events
    events.register("before-call.s3", record)
    try:
        yield calls
    finally:
        events.unregister("before-call.s3", record)


def multipart_parts(registry) -> dict[str, list[int]]:
    """Open multipart uploads, straight from S3: upload id -> part sizes, in order."""
    s3, bucket = registry.clients.s3, registry.settings.bucket
    found = {}
    for upload in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        parts = s3.list_parts(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        found[upload["UploadId"]] = [part["Size"] for part in parts.get("Parts", [])]
    return found


def objects(registry, prefix="") -> dict[str, int]:
    s3, bucket = registry.clients.s3, registry.settings.bucket
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"]: o["Size"] for o in listing}


def session_item(storage, location) -> dict:
    upload_id = urlsplit(location).path.rsplit("/", 1)[1]
    [item] = [i for i in storage.snapshot()["items"] if i["PK"]["S"] == f"UPLOAD#{upload_id}"]
    return item


def stream_whole(client, data):
    """POST, then one PATCH with ``data``, chunked transfer encoding and no Content-Length
    or Content-Range, as docker sends a layer. Returns the upload's location."""
    location = start(client)
    response = client.patch(location, content=(data[i : i + MiB] for i in range(0, len(data), MiB)))
    assert response.status_code == 202, response.text
    assert response.headers["Range"] == f"0-{len(data) - 1}"
    return upload_path(response.headers["Location"])


@pytest.mark.asgi_only
def test_streamed_patch_leaves_a_short_last_part_that_the_empty_put_completes(client, registry, storage):
    data = os.urandom(2 * PART + 4 * MiB)  # the bench's push: 20 MiB in 8 MiB parts
    with s3_calls(registry) as calls:
        location = stream_whole(client, data)
    assert calls == ["CreateMultipartUpload", "UploadPart", "UploadPart", "UploadPart"]
    # The last part went out short and no tail object is kept; the session says so (a tail
    # size, no tail object).
    assert list(multipart_parts(registry).values()) == [[PART, PART, 4 * MiB]]
    assert objects(registry) == {}
    item = session_item(storage, location)
    assert item["tail_size"] == {"N": str(4 * MiB)} and "tail_key" not in item
    with s3_calls(registry) as calls:
        response = put(client, location, sha256(data))
    assert response.status_code == 201, response.text
    assert response.headers["Docker-Content-Digest"] == sha256(data)
    assert calls == ["CompleteMultipartUpload"]  # no read-back, no copy
    assert_blob(client, "team/app", data)
    assert upload_leftovers(storage) == NO_LEFTOVERS
    assert len(objects(registry)) == len(objects(registry, "blobs/")) == 1


def test_streamed_patch_after_the_first_request_keeps_a_tail(client, registry, storage):
    """Only an upload's first request bets on a short last part: a client that streams
    several PATCHes gets tails (and an upload is folded at most once)."""
    data = os.urandom(SHORT)
    location = patch_chunks(client, start(client), data[:PART])  # 4 + 4 MiB: a part
    response = client.patch(location, content=data[PART:])
    assert response.status_code == 202, response.text
    assert list(multipart_parts(registry).values()) == [[PART]]
    assert list(objects(registry, "uploads/").values()) == [SHORT - PART]
    with s3_calls(registry) as calls:
        response = put(client, upload_path(response.headers["Location"]), sha256(data))
    assert response.status_code == 201, response.text
    assert calls == ["UploadPartCopy", "CompleteMultipartUpload", "DeleteObject"]
    assert_blob(client, "team/app", data)
    assert upload_leftovers(storage) == NO_LEFTOVERS


def expected_parts(more: int) -> tuple[list[int], int]:
    """Parts a chunk of ``more`` bytes adds after a fold, and the tail it leaves."""
    parts, rest = [PART] * (more // PART), more % PART
    if rest >= MIN_PART:
        return [*parts, rest], 0
    return parts, rest


@pytest.mark.asgi_only
@pytest.mark.parametrize("ranged", [True, False], ids=["content-range", "streamed"])
@pytest.mark.parametrize(
    "more",
    [MiB + 7, 6 * MiB, PART + MiB + 3],  # under 5 MiB: a tail; over: a part; a part and a tail
)
def test_patch_after_a_short_last_part_folds_the_upload(client, registry, storage, ranged, more):
    data = os.urandom(SHORT + more)
    location = stream_whole(client, data[:SHORT])
    [old_upload] = multipart_parts(registry)
    with s3_calls(registry) as calls:
        response = patch(client, location, data[SHORT:], SHORT if ranged else None)
    assert response.status_code == 202, response.text
    assert response.headers["Range"] == f"0-{len(data) - 1}"
    location = upload_path(response.headers["Location"])
    assert "GetObject" not in calls  # the bytes before were copied server-side
    # One multipart upload, a new one: the old one, completed, copied in as its first part.
    parts, tail = expected_parts(more)
    uploads_now = multipart_parts(registry)
    assert list(uploads_now.values()) == [[SHORT, *parts]]
    assert old_upload not in uploads_now
    # The staging object is gone; what is left over waits as a tail.
    assert list(objects(registry, "blobs/")) == []
    assert list(objects(registry, "uploads/").values()) == ([tail] if tail else [])
    response = put(client, location, sha256(data))
    assert response.status_code == 201, response.text
    assert response.headers["Docker-Content-Digest"] == sha256(data)
    assert_blob(client, "team/app", data)
    assert upload_leftovers(storage) == NO_LEFTOVERS
    assert len(objects(registry)) == 1


@pytest.mark.asgi_only
def test_patches_of_both_kinds_after_a_short_last_part(client, registry, storage):
    data = os.urandom(SHORT + 12 * MiB)
    location = stream_whole(client, data[:SHORT])
    offset = SHORT
    for ranged in (False, True, False, True):
        piece = data[offset : offset + 3 * MiB]
        response = patch(client, location, piece, offset if ranged else None)
        assert response.status_code == 202, response.text
        offset += 3 * MiB
        assert response.headers["Range"] == f"0-{offset - 1}"
        location = upload_path(response.headers["Location"])
        assert list(objects(registry, "blobs/")) == []
    assert put(client, location, sha256(data)).status_code == 201
    assert_blob(client, "team/app", data)
    assert upload_leftovers(storage) == NO_LEFTOVERS
    assert len(objects(registry)) == 1


@pytest.mark.asgi_only
@pytest.mark.parametrize("final", [MiB + 3, PART + 11])
@pytest.mark.parametrize("with_range", [True, False], ids=["content-range", "no-range"])
def test_put_with_a_final_chunk_after_a_short_last_part(client, registry, storage, final, with_range):
    data = os.urandom(SHORT + final)
    location = stream_whole(client, data[:SHORT])
    headers = {"Content-Range": f"{SHORT}-{len(data) - 1}"} if with_range else {}
    with s3_calls(registry) as calls:
        response = put(client, location, sha256(data), data[SHORT:], **headers)
    assert response.status_code == 201, response.text
    assert response.headers["Docker-Content-Digest"] == sha256(data)
    assert "GetObject" not in calls and "UploadPartCopy" in calls
    assert "DeleteObject" not in calls  # the blob's completion replaced the staging object
    assert_blob(client, "team/app", data)
    assert upload_leftovers(storage) == NO_LEFTOVERS
    assert len(objects(registry)) == 1


@pytest.mark.asgi_only
def test_refused_requests_after_a_short_last_part_change_nothing(client, registry, storage):
    """Checks that fail come before the fold: the upload stays as it was, and usable."""
    data = os.urandom(SHORT + 3000)
    location = stream_whole(client, data[:SHORT])
    before = storage.snapshot()
    assert_error(put(client, location, sha256(b"other"), data[SHORT:]), 400, "DIGEST_INVALID")
    assert storage.snapshot() == before
    announced = {"Content-Range": f"{SHORT}-{SHORT + 99}"}
    response = client.patch(location, content=data[SHORT : SHORT + 10], headers=announced)
    assert_error(response, 416, "RANGE_INVALID")
    assert storage.snapshot() == before
    assert put(client, location, sha256(data), data[SHORT:]).status_code == 201
    assert_blob(client, "team/app", data)
    assert upload_leftovers(storage) == NO_LEFTOVERS


@pytest.mark.asgi_only
def test_fold_copies_in_parts_of_at_most_the_copy_limit(client, registry, storage, monkeypatch):
    """UploadPartCopy copies at most 5 GiB a part: a bigger staging object goes in as
    several parts, near-equal. Shown with the limit lowered to 10 MiB."""
    monkeypatch.setattr(multipart, "MAX_COPY_PART", 10 * MiB)
    first = 3 * PART + MiB + 5
    data = os.urandom(first + MiB)
    location = stream_whole(client, data[:first])
    response = patch(client, location, data[first:], first)
    assert response.status_code == 202, response.text
    [parts] = multipart_parts(registry).values()
    assert len(parts) == 3 and sum(parts) == first and max(parts) - min(parts) <= 1
    assert put(client, upload_path(response.headers["Location"]), sha256(data)).status_code == 201
    assert_blob(client, "team/app", data)
    assert upload_leftovers(storage) == NO_LEFTOVERS


def test_copy_ranges():
    GiB = 1024 * MiB
    assert multipart.copy_ranges(6 * MiB) == [(0, 6 * MiB - 1)]
    assert multipart.copy_ranges(5 * GiB) == [(0, 5 * GiB - 1)]
    ranges = multipart.copy_ranges(5 * GiB + 1)
    assert len(ranges) == 2 and ranges[0][0] == 0 and ranges[-1][1] == 5 * GiB
    assert all(b[0] == a[1] + 1 for a, b in zip(ranges, ranges[1:], strict=False))
    assert all(MIN_PART <= last - first + 1 <= 5 * GiB for first, last in ranges)


@pytest.mark.parametrize("size", [3 * MiB, MiB + 1])
@pytest.mark.parametrize("ranged", [True, False], ids=["content-range", "streamed"])
def test_small_upload_tail_goes_in_server_side(client, registry, storage, size, ranged):
    """Less than a part in all: no multipart upload, the tail object is the blob's bytes;
    the empty PUT copies it (CopyObject) rather than reading it back."""
    data = os.urandom(size)
    location = start(client)
    with s3_calls(registry) as calls:
        response = patch(client, location, data, 0 if ranged else None)
    assert response.status_code == 202, response.text
    assert calls == ["PutObject"]
    with s3_calls(registry) as calls:
        response = put(client, upload_path(response.headers["Location"]), sha256(data))
    assert response.status_code == 201, response.text
    assert calls == ["CopyObject", "DeleteObject"]
    assert_blob(client, "team/app", data)
    assert upload_leftovers(storage) == NO_LEFTOVERS


def test_chunks_then_empty_put_put_the_tail_in_server_side(client, registry, storage):
    data = os.urandom(SHORT)
    location = start(client)
    location = patch_chunks(client, location, data)  # 4 + 4 MiB: a part; then a tail
    assert list(multipart_parts(registry).values()) == [[PART]]
    assert list(objects(registry, "uploads/").values()) == [SHORT - PART]
    with s3_calls(registry) as calls:
        response = put(client, location, sha256(data))
    assert response.status_code == 201, response.text
    assert calls == ["UploadPartCopy", "CompleteMultipartUpload", "DeleteObject"]
    assert_blob(client, "team/app", data)
    assert upload_leftovers(storage) == NO_LEFTOVERS
    assert len(objects(registry)) == 1


@pytest.mark.asgi_only
def test_cancel_after_a_short_last_part(client, registry, storage):
    location = stream_whole(client, os.urandom(SHORT))
    assert len(multipart_parts(registry)) == 1
    response = client.delete(location)
    assert response.status_code == 204
    assert upload_leftovers(storage) == NO_LEFTOVERS
    assert multipart_parts(registry) == {} and objects(registry) == {}
    assert_error(client.get(location), 404, "BLOB_UPLOAD_UNKNOWN")


def the_open_multipart_upload(registry) -> dict:
    s3, bucket = registry.clients.s3, registry.settings.bucket
    [upload] = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    return {"Bucket": bucket, "Key": upload["Key"], "UploadId": upload["UploadId"]}


@pytest.mark.asgi_only
@pytest.mark.parametrize("then", ["patch", "put"])
def test_request_that_died_after_a_folds_first_step_is_resumed(client, registry, storage, then):
    """A request that died right after a fold's first step (the old multipart upload
    completed into the staging object at the blob's key) leaves the session as it was.
    S3 (and moto) complete an upload again while the object it made is still there, so
    the next request carries on."""
    data = os.urandom(SHORT + 100)
    location = stream_whole(client, data[:SHORT])
    s3, upload = registry.clients.s3, the_open_multipart_upload(registry)
    listed = s3.list_parts(**upload)["Parts"]
    parts = [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in listed]
    s3.complete_multipart_upload(**upload, MultipartUpload={"Parts": parts})
    if then == "patch":
        response = patch(client, location, data[SHORT:], SHORT)
        assert response.status_code == 202, response.text
        assert list(objects(registry, "blobs/")) == []  # the staging object is gone
        response = put(client, upload_path(response.headers["Location"]), sha256(data))
    else:
        data = data[:SHORT]
        response = put(client, location, sha256(data))
    assert response.status_code == 201, response.text
    assert_blob(client, "team/app", data)
    assert upload_leftovers(storage) == NO_LEFTOVERS
    assert len(objects(registry)) == 1


@pytest.mark.parametrize("then", ["patch", "put"])
def test_upload_whose_stored_state_is_gone_fails_cleanly(client, registry, storage, then):
    """A session naming S3 state that is gone (here its tail object, deleted behind its
    back; likewise a multipart upload S3 answers NoSuchUpload for) cannot go on: the next
    request says so (BLOB_UPLOAD_UNKNOWN: start over) and removes the session and what it
    kept, its multipart upload included."""
    data = os.urandom(SHORT + 100)
    location = start(client)
    location = patch_chunks(client, location, data[:SHORT])  # a part, and a tail
    [tail] = objects(registry, "uploads/")
    registry.clients.s3.delete_object(Bucket=registry.settings.bucket, Key=tail)
    if then == "patch":
        response = patch(client, location, data[SHORT:], SHORT)
    else:
        response = put(client, location, sha256(data[:SHORT]))
    assert_error(response, 404, "BLOB_UPLOAD_UNKNOWN")
    assert upload_leftovers(storage) == NO_LEFTOVERS
    assert objects(registry) == {}
    assert client.head(f"/v2/team/app/blobs/{sha256(data[:SHORT])}").status_code == 404
    assert_error(client.get(location), 404, "BLOB_UPLOAD_UNKNOWN")


# --- open sessions: a cap per identity (auth on) or per repository (auth off) ---------------

CAP = 3


def capped_client(registry: Registry, **settings) -> TestClient:
    """The app on the test's table and bucket, with at most CAP upload sessions open.
    The cap is the core's, not the transport's: one flavour (ASGI) is enough."""
    capped = Registry(replace(registry.settings, max_open_uploads=CAP, **settings), clients=registry.clients)
    return TestClient(create_app(capped), follow_redirects=False)


def open_session(client: TestClient, repository: str, **kwargs):
    return client.post(f"/v2/{repository}/blobs/uploads/", **kwargs)


def test_open_sessions_are_capped_per_repository_with_auth_off(registry, storage):
    with capped_client(registry) as client:
        locations = []
        for _ in range(CAP):
            response = open_session(client, "team/app")
            assert response.status_code == 202
            locations.append(upload_path(response.headers["Location"]))
        before = storage.snapshot()
        error = assert_error(open_session(client, "team/app"), 429, "TOOMANYREQUESTS")
        assert error["detail"] == {"reason": "too many upload sessions open", "limit": CAP}
        assert f"at most {CAP} upload sessions" in error["message"]
        assert storage.snapshot() == before
        # Another repository has its own count; a monolithic upload opens no session.
        assert open_session(client, "team/other").status_code == 202
        data = b"whole"
        whole = client.post(f"/v2/team/app/blobs/uploads/?digest={sha256(data)}", content=data)
        assert whole.status_code == 201
        # A cancelled session frees its place, and so does a finished one.
        assert client.delete(locations.pop()).status_code == 204
        response = open_session(client, "team/app")
        assert response.status_code == 202
        assert_error(open_session(client, "team/app"), 429, "TOOMANYREQUESTS")
        data = b"finished"
        finished = client.put(f"{locations.pop()}?digest={sha256(data)}", content=data)
        assert finished.status_code == 201
        assert open_session(client, "team/app").status_code == 202
        assert_error(open_session(client, "team/app"), 429, "TOOMANYREQUESTS")


def test_open_sessions_are_capped_per_identity_with_auth_on(registry, storage):
    def basic(user: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{user}-password-1".encode()).decode()}

    identities = registry.identities
    for user in ("alice", "bob"):
        identities.add_user(user, f"{user}-password-1")
        identities.grant("team/*", user, ["push"])
    with capped_client(registry, auth="on") as client:
        for repository in ("team/a", "team/b", "team/a"):
            assert open_session(client, repository, headers=basic("alice")).status_code == 202
        before = storage.snapshot()
        # Over the cap in any repository: the count is the identity's.
        assert_error(open_session(client, "team/c", headers=basic("alice")), 429, "TOOMANYREQUESTS")
        assert storage.snapshot() == before
        assert open_session(client, "team/a", headers=basic("bob")).status_code == 202
