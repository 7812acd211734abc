"""S3 answers 403 AccessDenied, not 404, for an absent key to a role without
s3:ListBucket (the deployed role has none). moto always has the permission, so a
botocore hook on the real client turns its 404 NoSuchKey into the 403 S3 sends
then; nothing of Skyport's is replaced."""

from __future__ import annotations

import hashlib
import os

import pytest
from skyport.registry import Registry
from skyport.storage.clients import AwsClients
from skyport.storage.ports import ObjectMissing, StorageUnavailable
from skyport.storage.s3 import S3ObjectStore
from skyport_api.app import create_app
from starlette.testclient import TestClient

MiB = 1024 * 1024
ACCESS_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Access Denied</Message></Error>"
)


def deny_absent_keys(s3_client) -> list[str]:
    """From now on ``s3_client`` hears 403 AccessDenied where S3 found no such key;
    returns the list of operations so answered."""
    denied: list[str] = []

    def to_access_denied(operation_model, response_dict, **_):
        # Not NoSuchUpload: S3 answers that 404 whatever the role. (moto answers a copy
        # from an absent source with an empty 404, S3 with NoSuchKey.)
        if response_dict["status_code"] == 404 and b"NoSuchUpload" not in (response_dict.get("body") or b""):
            response_dict["status_code"] = 403
            response_dict["body"] = ACCESS_DENIED
            denied.append(operation_model.name)

    s3_client.meta.events.register("before-parse.s3.*", to_access_denied)
    return denied


@pytest.fixture
def denied_clients(settings) -> tuple[AwsClients, list[str]]:
    clients = AwsClients(settings)  # its own client: the hook stays with this test
    return clients, deny_absent_keys(clients.s3)


def test_the_hook_answers_403_for_an_absent_key(denied_clients, settings):
    clients, denied = denied_clients
    with pytest.raises(clients.s3.exceptions.ClientError) as error:
        clients.s3.get_object(Bucket=settings.bucket, Key="absent")
    assert error.value.response["Error"]["Code"] == "AccessDenied"
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert denied == ["GetObject"]


def test_403_means_missing_only_where_a_key_may_be_missing(denied_clients, settings):
    clients, denied = denied_clients
    objects = S3ObjectStore(clients.s3, settings.bucket)
    objects.put("present", b"x")
    assert objects.read("present", may_be_missing=True) == b"x"
    # A tail object or a staging object may be gone: ObjectMissing.
    with pytest.raises(ObjectMissing):
        objects.read("uploads/u/tail-5", may_be_missing=True)
    with pytest.raises(ObjectMissing):
        objects.copy("uploads/u/tail-5", "blobs/u")
    upload = objects.start_multipart("blobs/u")
    with pytest.raises(ObjectMissing):
        objects.copy_part("blobs/u", upload, 1, "uploads/u/tail-5")
    objects.abort_multipart("blobs/u", upload)
    # Anywhere else a 403 is what it says: storage refusing, retry later (503).
    with pytest.raises(StorageUnavailable):
        objects.read("manifests/sha256/absent")
    assert denied == ["GetObject", "CopyObject", "UploadPartCopy", "GetObject"]


def test_403_on_streaming_a_blob_is_missing(denied_clients, settings):
    """Proxy mode streams a blob its index names; its object deleted since, S3 answers
    the deployed role 403: the blob is missing (BLOB_UNKNOWN), not storage refusing."""
    clients, denied = denied_clients
    objects = S3ObjectStore(clients.s3, settings.bucket)
    with pytest.raises(ObjectMissing):
        objects.stream("blobs/absent")
    assert denied == ["GetObject"]


@pytest.mark.parametrize("then", ["patch", "put"])
def test_vanished_tail_behind_a_403_is_an_unknown_upload_not_a_503(denied_clients, settings, then):
    """The recovery of tests/api/test_uploads.py's "stored state is gone" case, with
    S3 answering as it does to the deployed role."""
    clients, denied = denied_clients
    registry = Registry(settings, clients=clients)
    data, first = os.urandom(6 * MiB), 4 * MiB  # the first chunk is kept as a tail object
    with TestClient(create_app(registry)) as client:
        location = client.post("/v2/team/app/blobs/uploads/").headers["Location"]
        response = client.patch(location, content=data[:first], headers={"Content-Range": f"0-{first - 1}"})
        assert response.status_code == 202, response.text
        [tail] = [o["Key"] for o in clients.s3.list_objects_v2(Bucket=settings.bucket)["Contents"]]
        assert tail.startswith("uploads/")
        clients.s3.delete_object(Bucket=settings.bucket, Key=tail)
        if then == "patch":
            response = client.patch(
                location, content=data[first:], headers={"Content-Range": f"{first}-{len(data) - 1}"}
            )
        else:
            digest = "sha256:" + hashlib.sha256(data[:first]).hexdigest()
            response = client.put(f"{location}?digest={digest}")
        assert response.status_code == 404, response.text
        assert response.json()["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
        assert client.get(location).status_code == 404
    assert denied  # S3 did answer 403 for the tail
    assert clients.s3.list_objects_v2(Bucket=settings.bucket).get("Contents", []) == []
    assert clients.s3.list_multipart_uploads(Bucket=settings.bucket).get("Uploads", []) == []
