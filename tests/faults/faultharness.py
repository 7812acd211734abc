"""The registry the fault suite drives: its own boto3 clients (the injector's hooks stay
on them, and each test starts with a fresh SDK retry quota), an ASGI test client that
answers a 500 rather than raising it, and the tracebacks behind any 500."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import botocore.endpoint
import pytest
from faultinject import STATS, FaultInjector, QuickBackoff
from skyport.config import Settings
from skyport.registry import Registry
from skyport.storage.clients import AwsClients
from skyport_api.app import create_app
from skyport_cli.stack import ensure_stack
from starlette.testclient import TestClient

REGION = "us-east-1"


class _Tracebacks(logging.Handler):
    """The exceptions the app's last-resort handler logged (a 500 UNKNOWN): kept so a
    defect report names the line that raised, not only the status."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            frame = error.__traceback__
            while frame is not None and frame.tb_next is not None:
                frame = frame.tb_next
            where = "?"
            if frame is not None:
                where = f"{frame.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.tb_lineno}"
            self.seen.append(f"{type(error).__name__}: {str(error)[:200]} at {where}")


@dataclass
class Harness:
    client: TestClient
    injector: FaultInjector
    registry: Registry
    tracebacks: _Tracebacks
    # S3 keys whose bytes were fetched and checked since the last write request: a check
    # need not download a blob twice while nothing could have changed it.
    verified: set[str] = field(default_factory=set)

    def repo(self, scenario: str, label: str) -> str:
        """A repository of its own for each run, so runs cannot see each other's state."""
        return f"faults/{scenario}/{label}".lower()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request; a dropped connection comes back as the exception, not raised."""
        if method not in ("GET", "HEAD"):
            self.verified.clear()
        try:
            return self.client.request(method, path, **kwargs)
        except Exception as error:  # noqa: BLE001 - what the client sees is the subject
            return error


def make_harness(settings: Settings, template: dict, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    clients = AwsClients(settings)
    ensure_stack(
        clients.s3, clients.dynamodb, settings.bucket, settings.table, template=template, region=REGION
    )
    registry = Registry(settings, clients=clients)
    injector = FaultInjector(clients)
    monkeypatch.setattr(botocore.endpoint, "time", QuickBackoff(STATS))
    tracebacks = _Tracebacks()
    logger = logging.getLogger("skyport.api")
    logger.addHandler(tracebacks)
    try:
        with TestClient(
            create_app(registry), follow_redirects=False, raise_server_exceptions=False
        ) as client:
            yield Harness(client, injector, registry, tracebacks)
    finally:
        logger.removeHandler(tracebacks)
