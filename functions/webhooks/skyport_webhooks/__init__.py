"""The webhook function: registry events from the webhook queue to subscribed HTTP receivers,
signed (skyport.webhooks), consumed by skyport.sqs_batches."""
