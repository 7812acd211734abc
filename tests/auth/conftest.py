"""Fixtures of the auth suite: a registry with auth on, its identities and grants.

The matrix needs many callers and repositories but each case only a few requests,
so one registry (table, bucket, users, robots, grants, images) serves a whole
module, and every case that writes makes its own tags, blobs or manifests.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest
from skyport.config import Settings
from skyport.registry import Registry
from skyport.storage.clients import AwsClients
from skyport_api.app import create_app
from skyport_cli.stack import ensure_stack
from starlette.testclient import TestClient

REGION = "us-east-1"
REPO_A = "team-a/app"
REPO_B = "team-b/app"
PUBLIC = "pub/app"
PASSWORDS = {
    "root": "root-password-1",
    "reader": "reader-password-1",
    "bob": "bob-password-1",
}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Caller:
    """One identity of the matrix and how it authenticates."""

    name: str  # matrix label
    username: str | None  # None: anonymous
    password: str | None

    def credentials(self) -> dict[str, str]:
        return basic(self.username, self.password) if self.username else {}


def make_auth_settings(moto_endpoint: str, aws_clients: AwsClients, template: dict, **overrides) -> Settings:
    suffix = uuid.uuid4().hex[:12]
    settings = Settings(
        bucket=f"skyport-auth-{suffix}",
        table=f"skyport-auth-{suffix}",
        region=REGION,
        s3_endpoint=moto_endpoint,
        dynamodb_endpoint=moto_endpoint,
        auth="on",
    )
    settings = replace(settings, **overrides)
    ensure_stack(
        aws_clients.s3,
        aws_clients.dynamodb,
        settings.bucket,
        settings.table,
        template=template,
        region=REGION,
    )
    return settings


@pytest.fixture
def aws(moto_endpoint, monkeypatch) -> AwsClients:
    """Clients whose Secrets Manager and SSM are the moto server (as AWS_ENDPOINT_URL_* do)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", moto_endpoint)
    return AwsClients(
        Settings(
            bucket="-",
            table="-",
            region=REGION,
            s3_endpoint=moto_endpoint,
            dynamodb_endpoint=moto_endpoint,
        )
    )


@pytest.fixture
def auth_registry(moto_endpoint: str, aws_clients: AwsClients, template: dict) -> Registry:
    """A fresh registry with auth on (one test)."""
    return Registry(make_auth_settings(moto_endpoint, aws_clients, template), clients=aws_clients)


@pytest.fixture
def auth_client(auth_registry: Registry) -> Iterator[TestClient]:
    with TestClient(create_app(auth_registry), follow_redirects=False) as client:
        yield client


def populate(registry: Registry) -> dict[str, Caller]:
    """The matrix's identities: an admin, a reader of team-a/* (through a group), a
    pusher of team-a/* (a robot), a pusher of team-b/*; pub/* is public."""
    auth = registry.identities
    auth.add_user("root", PASSWORDS["root"], admin=True)
    auth.add_user("reader", PASSWORDS["reader"], groups=["readers-a"])
    auth.add_user("bob", PASSWORDS["bob"])
    robot, robot_secret = auth.add_robot("ci-a")
    auth.grant("team-a/*", "group:readers-a", ["pull"])
    auth.grant("team-a/*", robot.name, ["push"])
    auth.grant("team-b/*", "bob", ["push"])
    auth.set_public("pub/*")
    return {
        "anonymous": Caller("anonymous", None, None),
        "reader_a": Caller("reader_a", "reader", PASSWORDS["reader"]),
        "pusher_a": Caller("pusher_a", robot.name, robot_secret),
        "pusher_b": Caller("pusher_b", "bob", PASSWORDS["bob"]),
        "admin": Caller("admin", "root", PASSWORDS["root"]),
    }
