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
