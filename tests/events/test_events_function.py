"""The events function (skyport_events.handler.handler, as template.yaml names it) fed Lambda
DynamoDB-stream events built from the committed samples in events/stream/, publishing to an
EventBridge bus on moto. A rule on the bus sends everything from skyport.registry to an SQS
queue, and the test reads what arrived there."""

from __future__ import annotations

import ast
import copy
import importlib
import json
import uuid
from pathlib import Path

import boto3
import botocore.session
import pytest
from botocore import xform_name
from skyport.event_bus import DETAIL_TYPES, SOURCE
from skyport.events import EVENT_SOURCE_FILTER

SAMPLES = Path(__file__).resolve().parents[2] / "events"
REGION = "us-east-1"
STREAM = sorted((SAMPLES / "stream").glob("*.json"))
# Expected Detail keys for the registry event's keys (skyport/event_bus.py docstring).
DETAIL_NAMES = {
    "id": "event-id",
    "type": "event-type",
    "time": "event-time",
    "repository": "repository-name",
    "orderingKey": "ordering-key",
    "sequenceNumber": "sequence-number",
    "tag": "image-tag",
    "digest": "image-digest",
    "previousDigest": "previous-digest",
    "mediaType": "manifest-media-type",
    "size": "size",
    "artifactType": "artifact-media-type",
    "subject": "subject",
}


def stream_record(name: str) -> dict:
    (record,) = json.loads((SAMPLES / "stream" / f"{name}.json").read_text())["Records"]
    return record


def registry_sample(name: str) -> list[dict]:
    return json.loads((SAMPLES / "registry" / f"{name}.json").read_text())


def sequence(record: dict) -> str:
    return record["dynamodb"]["SequenceNumber"]


def expected_detail(event: dict) -> dict:
    """The Detail the bus should carry for a registry event (events/registry)."""
    detail = {DETAIL_NAMES[name]: value for name, value in event.items() if name != "tags"}
    if event.get("tags"):  # manifest.pushed: the tag the push named, as ECR's image-tag
        detail["image-tag"] = event["tags"][0]
    deletion = event["type"].endswith(".deleted")
    detail["action-type"] = "DELETE" if deletion else "PUSH"
    detail["result"] = "SUCCESS"
    if event["type"] == "tag.deleted":
        detail["image-digest"] = event["previousDigest"]
    return detail


@pytest.fixture
def bus(moto_endpoint: str) -> dict:
    """A bus with a rule sending every skyport.registry event to a fresh queue."""
    events = boto3.client("events", region_name=REGION, endpoint_url=moto_endpoint)
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=moto_endpoint)
    name = f"skyport-test-{uuid.uuid4().hex[:12]}"
    events.create_event_bus(Name=name)
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(Name="all", EventBusName=name, EventPattern=json.dumps({"source": [SOURCE]}))
    events.put_targets(Rule="all", EventBusName=name, Targets=[{"Id": "queue", "Arn": queue_arn}])
    return {"name": name, "sqs": sqs, "queue_url": queue_url}


def received(bus: dict) -> list[dict]:
    """Every message the rule delivered to the queue, as EventBridge events."""
    messages = []
    while True:
        page = bus["sqs"].receive_message(QueueUrl=bus["queue_url"], MaxNumberOfMessages=10)
        if not page.get("Messages"):
            return messages
        for message in page["Messages"]:
            messages.append(json.loads(message["Body"]))
            bus["sqs"].delete_message(QueueUrl=bus["queue_url"], ReceiptHandle=message["ReceiptHandle"])


def load_handler(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str, bus_name: str):
    """The handler module imported as Lambda's init phase would, with the function's
    environment (template.yaml) and the bus's endpoint on moto. Kept set for the test:
    the events client is created on first use."""
    monkeypatch.setenv("SKYPORT_BUCKET", "unused")
    monkeypatch.setenv("SKYPORT_TABLE", "unused")
    monkeypatch.setenv("SKYPORT_EVENT_BUS", bus_name)
    monkeypatch.setenv("AWS_ENDPOINT_URL_EVENTBRIDGE", moto_endpoint)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "skyport-events")
    module = importlib.reload(importlib.import_module("skyport_events.handler"))
    assert "events" not in vars(module.clients), "a boto3 client created at import"
    return module


