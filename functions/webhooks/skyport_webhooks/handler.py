"""The webhook function's Lambda entry point (template.yaml: WebhookFunction).

Invoked by the SQS event source on WebhookQueue with up to 10 messages, each an
EventBridge event from the registry's bus. Thin: for each message the core consumer
(skyport.sqs_batches) parses the registry event, calls ``WebhookDispatcher.deliver`` and, on
failure, backs off or parks the message in the dead-letter queue with the reason;
Powertools' batch processor reports the messages to retry as ``batchItemFailures``
(ReportBatchItemFailures), and Lambda deletes the rest.

Metrics (CloudWatch EMF, namespace POWERTOOLS_METRICS_NAMESPACE): WebhookFailures
(failed tries), DeadLettered (events parked).

Settings are read once, in the init phase; boto3 clients on first use.
"""

import os

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from skyport.config import Settings
from skyport.registry import Registry
from skyport.sqs_batches import RETRY, RetryPolicy, SqsEventConsumer, metric_values
from skyport.webhooks import WebhookDispatcher

logger = Logger()
metrics = Metrics()
registry = Registry(Settings.from_env(os.environ))
consumer = SqsEventConsumer(
    registry.clients,
    WebhookDispatcher(registry).deliver,
    os.environ["SKYPORT_DEAD_LETTER_QUEUE_URL"],
    RetryPolicy.from_env(os.environ),
)
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


class RetryLater(Exception):
    """The message stays on the queue; it comes back after its backoff."""


def record_handler(record: SQSRecord) -> None:
    outcome = consumer.consume(record.raw_event)
    for name, unit, value in metric_values(outcome, "WebhookFailures"):
        metrics.add_metric(name=name, unit=unit, value=value)
    if outcome.reason:
        logger.warning(
            "webhook delivery failed",
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
