"""The replication and webhook functions' handlers (template.yaml names them), imported as
Lambda's init phase would with the function's environment, fed Lambda SQS events made of the
messages a rule on the registry's bus really delivered (moto's EventBridge and SQS), for a
registry that really took a push. A destination or receiver that is down: the messages are
reported as partial batch failures with their backoff, the failures counted (EMF metrics),
and on the last attempt parked in the function's dead-letter queue with the reason."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from handler_module import import_handler
from hook_queues import REGION, bus_to_queue
from oci import make_image, push_image
from skyport.config import Settings
from skyport.event_bus import EventBusPublisher
from skyport.events import record_as_json, registry_events
from skyport.replication.admin import ReplicationRules
from skyport.storage.clients import AwsClients
from skyport.webhooks import WebhookAdmin
from skyport_api.app import create_app
from skyport_cli.gateway import LambdaContext
from skyport_cli.pipeline import lambda_sqs_record
from skyport_cli.stack import load_template
from skyport_cli.webhooks import SecretsManagerWriter
from starlette.testclient import TestClient


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    """SQS, EventBridge and Secrets Manager on the session's moto for the code under test
    (boto3's AWS_ENDPOINT_URL_*, as the local pipeline sets them); a bus whose rule feeds a
    queue, and a dead-letter queue."""
    for service in ("SQS", "EVENTBRIDGE", "SECRETS_MANAGER"):
        monkeypatch.setenv(f"AWS_ENDPOINT_URL_{service}", moto_endpoint)
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    return bus_to_queue(moto_endpoint)


def publish_pushes(registry, aws: dict) -> None:
    """Push an image by tag, then publish the registry events of the table's stream."""
    with TestClient(create_app(registry)) as client:
        push_image(client, "team/app", make_image(), "1.0")
    dynamodb, streams = registry.clients.dynamodb, registry.clients.dynamodbstreams
    arn = dynamodb.describe_table(TableName=registry.settings.table)["Table"]["LatestStreamArn"]
    (shard,) = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )
    records = streams.get_records(ShardIterator=iterator["ShardIterator"], Limit=1000)["Records"]
    events = [event for record in records for event in registry_events(record_as_json(record))]
    publisher = EventBusPublisher(AwsClients(Settings(bucket="-", table="-", region=REGION)), aws["bus"])
    assert publisher.publish(events) == ([], 3)  # manifest.pushed, repository.created, tag.created


def lambda_event(aws: dict, expected: int) -> dict:
    messages: list[dict] = []
    deadline = time.monotonic() + 10
    while len(messages) < expected and time.monotonic() < deadline:
        page = aws["sqs"].receive_message(
            QueueUrl=aws["url"], MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]
        )
        messages += page.get("Messages", [])
    assert len(messages) == expected
    return {"Records": [lambda_sqs_record(message, aws["arn"], REGION) for message in messages]}


def load(function: str, registry, aws: dict, service: str):
    """The handler template.yaml names for ``function``, its module imported afresh as
    Lambda's init phase would, with the function's environment."""
    module, _, name = load_template()["Resources"][function]["Properties"]["Handler"].rpartition(".")
    settings = registry.settings
    return getattr(
        import_handler(
            {
                "SKYPORT_BUCKET": settings.bucket,
                "SKYPORT_TABLE": settings.table,
                "SKYPORT_S3_ENDPOINT": settings.s3_endpoint or "",
                "SKYPORT_DYNAMODB_ENDPOINT": settings.dynamodb_endpoint or "",
                "SKYPORT_DEAD_LETTER_QUEUE_URL": aws["dead"],
                "SKYPORT_HOOK_MAX_ATTEMPTS": "2",
                "SKYPORT_HOOK_BACKOFF_SECONDS": "1",
                "POWERTOOLS_SERVICE_NAME": service,
                "POWERTOOLS_METRICS_NAMESPACE": "Skyport",
            },
            module,
        ),
        name,
    )


def emitted(output: str) -> dict[str, list]:
    """Metric name -> values, from the EMF lines Powertools printed."""
    metrics: dict[str, list] = {}
    for line in output.splitlines():
        try:
            blob = json.loads(line)
        except ValueError:
            continue
        if isinstance(blob, dict) and "_aws" in blob:
            for definition in blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
                value = blob[definition["Name"]]
                metrics.setdefault(definition["Name"], []).extend(
                    value if isinstance(value, list) else [value]
                )
    return metrics


def event_type(record: dict) -> str:
    return json.loads(record["body"])["detail"]["event-type"]