def count_put_events(module) -> list[int]:
    """How many PutEvents calls the function's boto3 client makes (a botocore hook, not a
    fake: the calls still go to moto)."""
    calls: list[int] = []

    def count(params: dict, **kwargs) -> None:
        calls.append(len(params["Entries"]))

    module.publisher.client.meta.events.register("before-parameter-build.eventbridge.PutEvents", count)
    return calls


def test_the_sample_records_arrive_on_the_bus_as_documented(monkeypatch, moto_endpoint, bus):
    module = load_handler(monkeypatch, moto_endpoint, bus["name"])
    calls = count_put_events(module)
    records = [stream_record(path.stem) for path in STREAM]
    assert module.handler({"Records": records}) == {"batchItemFailures": []}

    expected = [event for path in STREAM for event in registry_sample(path.stem)]
    assert len(expected) == 7 and calls == [7]
    arrived = received(bus)
    assert sorted((m["detail-type"], json.dumps(m["detail"], sort_keys=True)) for m in arrived) == sorted(
        (DETAIL_TYPES[e["type"]], json.dumps(expected_detail(e), sort_keys=True)) for e in expected
    )
    assert {m["source"] for m in arrived} == {SOURCE}
    assert all(m["resources"] == [] for m in arrived)

    # One in full, as the docstring of skyport/event_bus.py documents it.
    (moved,) = [m for m in arrived if m["detail-type"] == "Skyport Tag Moved"]
    (event,) = registry_sample("04-tag-moved")
    assert moved["detail"] == {
        "action-type": "PUSH",
        "result": "SUCCESS",
        "repository-name": "samples/app",
        "image-digest": event["digest"],
        "image-tag": "latest",
        "manifest-media-type": "application/vnd.oci.image.manifest.v1+json",
        "event-id": event["id"],
        "event-type": "tag.moved",
        "event-time": event["time"],
        "ordering-key": "samples/app:latest",
        "sequence-number": event["sequenceNumber"],
        "previous-digest": event["previousDigest"],
        "size": 417,
    }


def test_delivering_the_same_record_again_gives_the_same_event_ids(monkeypatch, moto_endpoint, bus):
    module = load_handler(monkeypatch, moto_endpoint, bus["name"])
    record = stream_record("03-tag-created")
    for _ in range(2):
        assert module.handler({"Records": [record]}) == {"batchItemFailures": []}
    ids = [m["detail"]["event-id"] for m in received(bus)]
    assert ids == [registry_sample("03-tag-created")[0]["id"]] * 2


def test_an_oversize_entry_fails_its_record_and_every_later_one(monkeypatch, moto_endpoint, bus):
    module = load_handler(monkeypatch, moto_endpoint, bus["name"])
    calls = count_put_events(module)
    huge = stream_record("03-tag-created")
    huge["dynamodb"]["NewImage"]["media_type"] = {"S": "application/x." + "a" * 300_000}
    records = [
        stream_record("01-manifest-pushed"),
        stream_record("02-repository-created"),
        huge,
        stream_record("04-tag-moved"),
        stream_record("09-blob-linked"),
    ]
    response = module.handler({"Records": records})
    assert response == {"batchItemFailures": [{"itemIdentifier": sequence(r)} for r in records[2:]]}
    # The two before it were published, in one call; nothing after the failure was sent.
    assert calls == [2]
    assert sorted(m["detail-type"] for m in received(bus)) == [
        "Skyport Manifest Pushed",
        "Skyport Repository Created",
    ]


def test_a_missing_bus_fails_every_record_from_the_first_with_events(monkeypatch, moto_endpoint):
    module = load_handler(monkeypatch, moto_endpoint, f"no-such-bus-{uuid.uuid4().hex[:8]}")
    records = [
        stream_record("09-blob-linked"),
        stream_record("08-manifest-pushed-again"),
        stream_record("06-tag-deleted"),
        stream_record("07-manifest-deleted"),
    ]
    response = module.handler({"Records": records})
    assert response == {"batchItemFailures": [{"itemIdentifier": sequence(r)} for r in records[2:]]}
    # Every record failing is reported the same way, not raised (the handler's docstring).
    response = module.handler({"Records": records[2:]})
    assert response == {"batchItemFailures": [{"itemIdentifier": sequence(r)} for r in records[2:]]}


