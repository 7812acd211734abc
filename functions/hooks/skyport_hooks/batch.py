"""The SQS batch handler the hook functions share, built for one core service.

Lambda's SQS event source invokes a hook function with up to 10 messages, each an
EventBridge event from the registry's bus. Thin: for each message the core consumer
(skyport.sqs_batches) parses the registry event, calls the service and, on failure, backs
off or parks the message in the dead-letter queue with the reason; Powertools' batch
processor reports the messages to retry as ``batchItemFailures`` (ReportBatchItemFailures),
and Lambda deletes the rest.

Metrics (CloudWatch EMF, namespace POWERTOOLS_METRICS_NAMESPACE): the service's failures
metric (failed tries), its lag metric if it has one (stream record to success), and
DeadLettered (events parked).

``sqs_batch_handler`` is called by the entry-point module at import, i.e. in Lambda's init
phase: settings are read once there, boto3 clients on first use. This module holds no
state of its own, so a fresh import of an entry-point module builds a fresh handler.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from skyport.config import Settings
from skyport.events import RegistryEvent
from skyport.registry import Registry
from skyport.sqs_batches import RETRY, RetryPolicy, SqsEventConsumer, metric_values

# What a hook does with one registry event; it raises to have the event retried.
Service = Callable[[RegistryEvent], None]
LambdaHandler = Callable[[dict, object], dict]


class RetryLater(Exception):
    """The message stays on the queue; it comes back after its backoff."""


def sqs_batch_handler(
    build_service: Callable[[Registry], Service],
    *,
    failures_metric: str,
    lag_metric: str | None = None,
    failure_message: str,
) -> LambdaHandler:
    """A Lambda handler for SQS batches of registry events, feeding each to the service
    ``build_service`` makes from the registry of this function's environment. A failed try
    counts ``failures_metric`` and is logged as ``failure_message`` with its reason."""
    logger = Logger()
    metrics = Metrics()
    registry = Registry(Settings.from_env(os.environ))
    consumer = SqsEventConsumer(
        registry.clients,
        build_service(registry),
        os.environ["SKYPORT_DEAD_LETTER_QUEUE_URL"],
        RetryPolicy.from_env(os.environ),
    )
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

    def record_handler(record: SQSRecord) -> None:
        outcome = consumer.consume(record.raw_event)
        for name, unit, value in metric_values(outcome, failures_metric, lag_metric):
            metrics.add_metric(name=name, unit=unit, value=value)
        if outcome.reason:
            logger.warning(
                failure_message,
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

    @metrics.log_metrics
    def handler(event: dict, context: object = None) -> dict:
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )

    return handler
