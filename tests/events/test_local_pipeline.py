"""The local twin of the deployed hooks pipeline (skyport_cli.pipeline), in process on the
session's moto: the bus, queues and rules created from template.yaml (stack.ensure_hooks);
a push to the registry reaches a webhook receiver through the table's stream, the events
function, the bus, the webhook queue and the webhook function, as deployed. Writes that are
not registry content never invoke the events function (the mapping's FilterCriteria)."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator

import pytest
from hook_receiver import HookReceiver, hook_receiver
from oci import make_image, push_image
from skyport.registry import Registry
from skyport.webhooks import WebhookAdmin
from skyport_api.app import create_app
from skyport_cli.pipeline import LocalPipeline, LocalStack, matches, passes
from skyport_cli.stack import ensure_hooks, ensure_stack, local_name
from skyport_cli.webhooks import SecretsManagerWriter
from starlette.testclient import TestClient

REGION = "us-east-1"
SECRET = "local-pipeline-secret-0123456789abcdef"


@pytest.fixture
def hooks_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The endpoints `skyport serve` sets for its process (pipeline.aws_endpoints), for this test only."""
    for service in ("SQS", "EVENTBRIDGE", "SECRETS_MANAGER"):
        monkeypatch.setenv(f"AWS_ENDPOINT_URL_{service}", moto_endpoint)
    monkeypatch.setenv("SKYPORT_HOOK_BACKOFF_SECONDS", "1")


def local_stack(registry: Registry, template: dict, moto_endpoint: str) -> tuple[LocalStack, object]:
    """The hook resources of ``registry``'s table on moto (as `skyport serve` creates them),
    and the clients the pipeline uses."""
    from skyport.config import Settings
    from skyport.storage.clients import AwsClients

    settings = registry.settings
    clients = AwsClients(  # created after the endpoints are set: SQS and EventBridge on moto
        Settings(
            bucket="-", table="-", region=REGION, s3_endpoint=moto_endpoint, dynamodb_endpoint=moto_endpoint
        )
    )
    hooks = ensure_stack(
        clients.s3,
        clients.dynamodb,
        settings.bucket,
        settings.table,
        template=template,
        region=REGION,
        events_client=clients.events,
        sqs_client=clients.sqs,
    )
    assert hooks is not None
    return LocalStack(settings.table, settings.bucket, REGION, moto_endpoint, moto_endpoint, hooks), clients


@pytest.fixture
def pipeline(registry: Registry, template: dict, hooks_env, moto_endpoint: str) -> Iterator[LocalPipeline]:
    settings = registry.settings
    stack, clients = local_stack(registry, template, moto_endpoint)
    hooks = stack.hooks
    running = LocalPipeline(stack, clients, template)
    lines = running.start()
    mappings = [
        "EventsFunction <- the table's stream",
        f"ReplicationFunction <- {local_name(settings.table, 'ReplicationQueue')}",
        f"WebhookFunction <- {local_name(settings.table, 'WebhookQueue')}",
        f"ScanFunction <- {local_name(settings.table, 'ScanQueue')}",  # issue 14
    ]
    # The scheduled functions follow (GcFunction, issue 12: tests/gc/test_schedule.py).
    assert lines[: len(mappings)] == mappings
    running.clients = clients  # type: ignore[attr-defined]
    running.hooks = hooks  # type: ignore[attr-defined]
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def receiver() -> Iterator[HookReceiver]:
    with hook_receiver() as started:
        yield started


