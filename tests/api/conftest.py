"""Fixtures of the API suite beyond tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from skyport.registry import Registry
from skyport_api.app import create_app
from starlette.testclient import TestClient


@pytest.fixture
def asgi_client(registry: Registry) -> Iterator[TestClient]:
    """A client straight on the ASGI app, for the few tests whose subject is not the
    transport (they run once, not once per ``client`` flavour), or which need a request
    to stop half way through its body (the Lambda gateway reads bodies whole first)."""
    with TestClient(create_app(registry), follow_redirects=False) as test_client:
        yield test_client


class DynamoCalls:
    """The DynamoDB operations (``operations``, by name) the registry's client makes,
    seen through botocore's before-call event: observed on the real client, nothing
    replaced."""

    def __init__(self) -> None:
        self.operations: list[str] = []
        self.partitions: list[str | None] = []  # the partition each Query reads

    def __call__(self, model, params, **_) -> None:
        self.operations.append(model.name)
        if model.name == "Query":
            self.partitions.append(params.get("ExpressionAttributeValues", {}).get(":pk", {}).get("S"))

    def clear(self) -> None:
        self.operations.clear()
        self.partitions.clear()


@pytest.fixture
def dynamodb_calls(registry: Registry) -> Iterator[DynamoCalls]:
    """Every DynamoDB call the registry (either ``client`` flavour: they share its
    clients) makes from now until the test ends."""
    calls = DynamoCalls()
    events = registry.clients.dynamodb.meta.events
    events.register("before-call.dynamodb", calls)
    try:
        yield calls
    finally:
        events.unregister("before-call.dynamodb", calls)
