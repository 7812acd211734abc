"""Fixtures of the vulnerability data suite (issue 14): a bucket on the session's moto
server (made from template.yaml), its object store, and the shipped data set mirrored into it."""

from __future__ import annotations

import pytest
from harness import new_stack
from skyport.storage.s3 import S3ObjectStore
from skyport.vulnerabilities.mirror import DEFAULT_ECOSYSTEMS, mirror, shipped_data


@pytest.fixture
def store(moto_endpoint: str, aws_clients, template: dict) -> S3ObjectStore:
    settings = new_stack(moto_endpoint, aws_clients, template, label="osv")
    return S3ObjectStore(aws_clients.s3, settings.bucket)


@pytest.fixture
def mirrored(store: S3ObjectStore) -> S3ObjectStore:
    """A bucket holding the shipped OSV data set, put there by the mirror (the same code
    that copies OSV's exports when deployed)."""
    result = mirror(str(shipped_data()), store, DEFAULT_ECOSYSTEMS)
    assert result.failed == {} and sorted(result.updated) == sorted(DEFAULT_ECOSYSTEMS)
    return store
