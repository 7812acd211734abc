"""Fixtures of the garbage collection suite (issue 12)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from skyport.registry import Registry
from skyport_api.app import create_app
from starlette.testclient import TestClient


@pytest.fixture
def http(registry: Registry) -> Iterator[TestClient]:
    """The API, without its blob cache: these tests read what the collector (`skyport gc`,
    another process) left in the table, which a caching instance would show only once its
    entries expire (the bound: skyport/blob_cache.py, tests/api/test_blob_cache.py)."""
    settings = dataclasses.replace(registry.settings, blob_cache_seconds=0)
    uncached = Registry(settings, clients=registry.clients)
    with TestClient(create_app(uncached), follow_redirects=False) as client:
        yield client
