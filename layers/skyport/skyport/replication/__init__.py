"""Replication (issue 11): rules (rules.py), destinations (destinations.py), the
replicator (replicator.py) and the rule administration (admin.py)."""

from .replicator import ReplicationFailed, Replicator

__all__ = ["ReplicationFailed", "Replicator"]
