"""The replication function's Lambda entry point (template.yaml: ReplicationFunction,
Handler skyport_hooks.replication.replication_handler): registry events from
ReplicationQueue to the destinations of matching rules (``Replicator.replicate``).

Metrics: ReplicationFailures, ReplicationLagSeconds (stream record to destination
updated), DeadLettered."""

from skyport.replication import Replicator

from skyport_hooks.batch import sqs_batch_handler

replication_handler = sqs_batch_handler(
    lambda registry: Replicator(registry).replicate,
    failures_metric="ReplicationFailures",
    lag_metric="ReplicationLagSeconds",
    failure_message="replication failed",
)
