"""Fixtures of the direct-upload suite: the registry served over real HTTP (see running.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from skyport.registry import Registry

from .running import Served, serve


@pytest.fixture
def served(registry: Registry) -> Iterator[Served]:
    with serve(registry) as running:
        yield running