def test_the_local_stack_matches_the_template(pipeline, template):
    sqs = pipeline.clients.sqs
    for queue in ("ReplicationQueue", "WebhookQueue"):
        properties = template["Resources"][queue]["Properties"]
        attributes = sqs.get_queue_attributes(QueueUrl=pipeline.hooks.refs[queue], AttributeNames=["All"])[
            "Attributes"
        ]
        assert int(attributes["VisibilityTimeout"]) == properties["VisibilityTimeout"]
        redrive = json.loads(attributes["RedrivePolicy"])
        dead = properties["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        assert redrive["deadLetterTargetArn"] == pipeline.hooks.arns[dead]
        assert int(redrive["maxReceiveCount"]) == properties["RedrivePolicy"]["maxReceiveCount"]
    events = pipeline.clients.events
    bus = pipeline.hooks.refs["RegistryEventBus"]
    rules = {rule["Name"]: rule for rule in events.list_rules(EventBusName=bus)["Rules"]}
    assert set(rules) == {"ReplicationRule", "WebhookRule", "ScanRule"}
    for rule, queue in (("ReplicationRule", "ReplicationQueue"), ("WebhookRule", "WebhookQueue")):
        assert (
            json.loads(rules[rule]["EventPattern"])
            == template["Resources"][rule]["Properties"]["EventPattern"]
        )
        (target,) = events.list_targets_by_rule(Rule=rule, EventBusName=bus)["Targets"]
        assert target["Arn"] == pipeline.hooks.arns[queue]


def test_a_push_reaches_a_webhook_within_seconds(pipeline, registry, receiver):
    WebhookAdmin(registry, SecretsManagerWriter(registry.clients.secretsmanager)).add(
        receiver.url, secret=SECRET, event_types=["tag.created"]
    )
    started = time.monotonic()
    with TestClient(create_app(registry)) as client:
        digest = push_image(client, "team/app", make_image(), "1.0")
    (delivery,) = receiver.wait_for(lambda deliveries: len(deliveries) >= 1, timeout=20)
    assert time.monotonic() - started < 10
    assert delivery.headers["content-type"] == "application/vnd.docker.distribution.events.v2+json"
    (event,) = json.loads(delivery.body)["events"]
    assert event["target"]["repository"] == "team/app"
    assert event["target"]["tag"] == "1.0"
    assert event["target"]["digest"] == digest
    assert pipeline.invocations["EventsFunction"] >= 1
    assert pipeline.invocations["WebhookFunction"] >= 1


def test_writes_that_are_not_registry_content_invoke_no_function(pipeline, registry):
    time.sleep(1)  # whatever the fixture's setup wrote has gone by
    before = dict(pipeline.invocations)
    registry.identities.ensure_admin("admin", "a-long-enough-password-123")
    WebhookAdmin(registry, SecretsManagerWriter(registry.clients.secretsmanager)).add(
        "http://127.0.0.1:9/hooks", secret=SECRET
    )
    time.sleep(1.5)
    assert pipeline.invocations == before


def test_a_restarted_pipeline_reads_the_stream_from_its_start(pipeline, registry, receiver):
    """TRIM_HORIZON: what was written while no pipeline ran is delivered when one starts;
    events already delivered are not sent to a receiver again (its delivery records)."""
    WebhookAdmin(registry, SecretsManagerWriter(registry.clients.secretsmanager)).add(
        receiver.url, secret=SECRET, event_types=["tag.created"]
    )
    pipeline.stop()
    with TestClient(create_app(registry)) as client:
        push_image(client, "team/app", make_image(), "1.0")
        push_image(client, "team/app", make_image(), "2.0")
    time.sleep(1)
    assert receiver.deliveries == []
    restarted = LocalPipeline(pipeline.stack, pipeline.clients)  # the same stack
    restarted.start()
    try:
        receiver.wait_for(lambda deliveries: len(deliveries) >= 2)
        tags = sorted(json.loads(d.body)["events"][0]["target"]["tag"] for d in receiver.deliveries)
        assert tags == ["1.0", "2.0"]
    finally:
        restarted.stop()


@pytest.mark.parametrize(
    ("pattern", "record", "expected"),
    [
        ({"a": {"b": ["x"]}}, {"a": {"b": "x"}}, True),
        ({"a": {"b": ["x"]}}, {"a": {"b": "y"}}, False),
        ({"a": [{"prefix": "RE"}]}, {"a": "REPO#x"}, True),
        ({"a": [{"prefix": "RE"}]}, {"a": 5}, False),
        ({"a": [{"exists": False}]}, {"b": 1}, True),
        ({"a": [{"exists": False}]}, {"a": 1}, False),
        ({"a": [{"exists": True}]}, {"a": 1}, True),
        ({"a": ["x"]}, {"a": ["y", "x"]}, True),
        ({"a": {"b": ["x"]}}, {"a": "x"}, False),
    ],
)
def test_filter_patterns(pattern, record, expected):
    assert matches(pattern, record) is expected
    assert passes([pattern], record) is expected
    assert passes([], record) is True


@pytest.mark.parametrize("option", [{"anything-but": ["x"]}, {"numeric": [">", 1]}])
def test_a_filter_operator_not_supported_locally_is_refused(option):
    with pytest.raises(ValueError):
        matches({"a": [option]}, {"a": "x"})


def test_records_the_events_function_keeps_failing_go_to_the_on_failure_queue_and_later_ones_flow(
    registry, template, hooks_env, moto_endpoint, receiver
):
    """The stream mapping's MaximumRetryAttempts and on-failure destination, as Lambda has
    them: with the bus gone, the events function fails every record; after the retries the
    poller describes the batch (where it is, not its records) in EventsDeadLetterQueue and
    moves on; once the bus is back, a later push flows to a webhook and the given-up one
    does not. The mappings come from the template with one value shortened (MaximumRetryAttempts
    1, for a test of seconds): ``LocalPipeline`` takes the template it runs as its argument."""
    settings = registry.settings
    stack, clients = local_stack(registry, template, moto_endpoint)
    hooks = stack.hooks
    stream_event = template["Resources"]["EventsFunction"]["Properties"]["Events"]["TableStream"]
    on_failure = stream_event["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]
    assert on_failure == {"Fn::GetAtt": ["EventsDeadLetterQueue", "Arn"]}
    shortened = copy.deepcopy(template)
    shortened["Resources"]["EventsFunction"]["Properties"]["Events"]["TableStream"]["Properties"][
        "MaximumRetryAttempts"
    ] = 1
    WebhookAdmin(registry, SecretsManagerWriter(registry.clients.secretsmanager)).add(
        receiver.url, secret=SECRET, event_types=["tag.created"]
    )
    # No bus: every PutEvents is refused, so the events function fails every record.
    bus = hooks.refs["RegistryEventBus"]
    for rule in clients.events.list_rules(EventBusName=bus)["Rules"]:
        targets = clients.events.list_targets_by_rule(Rule=rule["Name"], EventBusName=bus)["Targets"]
        clients.events.remove_targets(
            Rule=rule["Name"], EventBusName=bus, Ids=[target["Id"] for target in targets]
        )
        clients.events.delete_rule(Name=rule["Name"], EventBusName=bus)
    clients.events.delete_event_bus(Name=bus)

    running = LocalPipeline(stack, clients, shortened)
    running.start()
    try:
        with TestClient(create_app(registry)) as client:
            push_image(client, "team/app", make_image(), "given-up")
        dead_letters = hooks.refs["EventsDeadLetterQueue"]
        messages: list[dict] = []
        deadline = time.monotonic() + 20
        while not messages and time.monotonic() < deadline:
            messages = clients.sqs.receive_message(QueueUrl=dead_letters, WaitTimeSeconds=1).get(
                "Messages", []
            )
        assert messages, "nothing reached the on-failure queue"
        # Any later batch of the push's records is given up too: wait until the function
        # has been quiet for longer than a retry's pause, with every batch described.
        while True:
            invoked = running.invocations["EventsFunction"]
            time.sleep(2)
            while page := clients.sqs.receive_message(QueueUrl=dead_letters, MaxNumberOfMessages=10).get(
                "Messages"
            ):
                messages.extend(page)
            if running.invocations["EventsFunction"] == invoked == 2 * len(messages):
                break
            assert time.monotonic() < deadline + 20, "the events function never went quiet"
        for message in messages:
            description = json.loads(message["Body"])
            assert description["requestContext"]["condition"] == "RetryAttemptsExhausted"
            batch = description["DDBStreamBatchInfo"]
            assert batch["batchSize"] >= 1
            assert int(batch["startSequenceNumber"]) <= int(batch["endSequenceNumber"])
            assert batch["shardId"]
        # Each batch given up had one first attempt and one retry (MaximumRetryAttempts 1), no more:
        # the loop above ended with as many invocations as twice the batches described.

        ensure_hooks(clients.events, clients.sqs, settings.table, template)  # the bus is back
        with TestClient(create_app(registry)) as client:
            push_image(client, "team/app", make_image(), "after")
        (delivery,) = receiver.wait_for(lambda deliveries: len(deliveries) >= 1, timeout=20)
        (event,) = json.loads(delivery.body)["events"]
        assert event["target"]["tag"] == "after"
        time.sleep(1)
        assert len(receiver.deliveries) == 1  # the given-up records are not sent again
    finally:
        running.stop()
