"""Consuming registry events from an SQS queue, for the replication and webhook functions
(issue 11).

Deployed, an EventBridge rule on the registry's bus sends each registry event to a queue
(template.yaml: ReplicationQueue, WebhookQueue); each message's body is the EventBridge
event JSON, whose ``detail`` is ``skyport.event_bus.detail(event)``. Lambda's SQS event
source hands the function a batch of such messages; for each one ``SqsEventConsumer.consume``:

- parses it back into a ``RegistryEvent`` (``RegistryEvent.from_detail``). A message we
  cannot read (not JSON, not from ``skyport.registry``, a detail we did not write) will not
  get better with time: it goes to the dead-letter queue at once, with the reason, and is
  reported done;
- calls the service (``Replicator.replicate``, ``WebhookDispatcher.deliver``). Returning is
  success: the message is done, and Lambda deletes it;
- on failure (any exception: the services raise ReplicationFailed / WebhookDeliveryFailed,
  and anything else is a failure too, never a lost event) it backs off: the message's
  visibility timeout becomes ``RetryPolicy.delay(attempt)``, growing with the message's
  ApproximateReceiveCount, capped and jittered (so that a destination that is down is not
  hammered by every message at the same moment), and the caller reports it as a partial
  batch failure (Lambda, "Handling errors for an SQS event source": ReportBatchItemFailures
  keeps the failed messages on the queue; they come back when their visibility ends);
- after ``RetryPolicy.max_attempts`` receives that all failed, it sends the message to the
  function's dead-letter queue with what an operator needs as message attributes (below),
  and reports it done. The body is kept as it was, so that SQS's redrive (StartMessageMoveTask)
  can put it back on its source queue once the cause is fixed.

The queue's own redrive policy (maxReceiveCount above max_attempts, template.yaml) is a
backstop only: it moves a message that kept failing without reaching this code (the
function crashing or timing out), without a reason.

Dead-letter message attributes (String unless said)::

    Reason       why the last attempt failed, or why the message is unreadable (at most
                 MAX_REASON_CHARACTERS; services never put credentials in their reasons)
    Attempts     Number: receives so far (ApproximateReceiveCount)
    EventId      the registry event's id, when the message carries one
    EventType    the registry event's type, when known
    SourceQueue  the ARN of the queue the message came from

Whatever happens, ``consume`` returns a ``MessageOutcome``: the functions turn it into
metrics (failures, dead-lettered, lag) and, for ``RETRY``, into a partial batch failure.
It raises only when a message must stay on the queue and could not be parked: never for
one message's content.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .event_bus import SOURCE
from .events import RegistryEvent

log = logging.getLogger(__name__)

# SQS: a message's visibility timeout is at most 12 hours (ChangeMessageVisibility).
MAX_VISIBILITY_SECONDS = 12 * 3600
# A message attribute value counts against the 256 KiB message size; a reason is a sentence.
MAX_REASON_CHARACTERS = 1000

DONE = "done"  # the service succeeded: delete the message
RETRY = "retry"  # the service failed: leave the message, visible again after its backoff
DEAD_LETTERED = "dead-lettered"  # parked in the dead-letter queue with the reason: delete it


@dataclass(frozen=True)
class RetryPolicy:
    """How often a failing event is tried and how long it waits between tries.

    With the defaults, tries come after about 10 s, 20 s, 40 s, ... up to 15 minutes
    apart, 8 tries in all: roughly half an hour for a destination to come back before
    the event is parked in the dead-letter queue."""

    max_attempts: int = 8
    base_seconds: int = 10
    cap_seconds: int = 900

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RetryPolicy:
        """SKYPORT_HOOK_MAX_ATTEMPTS, SKYPORT_HOOK_BACKOFF_SECONDS, SKYPORT_HOOK_BACKOFF_CAP_SECONDS
        (template.yaml sets them on both functions); refused at start when out of range."""
        defaults = cls()

        def number(name: str, default: int, low: int, high: int) -> int:
            text = env.get(name) or str(default)
            if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
                raise ValueError(f"{name} must be a whole number in {low}..{high}, not {text!r}")
            return int(text)

        return cls(
            max_attempts=number("SKYPORT_HOOK_MAX_ATTEMPTS", defaults.max_attempts, 1, 100),
            base_seconds=number(
                "SKYPORT_HOOK_BACKOFF_SECONDS", defaults.base_seconds, 0, MAX_VISIBILITY_SECONDS
            ),
            cap_seconds=number(
                "SKYPORT_HOOK_BACKOFF_CAP_SECONDS", defaults.cap_seconds, 0, MAX_VISIBILITY_SECONDS
            ),
        )

    def delay(self, attempt: int, draw: Callable[[], float] = random.random) -> int:
        """Seconds before try ``attempt + 1``: base * 2^(attempt - 1), capped, then
        "equal jitter" (half fixed, half random) so retries of one outage spread out but
        never come sooner than half the backoff."""
        exponent = min(max(attempt, 1) - 1, 30)
        ceiling = min(self.cap_seconds, self.base_seconds * 2**exponent, MAX_VISIBILITY_SECONDS)
        # Rounded up: SQS counts visibility in whole seconds, and a 1 s base must not
        # truncate to an immediate retry.
        return math.ceil(ceiling / 2 + draw() * ceiling / 2)


@dataclass(frozen=True)
class MessageOutcome:
    """What became of one message: ``status`` (DONE, RETRY, DEAD_LETTERED); the event
    when the message was readable; the failure's reason; the receive count; the seconds
    between the event's stream record and its success (None when not a success or the
    time is unknown); the backoff given to a RETRY."""

    message_id: str
    status: str
    event: RegistryEvent | None = None
    reason: str = ""
    attempts: int = 0
    lag_seconds: float | None = None
    retry_after_seconds: int | None = None

    @property
    def failed(self) -> bool:
        """The service was called and failed (retried or, at the last attempt, parked)."""
        return bool(self.reason) and self.event is not None


# Metric names the functions emit for every outcome (template.yaml, README "Hooks").
DEAD_LETTERED_METRIC = "DeadLettered"


def metric_values(
    outcome: MessageOutcome, failures_metric: str, lag_metric: str | None = None
) -> list[tuple[str, str, float]]:
    """The metrics one outcome adds, as (name, unit, value): ``failures_metric`` for each
    failed try of the service, DEAD_LETTERED_METRIC for a parked message, ``lag_metric``
    (seconds from the stream record to success) when given and known. The functions emit
    them (CloudWatch EMF); the core knows no metrics library."""
    values: list[tuple[str, str, float]] = []
    if outcome.failed:
        values.append((failures_metric, "Count", 1))
    if outcome.status == DEAD_LETTERED:
        values.append((DEAD_LETTERED_METRIC, "Count", 1))
    if lag_metric and outcome.status == DONE and outcome.lag_seconds is not None:
        values.append((lag_metric, "Seconds", outcome.lag_seconds))
    return values


class UnreadableMessage(ValueError):
    """A message whose body is not a registry event we published."""


def parse_message(body: Any) -> RegistryEvent:
    """The registry event an SQS message body (EventBridge event JSON) carries."""
    try:
        envelope = json.loads(body) if isinstance(body, str) else None
    except ValueError as error:
        raise UnreadableMessage(f"body is not JSON: {error}") from None
    if not isinstance(envelope, dict):
        raise UnreadableMessage("body is not an EventBridge event (a JSON object)")
    if envelope.get("source") != SOURCE:
        raise UnreadableMessage(f"event source is not {SOURCE}")
    try:
        return RegistryEvent.from_detail(envelope.get("detail"))
    except ValueError as error:
        raise UnreadableMessage(str(error)) from None


def _xml_safe(text: str) -> str:
    """SQS message attribute values accept the XML character set only (#x9, #xA, #xD,
    #x20-#xD7FF, #xE000-#xFFFD, #x10000-#x10FFFF): anything else becomes "?"."""

    def allowed(ch: str) -> bool:
        code = ord(ch)
        return (
            code in (0x9, 0xA, 0xD)
            or 0x20 <= code <= 0xD7FF
            or 0xE000 <= code <= 0xFFFD
            or 0x10000 <= code <= 0x10FFFF
        )

    return "".join(ch if allowed(ch) else "?" for ch in text)


def _reason(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    if not isinstance(error, UnreadableMessage) and type(error).__name__ not in text:
        text = f"{type(error).__name__}: {text}"
    return _xml_safe(text)[:MAX_REASON_CHARACTERS]


def _receive_count(record: Mapping) -> int:
    attributes = record.get("attributes")
    count = attributes.get("ApproximateReceiveCount") if isinstance(attributes, Mapping) else None
    if isinstance(count, str) and count.isascii() and count.isdigit():
        return max(int(count), 1)
    return 1


class SqsEventConsumer:
    """Feeds the registry events of SQS messages (Lambda's SQS records) to one service."""

    def __init__(
        self,
        clients: Any,
        service: Callable[[RegistryEvent], None],
        dead_letter_queue_url: str,
        policy: RetryPolicy | None = None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        draw: Callable[[], float] = random.random,
    ) -> None:
        """``clients``: what holds the boto3 ``sqs`` client (AwsClients: created on first
        use, not here); ``service``: called with each event, raises when it failed."""
        self._clients = clients
        self._service = service
        self._dead_letter_queue_url = dead_letter_queue_url
        self._policy = policy or RetryPolicy()
        self._clock = clock
        self._draw = draw
        self._queue_urls: dict[str, str] = {}

    def consume(self, record: Mapping) -> MessageOutcome:
        """One SQS record, as Lambda delivers it (messageId, receiptHandle, body,
        attributes.ApproximateReceiveCount, eventSourceARN)."""
        message_id = str(record.get("messageId") or "")
        attempts = _receive_count(record)
        try:
            event = parse_message(record.get("body"))
        except UnreadableMessage as error:
            reason = _reason(error)
            log.warning("unreadable message parked", extra={"message_id": message_id, "reason": reason})
            self._park(record, reason, attempts, None)
            return MessageOutcome(message_id, DEAD_LETTERED, reason=reason, attempts=attempts)
        try:
            self._service(event)
        except Exception as error:  # noqa: BLE001 - every failure is retried, then parked: never lost
            reason = _reason(error)
            if attempts >= self._policy.max_attempts:
                self._park(record, reason, attempts, event)
                return MessageOutcome(message_id, DEAD_LETTERED, event, reason, attempts)
            delay = self._policy.delay(attempts, self._draw)
            self._back_off(record, delay)
            return MessageOutcome(message_id, RETRY, event, reason, attempts, retry_after_seconds=delay)
        return MessageOutcome(
            message_id, DONE, event, attempts=attempts, lag_seconds=event.seconds_since(self._clock())
        )

    # --- SQS calls ---------------------------------------------------------------------

    @property
    def _sqs(self) -> Any:
        return self._clients.sqs

    def _queue_url(self, queue_arn: str) -> str:
        """The URL of the queue an ARN names (arn:aws:sqs:<region>:<account>:<name>), asked
        of SQS once per process: the endpoint's form differs between AWS and moto."""
        if queue_arn not in self._queue_urls:
            parts = queue_arn.split(":")
            if len(parts) != 6 or parts[2] != "sqs":
                raise ValueError(f"not an SQS queue ARN: {queue_arn!r}")
            response = self._sqs.get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])
            self._queue_urls[queue_arn] = response["QueueUrl"]
        return self._queue_urls[queue_arn]

    def _back_off(self, record: Mapping, delay: int) -> None:
        """The message comes back after ``delay`` seconds. If SQS refuses (the receipt
        handle expired, the queue is unreachable), the message comes back after the
        queue's own visibility timeout instead: later, never lost."""
        from botocore.exceptions import BotoCoreError, ClientError  # deferred with boto3 (clients.py)

        try:
            self._sqs.change_message_visibility(
                QueueUrl=self._queue_url(str(record.get("eventSourceARN") or "")),
                ReceiptHandle=record.get("receiptHandle"),
                VisibilityTimeout=delay,
            )
        except (ClientError, BotoCoreError, ValueError) as error:
            log.warning(
                "backoff not applied; the queue's visibility timeout applies",
                extra={"message_id": record.get("messageId"), "error": str(error)},
            )

    def _park(self, record: Mapping, reason: str, attempts: int, event: RegistryEvent | None) -> None:
        """The message, body unchanged, into the dead-letter queue with the reason. Raises
        when SQS refuses: the message then stays on its queue (reported failed) rather than
        being deleted unparked."""
        attributes: dict[str, dict[str, str]] = {
            "Reason": {"DataType": "String", "StringValue": reason or "unknown"},
            "Attempts": {"DataType": "Number", "StringValue": str(attempts)},
        }
        if event is not None:
            attributes["EventId"] = {"DataType": "String", "StringValue": event.id}
            attributes["EventType"] = {"DataType": "String", "StringValue": event.type}
        else:
            event_id = _event_id_of(record.get("body"))
            if event_id:
                attributes["EventId"] = {"DataType": "String", "StringValue": event_id}
        source = record.get("eventSourceARN")
        if isinstance(source, str) and source:
            attributes["SourceQueue"] = {"DataType": "String", "StringValue": _xml_safe(source)}
        body = record.get("body")
        self._sqs.send_message(
            QueueUrl=self._dead_letter_queue_url,
            # SQS refuses an empty body; an unreadable one is kept as it came, made XML-safe.
            MessageBody=_xml_safe(body) if isinstance(body, str) and body else "(empty)",
            MessageAttributes=attributes,
        )


def _event_id_of(body: Any) -> str | None:
    """The event id of a message that could not be read whole, when it still names one."""
    try:
        detail = json.loads(body).get("detail")
        event_id = detail.get("event-id")
    except (ValueError, TypeError, AttributeError):
        return None
    return _xml_safe(event_id)[:MAX_REASON_CHARACTERS] if isinstance(event_id, str) and event_id else None
