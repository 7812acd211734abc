"""Blobs: GET (307 to S3, or streamed in proxy mode), HEAD, DELETE, per-repository visibility
(distribution-spec "Pulling blobs", "Checking if content exists", "Deleting blobs")."""

import dataclasses
import os

import pytest
from oci import MiB, assert_error, fetch, push_blob, sha256
from skyport.registry import Registry
from skyport_api.app import create_app
from starlette.testclient import TestClient


def test_get_redirects_to_a_url_that_serves_the_bytes(client):
    data = os.urandom(300_000)
    digest = push_blob(client, "team/app", data, mode="post")
    response = client.get(f"/v2/team/app/blobs/{digest}")
    assert response.status_code == 307
    assert response.headers["Docker-Content-Digest"] == digest
    location = response.headers["Location"]
    assert location.startswith("http") and "X-Amz-Signature=" in location  # SigV4 presigned
    assert fetch(location) == data


def test_get_redirect_of_a_multipart_blob(client):
    data = os.urandom(11 * MiB + 7)
    digest = push_blob(client, "team/app", data, mode="chunks", chunk=4 * MiB)
    response = client.get(f"/v2/team/app/blobs/{digest}")
    assert response.status_code == 307
    assert fetch(response.headers["Location"]) == data


def test_head_answers_from_metadata(client):
    data = os.urandom(4321)
    digest = push_blob(client, "team/app", data, mode="post")
    response = client.head(f"/v2/team/app/blobs/{digest}")
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(len(data))
    assert response.headers["Docker-Content-Digest"] == digest
    assert response.content == b""


def test_unknown_blob(client):
    digest = sha256(b"never pushed")
    assert_error(client.get(f"/v2/team/app/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    assert client.head(f"/v2/team/app/blobs/{digest}").status_code == 404
    assert_error(client.delete(f"/v2/team/app/blobs/{digest}"), 404, "BLOB_UNKNOWN")


def test_delete_then_gone(client):
    digest = push_blob(client, "team/app", b"to be deleted", mode="post")
    response = client.delete(f"/v2/team/app/blobs/{digest}")
    assert response.status_code == 202
    assert client.head(f"/v2/team/app/blobs/{digest}").status_code == 404
    assert_error(client.get(f"/v2/team/app/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    assert_error(client.delete(f"/v2/team/app/blobs/{digest}"), 404, "BLOB_UNKNOWN")


def test_delete_in_one_repository_leaves_the_others(client):
    data = b"shared layer"
    digest = push_blob(client, "one", data, mode="post")
    push_blob(client, "two", data, mode="post")
    assert client.delete(f"/v2/one/blobs/{digest}").status_code == 202
    assert client.head(f"/v2/one/blobs/{digest}").status_code == 404
    response = client.get(f"/v2/two/blobs/{digest}")
    assert response.status_code == 307 and fetch(response.headers["Location"]) == data


def test_blob_is_only_visible_where_pushed_or_mounted(client):
    digest = push_blob(client, "team/app", b"private bytes", mode="post")
    assert client.head(f"/v2/team/app/blobs/{digest}").status_code == 200
    assert client.head(f"/v2/team/other/blobs/{digest}").status_code == 404
    assert_error(client.get(f"/v2/team/other/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    assert_error(client.get(f"/v2/team/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    assert_error(client.delete(f"/v2/team/other/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    mounted = client.post(f"/v2/team/other/blobs/uploads/?mount={digest}&from=team/app")
    assert mounted.status_code == 201
    assert client.head(f"/v2/team/other/blobs/{digest}").status_code == 200


def test_repository_names_with_several_components(client):
    name = "org/team/sub.group/my-app_v2/x"
    data = os.urandom(1000)
    digest = push_blob(client, name, data, mode="put")
    assert client.head(f"/v2/{name}/blobs/{digest}").status_code == 200
    assert fetch(client.get(f"/v2/{name}/blobs/{digest}").headers["Location"]) == data
    assert client.head(f"/v2/org/team/blobs/{digest}").status_code == 404


def test_longest_repository_name(client):
    name = "/".join(["a" * 50] * 4) + "/" + "b" * 51  # 255 characters, the most allowed
    assert len(name) == 255
    digest = push_blob(client, name, b"long name", mode="post")
    assert client.head(f"/v2/{name}/blobs/{digest}").status_code == 200


@pytest.fixture
def proxy_client(settings, aws_clients):
    proxy = Registry(dataclasses.replace(settings, blob_delivery="proxy"), clients=aws_clients)
    with TestClient(create_app(proxy), follow_redirects=False) as test_client:
        yield test_client


@pytest.mark.parametrize("size", [0, 1000, 9 * MiB + 3])
def test_proxy_mode_streams_the_bytes(client, proxy_client, size):
    data = os.urandom(size)
    digest = push_blob(client, "team/app", data, mode="chunks", chunk=4 * MiB)
    response = proxy_client.get(f"/v2/team/app/blobs/{digest}")
    assert response.status_code == 200
    assert response.headers["Docker-Content-Digest"] == digest
    assert response.headers["Content-Length"] == str(size)
    assert response.content == data
    head = proxy_client.head(f"/v2/team/app/blobs/{digest}")
    assert head.status_code == 200 and head.headers["Content-Length"] == str(size)
    assert_error(proxy_client.get(f"/v2/team/other/blobs/{digest}"), 404, "BLOB_UNKNOWN")


def test_proxy_mode_answers_blob_unknown_when_the_object_is_gone(client, proxy_client, aws_clients, settings):
    """The link says the blob is there, its S3 object is not (deleted behind the
    registry's back): 404 BLOB_UNKNOWN before any byte is sent, never a 500."""
    data = os.urandom(1000)
    digest = push_blob(client, "team/app", data, mode="post")
    [key] = [o["Key"] for o in aws_clients.s3.list_objects_v2(Bucket=settings.bucket)["Contents"]]
    aws_clients.s3.delete_object(Bucket=settings.bucket, Key=key)
    assert_error(proxy_client.get(f"/v2/team/app/blobs/{digest}"), 404, "BLOB_UNKNOWN")
