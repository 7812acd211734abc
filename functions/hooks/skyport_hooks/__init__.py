"""The hook functions (template.yaml: ReplicationFunction, WebhookFunction): registry events
from their SQS queue to one core service each, consumed by skyport.sqs_batches. One package
for both, since they differ only in the service, the metric names and a log message
(``batch.sqs_batch_handler``); each function's entry point is its own module
(``replication``, ``webhooks``) so that a function builds only its own service."""
