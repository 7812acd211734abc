"""Abandoned-upload expiry tests (issue 12): sessions made over HTTP, by the app on the
test's table; the sweep run as `skyport uploads expire` and the scheduled function run it
(Registry.upload_expiry), against moto."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
from oci import MiB
from skyport.registry import Registry
from skyport.storage import keys
from skyport_api.app import create_app
from starlette.testclient import TestClient

REPO = "team/app"
# The sweep's lease margin, shortened: a session counts as expired for the sweep
# SWEEP_LEASE seconds after its expires_at (the registry's default is 900).
SWEEP_LEASE = 1
SHORT_TTL = 2


@pytest.fixture
def sweeper(registry: Registry) -> Registry:
    """The registry on the test's table and bucket as the sweep runs it, with a short
    lease margin (so sessions expired SWEEP_LEASE seconds ago are fair game)."""
    return Registry(replace(registry.settings, upload_lease_seconds=SWEEP_LEASE), clients=registry.clients)


@pytest.fixture
def app_client(registry: Registry) -> Iterator[TestClient]:
    """The API as deployed on the test's table: sessions live a week."""
    with TestClient(create_app(registry), follow_redirects=False) as client:
        yield client


@pytest.fixture
def short_client(registry: Registry) -> Iterator[TestClient]:
    """The API with sessions that expire SHORT_TTL seconds after they start (and a lease
    shorter than the sweep's margin): what a client abandons here is soon expired."""
    settings = replace(registry.settings, upload_ttl_seconds=SHORT_TTL, upload_lease_seconds=SWEEP_LEASE)
    with TestClient(
        create_app(Registry(settings, clients=registry.clients)), follow_redirects=False
    ) as client:
        yield client


def start(client: TestClient, repository: str = REPO) -> str:
    response = client.post(f"/v2/{repository}/blobs/uploads/")
    assert response.status_code == 202, response.text
    return response.headers["Location"]


def patch(client: TestClient, location: str, data: bytes, offset: int) -> str:
    response = client.patch(
        location,
        content=data,
        headers={
            "Content-Range": f"{offset}-{offset + len(data) - 1}",
            "Content-Type": "application/octet-stream",
        },
    )
    assert response.status_code == 202, response.text
    return response.headers["Location"]


def upload_id_of(location: str) -> str:
    return location.split("?")[0].rstrip("/").rsplit("/", 1)[1]


def abandon(client: TestClient, repository: str = REPO) -> tuple[str, int]:
    """An upload left mid-way: one 6 MiB chunk (a part of 5 MiB+ in its multipart upload
    and a 1 MiB tail object) and one more 1 MiB chunk. Returns its id and size."""
    location = start(client, repository)
    location = patch(client, location, b"a" * 6 * MiB, 0)
    patch(client, location, b"b" * MiB, 6 * MiB)
    return upload_id_of(location), 7 * MiB


def session_item(registry: Registry, upload_id: str) -> dict | None:
    return registry.clients.dynamodb.get_item(
        TableName=registry.settings.table, Key=keys.upload(upload_id), ConsistentRead=True
    ).get("Item")


def multipart_uploads(registry: Registry) -> list[dict]:
    return registry.clients.s3.list_multipart_uploads(Bucket=registry.settings.bucket).get("Uploads", [])


def objects(registry: Registry, prefix: str) -> list[str]:
    listed = registry.clients.s3.list_objects_v2(Bucket=registry.settings.bucket, Prefix=prefix)
    return [o["Key"] for o in listed.get("Contents", [])]


def crash_leftovers(registry: Registry) -> tuple[str, str]:
    """Stands in for a crash (or for DynamoDB's TTL having deleted the session): a multipart
    upload under blobs/ and a tail under uploads/, named after an upload no session
    names, written with boto3. Returns (multipart key, tail key)."""
    s3, bucket = registry.clients.s3, registry.settings.bucket
    gone = str(uuid.uuid4())
    key = keys.blob_object(gone)
    multipart = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    s3.upload_part(Bucket=bucket, Key=key, UploadId=multipart, PartNumber=1, Body=b"x" * 1000)
    tail = keys.upload_tail_object(gone, 500, "crashed")
    s3.put_object(Bucket=bucket, Key=tail, Body=b"y" * 500)
    return key, tail


def wait_until_expired(seconds: float = SHORT_TTL + SWEEP_LEASE + 1.1) -> None:
    time.sleep(seconds)
