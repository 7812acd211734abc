"""The scan function's Lambda entry point (template.yaml: ScanFunction, Handler
skyport_scan.scan_on_push.handler): manifest.pushed events from ScanQueue (an EventBridge
rule on the registry's bus), each handed to ``ScanService.on_event``, which scans the
pushed platform images and stores their SBOM and report as referrers.

Thin, like the hook functions (functions/hooks): skyport.sqs_batches consumes each message
(parse, call, back off or park in the dead-letter queue with the reason), and Powertools'
batch processor reports the messages to retry as ``batchItemFailures``. A scan that
failed on its content is an outcome (scan.failed), not a retry; a storage outage is
retried. Batch size 1 (template.yaml): one scan may take most of the 900 s.

Each scan stops reading layers DEADLINE_MARGIN_SECONDS before the invocation's end (the
report says what it skipped), leaving time to match, push and record.

Settings are read once, in the init phase; boto3 clients on first use.
"""

from __future__ import annotations

import os
import time

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from skyport.config import Settings
from skyport.events import RegistryEvent
from skyport.registry import Registry
from skyport.scanning.service import DEADLINE_MARGIN_SECONDS, SCAN_FAILED
from skyport.sqs_batches import RETRY, RetryPolicy, SqsEventConsumer

logger = Logger()
registry = Registry(Settings.from_env(os.environ))
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
# The time.monotonic() by which this invocation's scans stop reading layers.
_deadline: list[float | None] = [None]


class RetryLater(Exception):
    """The message stays on the queue; it comes back after its backoff."""


def scan(event: RegistryEvent) -> None:
    for result in registry.scanning.on_event(event, deadline=_deadline[0]):
        logger.info(
            "scan",
            extra={
                "repository": result.repository,
                "digest": result.digest,
                "status": result.status,
                "counts": result.counts,
                **({"error": result.error} if result.status == SCAN_FAILED else {}),
            },
        )


consumer = SqsEventConsumer(
    registry.clients,
    scan,
    os.environ["SKYPORT_DEAD_LETTER_QUEUE_URL"],
    RetryPolicy.from_env(os.environ),
)


def record_handler(record: SQSRecord) -> None:
    outcome = consumer.consume(record.raw_event)
    if outcome.reason:
        logger.warning(
            "scan event failed",
            extra={
                "message_id": outcome.message_id,
                "event_id": outcome.event.id if outcome.event else None,
                "status": outcome.status,
                "attempts": outcome.attempts,
                "reason": outcome.reason,
            },
        )
    if outcome.status == RETRY:
        raise RetryLater(outcome.reason)


def handler(event: dict, context: object = None) -> dict:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    _deadline[0] = (
        time.monotonic() + remaining() / 1000 - DEADLINE_MARGIN_SECONDS if callable(remaining) else None
    )
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