@pytest.mark.parametrize("kind", ["replication", "webhooks"])
def test_a_destination_that_is_down_retries_then_parks_with_the_reason(kind, registry, aws, capsys):
    down = f"http://127.0.0.1:{closed_port()}"
    if kind == "replication":
        ReplicationRules(registry).add("team/*", down, probe=False)
        handler = load("ReplicationFunction", registry, aws, "skyport-replication")
        failures_metric = "ReplicationFailures"
    else:
        WebhookAdmin(registry, SecretsManagerWriter(registry.clients.secretsmanager)).add(
            f"{down}/hook", secret="s" * 32
        )
        handler = load("WebhookFunction", registry, aws, "skyport-webhooks")
        failures_metric = "WebhookFailures"
    assert "sqs" not in vars(registry.clients), "a boto3 client created at import"
    publish_pushes(registry, aws)

    event = lambda_event(aws, 3)
    response = handler(event, LambdaContext(function_name=f"skyport-{kind}"))
    failed = {failure["itemIdentifier"] for failure in response["batchItemFailures"]}
    by_id = {record["messageId"]: event_type(record) for record in event["Records"]}
    # Replication concerns manifests and tags; webhooks get every event.
    expected = {"manifest.pushed", "tag.created"} | ({"repository.created"} if kind == "webhooks" else set())
    assert {by_id[message] for message in failed} == expected
    metrics = emitted(capsys.readouterr().out)
    assert metrics[failures_metric] == [1] * len(expected)
    assert "DeadLettered" not in metrics

    # Their backoff (1 s at the first attempt), then the second and last attempt.
    time.sleep(1.2)
    retry = lambda_event(aws, len(expected))
    response = handler(retry, LambdaContext(function_name=f"skyport-{kind}"))
    assert response["batchItemFailures"] == []  # parked: done, Lambda deletes them
    metrics = emitted(capsys.readouterr().out)
    assert metrics["DeadLettered"] == [1] * len(expected)

    parked = aws["sqs"].receive_message(
        QueueUrl=aws["dead"], MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )["Messages"]
    assert len(parked) == len(expected)
    for message in parked:
        attributes = {name: value["StringValue"] for name, value in message["MessageAttributes"].items()}
        assert attributes["Attempts"] == "2"
        assert attributes["EventType"] in expected
        assert attributes["SourceQueue"] == aws["arn"]
        assert attributes["Reason"], attributes
        assert "s" * 32 not in json.dumps(message)  # never the webhook's secret


def test_events_no_rule_concerns_are_done_with_their_lag_measured(registry, aws, capsys):
    handler = load("ReplicationFunction", registry, aws, "skyport-replication")
    publish_pushes(registry, aws)
    response = handler(lambda_event(aws, 3), LambdaContext(function_name="skyport-replication"))
    assert response["batchItemFailures"] == []
    metrics = emitted(capsys.readouterr().out)
    assert "ReplicationFailures" not in metrics and "DeadLettered" not in metrics
    assert len(metrics["ReplicationLagSeconds"]) == 3
    assert all(0 <= lag < 60 for lag in metrics["ReplicationLagSeconds"])


def test_an_unreadable_message_is_parked_not_retried(registry, aws):
    handler = load("WebhookFunction", registry, aws, "skyport-webhooks")
    aws["sqs"].send_message(QueueUrl=aws["url"], MessageBody='{"source": "skyport.registry", "detail": {}}')
    response = handler(lambda_event(aws, 1), LambdaContext(function_name="skyport-webhooks"))
    assert response["batchItemFailures"] == []
    (parked,) = aws["sqs"].receive_message(QueueUrl=aws["dead"], MessageAttributeNames=["All"])["Messages"]
    assert "event-type" in parked["MessageAttributes"]["Reason"]["StringValue"]


# function -> (its entry point's core service, the other function's)
SERVICES = {
    "ReplicationFunction": ("skyport.replication", "skyport.webhooks"),
    "WebhookFunction": ("skyport.webhooks", "skyport.replication"),
}


@pytest.mark.parametrize("function", SERVICES)
def test_a_function_builds_only_its_own_service(function, registry, aws):
    """Both functions ship skyport_hooks; the entry point a function's Handler names imports
    (and so builds, in its init phase) its own service, never the other function's entry
    point or service. Imported in a fresh interpreter, as Lambda's init phase does."""
    own, other = SERVICES[function]
    module = load_template()["Resources"][function]["Properties"]["Handler"].rpartition(".")[0]
    probe = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    environment = {
        **os.environ,
        "SKYPORT_BUCKET": registry.settings.bucket,
        "SKYPORT_TABLE": registry.settings.table,
        "SKYPORT_DEAD_LETTER_QUEUE_URL": aws["dead"],
    }
    run = subprocess.run([sys.executable, "-c", probe], env=environment, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    loaded = set(json.loads(run.stdout.splitlines()[-1]))
    hooks = {name for name in loaded if name.startswith("skyport_hooks.")}
    assert hooks == {"skyport_hooks.batch", module}
    assert own in loaded and other not in loaded