def test_records_without_registry_events_make_no_put_events_call(monkeypatch, moto_endpoint, bus):
    module = load_handler(monkeypatch, moto_endpoint, bus["name"])
    calls = count_put_events(module)
    records = [stream_record("08-manifest-pushed-again"), stream_record("09-blob-linked")]
    assert module.handler({"Records": records}) == {"batchItemFailures": []}
    assert calls == []
    assert received(bus) == []


def test_a_big_batch_goes_in_calls_of_ten(monkeypatch, moto_endpoint, bus):
    module = load_handler(monkeypatch, moto_endpoint, bus["name"])
    calls = count_put_events(module)
    template = stream_record("03-tag-created")
    records = []
    for number in range(25):
        record = copy.deepcopy(template)
        record["eventID"] = f"{template['eventID'][:-4]}{number:04d}"
        record["dynamodb"]["SequenceNumber"] = str(int(sequence(template)) + number)
        for key in ("Keys", "NewImage"):
            record["dynamodb"][key]["SK"] = {"S": f"TAG#v{number}"}
        records.append(record)
    assert module.handler({"Records": records}) == {"batchItemFailures": []}
    assert calls == [10, 10, 5]
    assert sorted(m["detail"]["image-tag"] for m in received(bus)) == sorted(f"v{n}" for n in range(25))


def test_the_template_filters_the_stream_as_the_code_does(template: dict):
    (source,) = template["Resources"]["EventsFunction"]["Properties"]["Events"].values()
    assert source["Type"] == "DynamoDB"
    assert source["Properties"]["FilterCriteria"] == EVENT_SOURCE_FILTER


def test_the_event_source_mapping_retries_in_order_then_parks_in_an_encrypted_queue(template: dict):
    resources = template["Resources"]
    function = resources["EventsFunction"]["Properties"]
    (source,) = function["Events"].values()
    mapping = source["Properties"]
    assert mapping["Stream"] == {"Fn::GetAtt": ["MetadataTable", "StreamArn"]}
    assert mapping["StartingPosition"] == "TRIM_HORIZON"
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True
    assert 0 < mapping["MaximumRetryAttempts"] <= 10_000
    assert mapping.get("ParallelizationFactor", 1) == 1  # one batch per shard: the stream's order
    on_failure = mapping["DestinationConfig"]["OnFailure"]
    assert on_failure == {"Type": "SQS", "Destination": {"Fn::GetAtt": ["EventsDeadLetterQueue", "Arn"]}}
    assert resources["EventsDeadLetterQueue"]["Properties"]["SqsManagedSseEnabled"] is True
    assert function["LoggingConfig"] == {"LogGroup": {"Ref": "EventsFunctionLogGroup"}}
    assert "RetentionInDays" in resources["EventsFunctionLogGroup"]["Properties"]
    assert function["Environment"]["Variables"]["SKYPORT_EVENT_BUS"] == {"Ref": "RegistryEventBus"}
    assert function["Handler"] == "skyport_events.handler.handler"


def test_the_role_grants_exactly_the_calls_the_publisher_makes(template: dict):
    """tests/unit/test_template.py's idea for the events function: the EventBridge calls in
    its code (the handler and skyport/event_bus.py) are exactly what its role grants, on the
    bus only. The stream's read actions and sqs:SendMessage on the DLQ are SAM's (the
    DynamoDB event and its OnFailure Type SQS)."""
    session = botocore.session.get_session()
    operations = {xform_name(name): name for name in session.get_service_model("events").operation_names}
    root = Path(__file__).resolve().parents[2]
    code = [
        root / "layers" / "skyport" / "skyport" / "event_bus.py",
        *(root / "functions" / "events").rglob("*.py"),
    ]
    called = set()
    for path in code:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in operations
            ):
                called.add(f"events:{operations[node.func.attr]}")
    assert called == {"events:PutEvents"}
    statements = [
        s for p in template["Resources"]["EventsFunction"]["Properties"]["Policies"] for s in p["Statement"]
    ]
    assert {action for s in statements for action in s["Action"]} == called
    assert all(s["Resource"] == {"Fn::GetAtt": ["RegistryEventBus", "Arn"]} for s in statements)
