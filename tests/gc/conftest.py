"""Fixtures of the garbage collection suite (issue 12)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from skyport.registry import Registry
from skyport_api.app import create_app
from starlette.testclient import TestClient


@pytest.fixture
def http(registry: Registry) -> Iterator[TestClient]:
    with TestClient(create_app(registry), follow_redirects=False) as client:
        yield client
