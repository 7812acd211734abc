"""The registry under fuzzing, four ways: the ASGI app and the Lambda handler behind
the local API Gateway, each with auth off and on, each with a world to aim at (an
image, a tag, an artifact, an upload in progress; properties.py says what is checked).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace

import pytest
from auth.conftest import PASSWORDS, REGION, basic, make_auth_settings, populate
from harness import StorageView, lambda_settings
from oci import make_artifact, make_image, push_image, sha256, upload_path
from skyport.registry import Registry
from skyport_api.app import create_app
from skyport_api.lambda_adapter import lambda_handler
from skyport_cli.gateway import LambdaGateway
from skyport_cli.stack import function_timeout
from starlette.testclient import TestClient

from .properties import EXAMPLES, SENT, ServerLog, Target
from .strategies import World


def _build_world(client: TestClient, tokens: list[str], basic_values: list[str]) -> tuple[World, list[bytes]]:
    image = make_image(layer_sizes=(300,))
    push_image(client, "team/app", image, "v1")
    artifact = make_artifact(image.manifest)
    push_image(client, "team/app", artifact, "sbom")
    other = make_image(layer_sizes=())
    push_image(client, "pub/app", other, "latest")
    response = client.post("/v2/team/app/blobs/uploads/")
    assert response.status_code == 202, response.text
    location = upload_path(response.headers["Location"])
    response = client.patch(location, content=b"x" * 100, headers={"Content-Range": "0-99"})
    assert response.status_code == 202, response.text
    world = World(
        names=["team/app", "pub/app", "team/other"],
        tags=["v1", "sbom", "latest"],
        digests=[image.digest, sha256(image.config), sha256(image.layers[0]), artifact.digest, other.digest],
        upload_ids=[location.rsplit("/", 1)[1]],
        tokens=tokens,
        basic=basic_values,
    )
    return world, [image.manifest, artifact.manifest, other.manifest]


TARGETS = ["asgi-open", "lambda-open", "asgi-auth", "lambda-auth"]


@pytest.fixture(scope="module", params=TARGETS)
def target(request: pytest.FixtureRequest, moto_endpoint, aws_clients, template) -> Iterator[Target]:
    """One registry per target and test module: the properties hold whatever an earlier
    request stored, and building a world costs about a second."""
    transport, mode = request.param.split("-")
    settings = make_auth_settings(
        moto_endpoint, aws_clients, template, auth="on" if mode == "auth" else "off"
    )
    if transport == "lambda":
        settings = replace(lambda_settings(settings, template), auth=settings.auth)
    registry = Registry(settings, clients=aws_clients)
    if mode == "auth":
        populate(registry)
    if transport == "asgi":
        app = create_app(registry)
    else:
        app = LambdaGateway(
            lambda_handler(registry), function_timeout=function_timeout(template), region=REGION
        )
    log = ServerLog()
    loggers = [logging.getLogger(name) for name in ("skyport.api", "skyport.gateway")]
    for logger in loggers:
        logger.addHandler(log)
    admin = basic("root", PASSWORDS["root"]) if mode == "auth" else {}
    with TestClient(app, follow_redirects=False, headers=admin) as client:
        tokens: list[str] = []
        basic_values: list[str] = []
        if mode == "auth":
            # A token of the admin's for the world's repositories (and so the signing
            # key, created on first use, exists before any case runs).
            scopes = [
                ("scope", "repository:team/app:pull,push,delete"),
                ("scope", "repository:pub/app:pull"),
                ("scope", "registry:catalog:*"),
            ]
            response = client.get("/auth/token", params=scopes)
            assert response.status_code == 200, response.text
            tokens.append(response.json()["token"])
            anonymous = client.get(
                "/auth/token", params=[("scope", "repository:pub/app:pull")], headers={"Authorization": ""}
            )
            tokens.append(anonymous.json()["token"])
            basic_values.append(admin["Authorization"].split(" ", 1)[1])
            basic_values.append(basic("reader", PASSWORDS["reader"])["Authorization"].split(" ", 1)[1])
        world, manifests = _build_world(client, tokens, basic_values)
        yield Target(request.param, app, StorageView(registry), world, manifests, mode == "auth", log)
    for logger in loggers:
        logger.removeHandler(log)


def pytest_terminal_summary(terminalreporter) -> None:
    if SENT:
        runs = len(SENT)
        terminalreporter.write_line(
            f"fuzz: {sum(SENT.values())} requests sent in {runs} test runs (shrinking included; "
            f"{EXAMPLES} generated examples per run, SKYPORT_FUZZ_EXAMPLES sets it)"
        )
