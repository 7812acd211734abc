"""Shared fixtures: one moto server per test session, a fresh bucket and table per test.

The bucket and table are created by the same code `make run` uses, from
template.yaml. boto3 clients are created once for the whole session.

``client`` comes twice: ``[asgi]`` talks to the FastAPI app directly, ``[lambda]``
goes through the local API Gateway (skyport_cli.gateway) to the Lambda handler,
configured as template.yaml configures the function (its request body limit
included). A test whose request cannot fit in a Lambda event at all carries
``@pytest.mark.asgi_only``. ``[uploadsvc]`` is the deployed topology with the upload
service (issue 10): the API through the Lambda gateway, configured with an upload
endpoint, and the upload service on that host (``UPLOAD_HOST``); requests go to one or
the other by their Host, so a test that follows the POST's ``Location`` really talks
to the upload service, with the capability that Location carries.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from harness import UPLOAD_HOST, StorageView, api_behind_lambda, new_stack
from moto.server import ThreadedMotoServer
from skyport.config import Settings
from skyport.registry import Registry
from skyport.storage.clients import AwsClients
from skyport_api.app import create_app
from skyport_cli.serve import dynamodb_requests_one_at_a_time
from skyport_cli.stack import load_template
from starlette.testclient import TestClient

REGION = "us-east-1"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    dynamodb_requests_one_at_a_time()  # as `skyport serve`'s embedded moto does
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def aws_clients(moto_endpoint: str) -> AwsClients:
    return AwsClients(
        Settings(
            bucket="-", table="-", region=REGION, s3_endpoint=moto_endpoint, dynamodb_endpoint=moto_endpoint
        )
    )


@pytest.fixture(scope="session")
def template() -> dict:
    return load_template()


@pytest.fixture
def settings(moto_endpoint: str, aws_clients: AwsClients, template: dict) -> Settings:
    return new_stack(moto_endpoint, aws_clients, template)


@pytest.fixture
def registry(settings: Settings, aws_clients: AwsClients) -> Registry:
    return Registry(settings, clients=aws_clients)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``asgi_only`` tests get no ``[lambda]`` variant at all: deselected, not skipped,
    since a request bigger than a Lambda event has nothing to test there. The
    ``[uploadsvc]`` variant runs them (the big requests go to the upload service), except
    those marked ``big_body_to_api``, whose big request is the API's own."""
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        variant = callspec.params.get("client") if callspec is not None else None
        refused = (variant == "lambda" and item.get_closest_marker("asgi_only")) or (
            variant == "uploadsvc" and item.get_closest_marker("big_body_to_api")
        )
        (dropped if refused else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(params=["asgi", "lambda", "uploadsvc"])
def client(request: pytest.FixtureRequest, registry: Registry, template: dict) -> Iterator[TestClient]:
    if request.param == "asgi":
        app = create_app(registry)
    else:
        app = api_behind_lambda(registry, template, with_upload_service=request.param == "uploadsvc")
    with TestClient(app, follow_redirects=False) as test_client:
        # Where a started upload's Location points: the upload service's host, or nowhere
        # else (a relative Location, on the registry).
        test_client.upload_host = UPLOAD_HOST if request.param == "uploadsvc" else ""  # type: ignore[attr-defined]
        yield test_client


@pytest.fixture
def storage(registry: Registry) -> StorageView:
    return StorageView(registry)
