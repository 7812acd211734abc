"""Fixtures of the replication suite: a source registry (the session's moto), a second
Skyport as destination (its own bucket and table on the same moto, and served over real
HTTP by uvicorn for the OCI kind of destination), the registry events of what the source
did (read from its table's stream, as the events function reads them), and Secrets
Manager on the same moto (it is a whole moto)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from direct.running import Served, serve
from skyport.config import Settings
from skyport.events import RegistryEvent, record_as_json, registry_events
from skyport.registry import Registry
from skyport.replication import Replicator
from skyport.replication.admin import ReplicationRules
from skyport.storage.clients import AwsClients
from skyport_api.app import create_app
from skyport_cli.stack import ensure_stack
from starlette.testclient import TestClient

REGION = "us-east-1"


@pytest.fixture(autouse=True)
def secrets_manager_on_moto(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Secrets Manager and STS have no endpoint setting of ours (AWS, or boto3's
    AWS_ENDPOINT_URL_SECRETS_MANAGER, _STS): the session's moto answers for them."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_endpoint)


def new_stack(moto_endpoint: str, aws_clients: AwsClients, template: dict, label: str) -> Settings:
    suffix = uuid.uuid4().hex[:12]
    settings = Settings(
        bucket=f"skyport-{label}-{suffix}",
        table=f"skyport-{label}-{suffix}",
        region=REGION,
        s3_endpoint=moto_endpoint,
        dynamodb_endpoint=moto_endpoint,
    )
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
def destination(moto_endpoint: str, aws_clients: AwsClients, template: dict) -> Registry:
    return Registry(new_stack(moto_endpoint, aws_clients, template, "dest"), clients=aws_clients)


@pytest.fixture
def served_destination(destination: Registry) -> Iterator[Served]:
    with serve(destination) as running:
        yield running


def skyport_url(registry: Registry) -> str:
    """The skyport:// destination URL of ``registry`` (destinations.py)."""
    settings = registry.settings
    return f"skyport://{settings.bucket}/{settings.table}?region={settings.region}&endpoint={settings.s3_endpoint}"


@dataclass
class EventFeed:
    """The registry events of the source's stream not read yet, oldest first."""

    registry: Registry
    seen: set[str] = field(default_factory=set)

    def all(self) -> list[RegistryEvent]:
        dynamodb, streams = self.registry.clients.dynamodb, self.registry.clients.dynamodbstreams
        arn = dynamodb.describe_table(TableName=self.registry.settings.table)["Table"]["LatestStreamArn"]
        records = []
        for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
            iterator = streams.get_shard_iterator(
                StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            while iterator:
                page = streams.get_records(ShardIterator=iterator, Limit=1000)
                if not page["Records"]:
                    break
                records.extend(page["Records"])
                iterator = page.get("NextShardIterator")
        records.sort(key=lambda record: int(record["dynamodb"]["SequenceNumber"]))
        return [event for record in records for event in registry_events(record_as_json(record))]

    def new(self) -> list[RegistryEvent]:
        fresh = [event for event in self.all() if event.id not in self.seen]
        self.seen.update(event.id for event in fresh)
        return fresh


@pytest.fixture
def feed(registry: Registry) -> EventFeed:
    return EventFeed(registry)


@pytest.fixture
def source_client(registry: Registry) -> Iterator[TestClient]:
    with TestClient(create_app(registry), follow_redirects=False) as client:
        yield client


@pytest.fixture
def rules(registry: Registry) -> ReplicationRules:
    return ReplicationRules(registry)


@pytest.fixture
def replicator(registry: Registry) -> Replicator:
    return Replicator(registry)


def replicate_all(replicator: Replicator, events: list[RegistryEvent]) -> None:
    for event in events:
        replicator.replicate(event)
