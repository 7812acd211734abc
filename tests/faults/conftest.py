"""Fixtures of the fault suite (the registry: faultharness.py), with parts of 5 MiB so that
multipart uploads stay small, and the summary line printed at the end of the run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from faultharness import REGION, Harness, make_harness
from faultinject import STATS
from skyport.config import Settings

MiB = 1024 * 1024


@pytest.fixture(scope="session")
def faults_moto() -> Iterator[str]:
    """A moto server in a process of its own: the suite moves hundreds of MiB through it,
    and in this process it would share one interpreter lock with the client and the app."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{endpoint}/moto-api/", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, "moto server did not start"
                time.sleep(0.2)
        yield endpoint
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)


@pytest.fixture
def settings_for_faults(faults_moto: str) -> Settings:
    suffix = uuid.uuid4().hex[:12]
    return Settings(
        bucket=f"skyport-faults-{suffix}",
        table=f"skyport-faults-{suffix}",
        region=REGION,
        s3_endpoint=faults_moto,
        dynamodb_endpoint=faults_moto,
        # SKYPORT_PART_SIZE at its smallest: multipart uploads with few bytes.
        part_size=5 * MiB,
    )


@pytest.fixture
def harness(
    settings_for_faults: Settings, template: dict, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Harness]:
    yield from make_harness(settings_for_faults, template, monkeypatch)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not STATS.operations and not STATS.killed_requests:
        return
    outcomes = ", ".join(f"{name} {count}" for name, count in sorted(STATS.outcomes.items()))
    terminalreporter.write_sep("-", "faults injected")
    terminalreporter.write_line(
        f"faults: {STATS.operations} operations, {STATS.faults} faults injected, "
        f"{STATS.killed_requests} requests killed mid-upload, "
        f"{STATS.images_lost_or_corrupt} images lost or corrupt"
    )
    terminalreporter.write_line(f"faults: outcomes: {outcomes}")
    if STATS.notes:
        notes = ", ".join(f"{name} {count}" for name, count in sorted(STATS.notes.items()))
        terminalreporter.write_line(f"faults: notes: {notes}")
    terminalreporter.write_line(
        f"faults: the SDK asked for {STATS.backoff_asked:.1f} s of retry back-off (slept 1/100th)"
    )
