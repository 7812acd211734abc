"""events/sqs/: the Lambda SQS events the replication and webhook functions receive, one per
sample registry event (events/registry/), as a rule on the bus delivers it to their queues
(moto's EventBridge and SQS, shaped as Lambda's SQS event source delivers it). For
`sam local invoke ReplicationFunction -e events/sqs/04-tag-moved.json` and for the tests.

Each sample carries its registry event unchanged (skyport.sqs_batches.parse_message), and is
what the bus delivers today, all but the ids, handles, hashes and times of one delivery.
Rewrite them with ``SKYPORT_WRITE_EVENT_SAMPLES=1 .venv/bin/python -m pytest tests/events -k sqs_samples``.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import boto3
import pytest
from skyport.config import Settings
from skyport.event_bus import SOURCE, EventBusPublisher
from skyport.events import RegistryEvent
from skyport.sqs_batches import parse_message
from skyport.storage.clients import AwsClients
from skyport_cli.pipeline import lambda_sqs_record

EVENTS = Path(__file__).resolve().parents[2] / "events"
REGION = "us-east-1"
# The queue's ARN in the samples: the deployed stack's replication queue, account of the AWS docs.
SAMPLE_QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:skyport-ReplicationQueue-EXAMPLE"
# What differs between two deliveries of the same event.
VOLATILE_RECORD = {"messageId", "receiptHandle", "md5OfBody", "attributes"}
VOLATILE_ENVELOPE = {"id", "time", "account", "region"}


def registry_samples() -> dict[str, RegistryEvent]:
    samples = {}
    for path in sorted((EVENTS / "registry").glob("*.json")):
        for fields in json.loads(path.read_text())[:1]:
            samples[path.stem] = RegistryEvent.from_dict(fields)
    return samples


@pytest.fixture(scope="module")
def delivered(moto_endpoint: str) -> dict[str, dict]:
    """Each sample registry event published on a bus and received from a rule's queue."""
    saved = {name: os.environ.get(name) for name in ("AWS_ENDPOINT_URL_EVENTBRIDGE",)}
    os.environ["AWS_ENDPOINT_URL_EVENTBRIDGE"] = moto_endpoint
    try:
        name = f"skyport-samples-{uuid.uuid4().hex[:8]}"
        sqs = boto3.client("sqs", region_name=REGION, endpoint_url=moto_endpoint)
        events = boto3.client("events", region_name=REGION, endpoint_url=moto_endpoint)
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.create_event_bus(Name=name)
        events.put_rule(Name="hooks", EventBusName=name, EventPattern=json.dumps({"source": [SOURCE]}))
        events.put_targets(Rule="hooks", EventBusName=name, Targets=[{"Id": "queue", "Arn": arn}])
        publisher = EventBusPublisher(AwsClients(Settings(bucket="-", table="-", region=REGION)), name)
        out = {}
        for sample, event in registry_samples().items():
            assert publisher.publish([event]) == ([], 1)
            (message,) = sqs.receive_message(
                QueueUrl=url, AttributeNames=["All"], MessageAttributeNames=["All"]
            )["Messages"]
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            record = lambda_sqs_record(message, SAMPLE_QUEUE_ARN, REGION)
            envelope = json.loads(record["body"])
            envelope["resources"] = []
            record["body"] = json.dumps(envelope)
            out[sample] = {"Records": [record]}
        return out
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _comparable(event: dict) -> dict:
    (record,) = event["Records"]
    envelope = {k: v for k, v in json.loads(record["body"]).items() if k not in VOLATILE_ENVELOPE}
    return {**{k: v for k, v in record.items() if k not in VOLATILE_RECORD | {"body"}}, "body": envelope}


def test_sqs_samples_are_current(delivered):
    if os.environ.get("SKYPORT_WRITE_EVENT_SAMPLES"):
        for sample, event in delivered.items():
            (EVENTS / "sqs" / f"{sample}.json").write_text(json.dumps(event, indent=2) + "\n")
    written = {path.stem: json.loads(path.read_text()) for path in (EVENTS / "sqs").glob("*.json")}
    assert set(written) == set(delivered)
    for sample, event in delivered.items():
        assert _comparable(written[sample]) == _comparable(event), sample


@pytest.mark.parametrize("sample", sorted(registry_samples()))
def test_each_sample_carries_its_registry_event(sample):
    (record,) = json.loads((EVENTS / "sqs" / f"{sample}.json").read_text())["Records"]
    assert record["eventSource"] == "aws:sqs"
    assert parse_message(record["body"]) == registry_samples()[sample]
