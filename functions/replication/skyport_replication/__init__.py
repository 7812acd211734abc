"""The replication function: registry events from the replication queue to the destinations
of matching rules (skyport.replication), consumed by skyport.sqs_batches."""
