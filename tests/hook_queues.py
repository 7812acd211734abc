"""A hook's plumbing on moto, as template.yaml builds it for each hook function: an event bus
whose rule sends every registry event to a queue, and a dead-letter queue next to it. Shared
by the consumer's tests (tests/events/test_sqs_batches.py) and the functions' tests
(tests/functions/test_hook_handlers.py)."""

from __future__ import annotations

import json
import uuid

import boto3
from skyport.event_bus import SOURCE

REGION = "us-east-1"


def bus_to_queue(moto_endpoint: str) -> dict:
    """A fresh bus, queue and dead-letter queue, uniquely named: ``sqs`` (a boto3 client),
    the queue's ``url`` and ``arn``, the dead-letter queue's url as ``dead``, the bus as ``bus``."""
    name = f"skyport-test-{uuid.uuid4().hex[:12]}"
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=moto_endpoint)
    events = boto3.client("events", region_name=REGION, endpoint_url=moto_endpoint)
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    dead = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    events.create_event_bus(Name=name)
    events.put_rule(Name="hooks", EventBusName=name, EventPattern=json.dumps({"source": [SOURCE]}))
    events.put_targets(Rule="hooks", EventBusName=name, Targets=[{"Id": "queue", "Arn": arn}])
    return {"sqs": sqs, "url": url, "arn": arn, "dead": dead, "bus": name}
