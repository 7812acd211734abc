"""skyport.sqs_batches against moto's SQS and EventBridge: registry events published to a bus,
delivered by a rule to a queue, received as Lambda receives them, and fed to a service that
succeeds or fails. Backoff shows as the message's visibility, the last failure as a message in
the dead-letter queue with the reason; an unreadable message is parked at once."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from hook_queues import REGION, bus_to_queue
from skyport.config import Settings
from skyport.event_bus import SOURCE, EventBusPublisher
from skyport.events import RegistryEvent
from skyport.sqs_batches import DEAD_LETTERED, DONE, RETRY, RetryPolicy, SqsEventConsumer
from skyport.storage.clients import AwsClients
from skyport_cli.pipeline import lambda_sqs_record

EVENT = RegistryEvent(
    id="ab12-0",
    type="tag.moved",
    time="2026-12-06T06:01:25Z",
    repository="team/app",
    ordering_key="team/app:latest",
    sequence_number="1100000000017454423022",
    tag="latest",
    digest="sha256:" + "8d" * 32,
    previous_digest="sha256:" + "c3" * 32,
    media_type="application/vnd.oci.image.manifest.v1+json",
    size=417,
)


@pytest.fixture
def queues(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A bus whose rule sends registry events to a queue, and a dead-letter queue; the core's
    clients reach them on moto as the functions' do on AWS (AWS_ENDPOINT_URL_*)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", moto_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_EVENTBRIDGE", moto_endpoint)
    return {
        **bus_to_queue(moto_endpoint),
        "clients": AwsClients(Settings(bucket="-", table="-", region=REGION)),
    }


def publish(queues: dict, event: RegistryEvent = EVENT) -> None:
    failed, published = EventBusPublisher(queues["clients"], queues["bus"]).publish([event])
    assert (failed, published) == ([], 1)


def receive(queues: dict, url: str | None = None) -> list[dict]:
    page = queues["sqs"].receive_message(
        QueueUrl=url or queues["url"],
        MaxNumberOfMessages=10,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
    )
    return page.get("Messages", [])


def record(queues: dict, message: dict) -> dict:
    return lambda_sqs_record(message, queues["arn"], REGION)


class Service:
    """A service that fails while ``failing`` is set, remembering what it was given."""

    def __init__(self, failing: str = "") -> None:
        self.failing = failing
        self.calls: list[RegistryEvent] = []

    def __call__(self, event: RegistryEvent) -> None:
        self.calls.append(event)
        if self.failing:
            raise RuntimeError(self.failing)


def consumer(queues: dict, service, policy: RetryPolicy, **kwargs) -> SqsEventConsumer:
    return SqsEventConsumer(queues["clients"], service, queues["dead"], policy, **kwargs)


def test_the_event_reaches_the_service_as_published(queues):
    publish(queues)
    (message,) = receive(queues)
    service = Service()
    now = datetime(2026, 12, 6, 6, 1, 35, tzinfo=UTC)
    outcome = consumer(queues, service, RetryPolicy(), clock=lambda: now).consume(record(queues, message))
    assert service.calls == [EVENT]
    assert (outcome.status, outcome.event, outcome.lag_seconds, outcome.failed) == (DONE, EVENT, 10.0, False)
    assert receive(queues, queues["dead"]) == []


def test_a_failure_backs_off_by_visibility_growing_with_receives_then_parks_with_the_reason(queues):
    publish(queues)
    policy = RetryPolicy(max_attempts=3, base_seconds=1, cap_seconds=60)
    service = Service(failing="destination 127.0.0.1:9 refused the connection")
    feed = consumer(queues, service, policy, draw=lambda: 1.0)  # jitter at its top: the full backoff

    (first,) = receive(queues)
    outcome = feed.consume(record(queues, first))
    assert (outcome.status, outcome.attempts, outcome.retry_after_seconds) == (RETRY, 1, 1)
    assert outcome.failed and "refused" in outcome.reason
    # The queue's visibility timeout is 60 s; the backoff made it 1 s.
    assert receive(queues) == []
    time.sleep(1.3)
    (second,) = receive(queues)
    assert second["Attributes"]["ApproximateReceiveCount"] == "2"
    outcome = feed.consume(record(queues, second))
    assert (outcome.status, outcome.retry_after_seconds) == (RETRY, 2)
    time.sleep(1.2)
    assert receive(queues) == []  # 2 s this time
    time.sleep(1.0)
    (third,) = receive(queues)
    outcome = feed.consume(record(queues, third))
    assert (outcome.status, outcome.attempts) == (DEAD_LETTERED, 3)

    (parked,) = receive(queues, queues["dead"])
    attributes = {name: value["StringValue"] for name, value in parked["MessageAttributes"].items()}
    assert attributes == {
        "Reason": "RuntimeError: destination 127.0.0.1:9 refused the connection",
        "Attempts": "3",
        "EventId": EVENT.id,
        "EventType": EVENT.type,
        "SourceQueue": queues["arn"],
    }
    assert parked["Body"] == third["Body"]  # unchanged: a redrive puts it back as it was
    assert len(service.calls) == 3


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        json.dumps({"source": "aws.ecr", "detail": {}}),
        json.dumps({"source": SOURCE, "detail": {"event-type": "image.scanned", "event-id": "x-1"}}),
        json.dumps({"source": SOURCE, "detail": "\x00"}),
    ],
    ids=["text", "array", "other-source", "unknown-type", "detail-string"],
)
def test_an_unreadable_message_is_parked_at_once(queues, body):
    queues["sqs"].send_message(QueueUrl=queues["url"], MessageBody=body)
    (message,) = receive(queues)
    service = Service()
    outcome = consumer(queues, service, RetryPolicy()).consume(record(queues, message))
    assert (outcome.status, outcome.attempts, service.calls) == (DEAD_LETTERED, 1, [])
    (parked,) = receive(queues, queues["dead"])
    assert parked["Body"] == body
    assert parked["MessageAttributes"]["Reason"]["StringValue"] == outcome.reason != ""
    if "x-1" in body:
        assert parked["MessageAttributes"]["EventId"]["StringValue"] == "x-1"


def test_a_dead_letter_queue_that_refuses_keeps_the_message_on_its_queue(queues):
    publish(queues)
    (message,) = receive(queues)
    broken = SqsEventConsumer(queues["clients"], Service("down"), queues["dead"] + "-missing", RetryPolicy(1))
    with pytest.raises(Exception, match="NonExistentQueue|does not exist"):
        broken.consume(record(queues, message))


def test_a_reason_is_bounded_and_xml_safe(queues):
    publish(queues)
    (message,) = receive(queues)
    outcome = consumer(queues, Service("\x00bad\x1b" + "x" * 5000), RetryPolicy(1)).consume(
        record(queues, message)
    )
    assert outcome.status == DEAD_LETTERED
    (parked,) = receive(queues, queues["dead"])
    reason = parked["MessageAttributes"]["Reason"]["StringValue"]
    assert reason.startswith("RuntimeError: ?bad?x") and len(reason) == 1000


def test_backoff_grows_is_capped_and_jittered():
    policy = RetryPolicy(max_attempts=8, base_seconds=10, cap_seconds=900)
    assert [policy.delay(n, lambda: 1.0) for n in range(1, 9)] == [10, 20, 40, 80, 160, 320, 640, 900]
    assert [policy.delay(n, lambda: 0.0) for n in range(1, 4)] == [5, 10, 20]
    # A 1 s base never truncates to an immediate retry (visibility is whole seconds).
    short = RetryPolicy(max_attempts=3, base_seconds=1, cap_seconds=2)
    assert [short.delay(n, lambda: 0.0) for n in range(1, 4)] == [1, 1, 1]
    assert [short.delay(n, lambda: 1.0) for n in range(1, 4)] == [1, 2, 2]
    assert (
        policy.delay(10**6, lambda: 1.0) == 900
    )  # a huge receive count neither overflows nor escapes the cap


@pytest.mark.parametrize(
    "env",
    [
        {"SKYPORT_HOOK_MAX_ATTEMPTS": "0"},
        {"SKYPORT_HOOK_MAX_ATTEMPTS": "\u0663"},
        {"SKYPORT_HOOK_BACKOFF_SECONDS": "-1"},
        {"SKYPORT_HOOK_BACKOFF_CAP_SECONDS": "43201"},
    ],
)
def test_a_policy_out_of_range_is_refused_at_start(env):
    with pytest.raises(ValueError):
        RetryPolicy.from_env(env)
    assert RetryPolicy.from_env({}) == RetryPolicy()
