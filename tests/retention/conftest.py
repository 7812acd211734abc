"""Retention and last-pull tests (issue 12): images pushed and pulled over HTTP, rules
added through the core (as `skyport retention add` does) or the CLI, runs through the
core, the CLI and the scheduled handler; storage read through boto3 against moto."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from oci import make_image, push_image
from skyport.registry import Registry
from skyport.retention import RetentionService
from skyport.storage import keys
from skyport_api.app import create_app
from starlette.testclient import TestClient

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@pytest.fixture
def retention(registry: Registry) -> RetentionService:
    return registry.retention


@pytest.fixture
def app_client(registry: Registry) -> Iterator[TestClient]:
    """A client on the ASGI app of ``registry`` itself (its pull recorder, its rule caches)."""
    with TestClient(create_app(registry), follow_redirects=False) as test_client:
        yield test_client


def push(client, repository: str, tag: str | None = None) -> str:
    """A new image (its own blobs), pushed by tag, or by digest when ``tag`` is None."""
    digest = push_image(client, repository, make_image(layer_sizes=(64,)), tag)
    time.sleep(0.005)  # distinct pushed_ms, so "newest" is well defined
    return digest


def pull(client, repository: str, reference: str) -> None:
    accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"
    response = client.get(f"/v2/{repository}/manifests/{reference}", headers={"Accept": accept})
    assert response.status_code == 200, response.text


def manifest_digests(registry: Registry, repository: str) -> set[str]:
    return set(_sort_keys(registry, keys.repository_partition(repository), keys.MANIFEST_PREFIX))


def tag_names(registry: Registry, repository: str) -> set[str]:
    return set(_sort_keys(registry, keys.repository_partition(repository), keys.TAG_PREFIX))


def pull_records(registry: Registry, repository: str) -> dict[str, int]:
    items = _query(registry, keys.repository_partition(repository), keys.PULL_PREFIX)
    return {item["SK"]["S"][len(keys.PULL_PREFIX) :]: int(item["last_pulled_ms"]["N"]) for item in items}


def catalog(registry: Registry) -> set[str]:
    return set(_sort_keys(registry, keys.CATALOG, keys.REPO_PREFIX))


def _sort_keys(registry: Registry, pk: str, prefix: str) -> list[str]:
    return [item["SK"]["S"][len(prefix) :] for item in _query(registry, pk, prefix)]


def _query(registry: Registry, pk: str, prefix: str) -> list[dict]:
    paginator = registry.clients.dynamodb.get_paginator("query")
    items: list[dict] = []
    for page in paginator.paginate(
        TableName=registry.settings.table,
        KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
        ExpressionAttributeValues={":pk": {"S": pk}, ":prefix": {"S": prefix}},
        ConsistentRead=True,
    ):
        items.extend(page["Items"])
    return items


class DynamoCalls:
    """The DynamoDB operations a client makes, seen through botocore's before-call event."""

    def __init__(self) -> None:
        self.operations: list[str] = []

    def __call__(self, model, params, **_) -> None:
        self.operations.append(model.name)

    def count(self, operation: str) -> int:
        return self.operations.count(operation)


@pytest.fixture
def dynamodb_calls(registry: Registry) -> Iterator[DynamoCalls]:
    calls = DynamoCalls()
    events = registry.clients.dynamodb.meta.events
    events.register("before-call.dynamodb", calls)
    try:
        yield calls
    finally:
        events.unregister("before-call.dynamodb", calls)


# The e2e check (test_e2e.py) drives skopeo as tests/e2e does, with its fixture.
from e2e.conftest import skopeo  # noqa: E402, F401
