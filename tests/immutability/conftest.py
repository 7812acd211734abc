"""Tag immutability tests (issue 12): rules added through the core admin (as `skyport
immutability` does) or the CLI, enforced over HTTP by both app flavours of ``client``."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from oci import Image, push_blob
from skyport.immutability import ImmutabilityRules
from skyport.registry import Registry
from skyport_api.app import create_app
from starlette.testclient import TestClient


@pytest.fixture
def rules(registry: Registry) -> ImmutabilityRules:
    """The rules of the test's table. Add them before the first push through ``client``:
    its [lambda] flavour has a Registry (and so a rule cache) of its own."""
    return registry.immutability


@pytest.fixture
def app_client(registry: Registry) -> Iterator[TestClient]:
    """A client on the ASGI app of ``registry`` itself: rules changed through ``rules``
    reach it at once (the change drops that Registry's cache)."""
    with TestClient(create_app(registry), follow_redirects=False) as test_client:
        yield test_client


def push_blobs(client, repository: str, image: Image) -> None:
    for blob in (image.config, *image.layers):
        push_blob(client, repository, blob, mode="post")


def put(client, repository: str, reference: str, image: Image):
    return client.put(
        f"/v2/{repository}/manifests/{reference}",
        content=image.manifest,
        headers={"Content-Type": image.media_type},
    )


def together(*calls: Callable[[], object]) -> list:
    """Run the calls in threads released at the same instant; their results, in order."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return [future.result(timeout=120) for future in [pool.submit(run, call) for call in calls]]


class DynamoCalls:
    """The DynamoDB operations the registry's client makes, and the partitions its
    Queries read, seen through botocore's before-call event (nothing replaced)."""

    def __init__(self) -> None:
        self.operations: list[str] = []
        self.partitions: list[str | None] = []

    def __call__(self, model, params, **_) -> None:
        self.operations.append(model.name)
        if model.name == "Query":
            self.partitions.append(params.get("ExpressionAttributeValues", {}).get(":pk", {}).get("S"))


@pytest.fixture
def dynamodb_calls(registry: Registry) -> Iterator[DynamoCalls]:
    calls = DynamoCalls()
    events = registry.clients.dynamodb.meta.events
    events.register("before-call.dynamodb", calls)
    try:
        yield calls
    finally:
        events.unregister("before-call.dynamodb", calls)


# The e2e checks (test_e2e.py) drive skopeo and docker as tests/e2e does, with its fixtures.
from e2e.conftest import dockerd, skopeo  # noqa: E402, F401
