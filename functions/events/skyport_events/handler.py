"""The events function's Lambda entry point (template.yaml: EventsFunction).

Invoked by the event source mapping on the metadata table's DynamoDB stream, with a
batch of records its FilterCriteria let through (skyport.events.EVENT_SOURCE_FILTER).
Thin: the core converts the whole batch and publishes it (``EventBusPublisher``, in
calls of up to 10 entries); Powertools' batch processor then turns the records that
were not published into the partial batch response (``batchItemFailures``, each the
record's SequenceNumber). Lambda retries from the lowest of them; after
MaximumRetryAttempts the records go to the on-failure destination (the DLQ).

The whole batch is published before the processor runs, not record by record, so that
a batch of 100 records costs about ten PutEvents calls rather than a hundred. The first
record with an unpublished event fails, and every record after it (the core says why:
order per item).

When every record fails, the response lists them all rather than raising
(raise_on_entire_batch_failure=False): Lambda then retries from the first, as for a
partial failure, and BisectBatchOnFunctionError stays for real function errors.

Settings are read once, in the init phase; boto3 clients on first use.
"""

import os

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from skyport.config import Settings
from skyport.event_bus import EventBusPublisher
from skyport.storage.clients import AwsClients

logger = Logger()
settings = Settings.from_env(os.environ)
clients = AwsClients(settings)
publisher = EventBusPublisher(clients, os.environ["SKYPORT_EVENT_BUS"])
processor = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)


class RecordNotPublished(Exception):
    """A record whose events, or an earlier record's, did not all reach the bus."""


def _sequence_number(record: object) -> str | None:
    change = record.get("dynamodb") if isinstance(record, dict) else None
    number = change.get("SequenceNumber") if isinstance(change, dict) else None
    return number if isinstance(number, str) else None


def handler(event: dict, context: object = None) -> dict:
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list) or not records:
        return {"batchItemFailures": []}
    outcome = publisher.publish_records(records)
    for failure in outcome.failures:
        logger.warning(
            "registry event not published",
            extra={"event_id": failure.event.id, "event_type": failure.event.type, "reason": failure.reason},
        )
    unpublished = {_sequence_number(records[index]) for index in outcome.failed_records} - {None}

    def record_handler(record: DynamoDBRecord) -> None:
        if record.dynamodb is not None and record.dynamodb.sequence_number in unpublished:
            raise RecordNotPublished(record.dynamodb.sequence_number)

    logger.info(
        "stream batch",
        extra={
            "records": len(records),
            "published": outcome.published,
            "failed_records": len(outcome.failed_records),
        },
    )
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
