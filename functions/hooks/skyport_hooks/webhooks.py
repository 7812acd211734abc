"""The webhook function's Lambda entry point (template.yaml: WebhookFunction, Handler
skyport_hooks.webhooks.webhook_handler): registry events from WebhookQueue to the
matching webhooks, signed (``WebhookDispatcher.deliver``).

Metrics: WebhookFailures, DeadLettered."""

from skyport.webhooks import WebhookDispatcher

from skyport_hooks.batch import sqs_batch_handler

webhook_handler = sqs_batch_handler(
    lambda registry: WebhookDispatcher(registry).deliver,
    failures_metric="WebhookFailures",
    failure_message="webhook delivery failed",
)
