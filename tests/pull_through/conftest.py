"""Fixtures of tests/pull_through.

The real-client tests (test_e2e.py) drive skopeo and podman as tests/e2e does, with its
fixtures."""

from __future__ import annotations

from e2e.conftest import podman, skopeo  # noqa: F401
