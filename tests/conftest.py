"""Shared fixtures: one moto server per test session, a fresh bucket and table per test.

The bucket and table are created by the same code `make run` uses, from
template.yaml. boto3 clients are created once for the whole session.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from moto.server import ThreadedMotoServer
from skyport.config import Settings
from skyport.registry import Registry
from skyport.storage.clients import AwsClients
from skyport_api.app import create_app
from skyport_cli.stack import ensure_stack, load_template
from starlette.testclient import TestClient

REGION = "us-east-1"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def aws_clients(moto_endpoint: str) -> AwsClients:
    return AwsClients(Settings(bucket="-", table="-", region=REGION,
                               s3_endpoint=moto_endpoint, dynamodb_endpoint=moto_endpoint))


@pytest.fixture(scope="session")
def template() -> dict:
    return load_template()


@pytest.fixture
def settings(moto_endpoint: str, aws_clients: AwsClients, template: dict) -> Settings:
    suffix = uuid.uuid4().hex[:12]
    settings = Settings(bucket=f"skyport-test-{suffix}", table=f"skyport-test-{suffix}", region=REGION,
                        s3_endpoint=moto_endpoint, dynamodb_endpoint=moto_endpoint)
    ensure_stack(aws_clients.s3, aws_clients.dynamodb, settings.bucket, settings.table,
                 template=template, region=REGION)
    return settings


@pytest.fixture
def registry(settings: Settings, aws_clients: AwsClients) -> Registry:
    return Registry(settings, clients=aws_clients)


@pytest.fixture
def client(registry: Registry) -> Iterator[TestClient]:
    with TestClient(create_app(registry), follow_redirects=False) as test_client:
        yield test_client


class StorageView:
    """Everything a registry stores, to show that a rejected request changed nothing."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def snapshot(self) -> dict:
        settings, clients = self._registry.settings, self._registry.clients
        items = []
        for page in clients.dynamodb.get_paginator("scan").paginate(TableName=settings.table):
            items.extend(page["Items"])
        objects = []
        for page in clients.s3.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket):
            objects.extend((o["Key"], o["Size"], o["ETag"]) for o in page.get("Contents", []))
        uploads = clients.s3.list_multipart_uploads(Bucket=settings.bucket).get("Uploads", [])
        return {
            "items": sorted(items, key=lambda i: (i["PK"]["S"], i["SK"]["S"])),
            "objects": sorted(objects),
            "multipart_uploads": sorted(u["UploadId"] for u in uploads),
        }


@pytest.fixture
def storage(registry: Registry) -> StorageView:
    return StorageView(registry)
