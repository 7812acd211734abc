"""The replicator: one registry event in, every matching rule's destination made to match
the source.

Events arrive late, twice, and out of order (EventBridge keeps no order; SQS redelivers),
so an event's payload is never taken as the state. For each rule matching the event's
repository (and tag), the replicator reads the source's CURRENT state of what the event
names and makes the destination match:

- a tag event (created, moved, deleted): the tag's manifest now, copied with everything it
  references (blobs only when missing; an index's manifests before the index), then the
  tag; a tag that no longer exists is deleted at the destination only with ``deletes``;
- a manifest event (pushed, deleted), for rules without a tag pattern: the manifest now,
  copied the same way; one that no longer exists is deleted only with ``deletes``;
- repository events: nothing (a repository exists at the destination with its content).

Re-applying is harmless (a manifest the destination has is not copied again), so an event
delivered twice changes nothing more. The ordering guard (per rule and ordering key: a
tag, or a manifest) records the newest stream sequence number applied, with a
conditional write (storage/dynamodb/replication.py, APPLIED_IS_OLDER): an event not newer
than the one recorded is skipped, and when the guard write loses to a newer event applied
meanwhile, the current state is applied once more, so the destination ends with the
newest state whichever finished last.

Each rule's status records its last success, last error (the reason, no secrets) and lag
(event time to applied). ``replicate`` raises ReplicationFailed naming every rule that
failed; the caller retries the whole event later (rules that succeeded skip it then).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from .. import events as registry_events
from ..errors import ManifestUnknown, RegistryError
from ..manifests import parse_manifest
from ..storage.dynamodb.replication import DynamoReplicationStore
from ..storage.ports import BlobRecord, ManifestRecord, ReplicationRule, ReplicationStore
from .destinations import Destination, DestinationError, open_destination
from .rules import repository_matches, tag_matches

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ..events import RegistryEvent
    from ..registry import Registry

# Guards outlive any retry of an event (SQS keeps messages 14 days at most).
GUARD_SECONDS = 30 * 24 * 3600
# A destination holding a secret is rebuilt after this long, so a changed password takes
# effect within minutes.
DESTINATION_SECONDS = 300
TAG_EVENTS = (registry_events.TAG_CREATED, registry_events.TAG_MOVED, registry_events.TAG_DELETED)
MANIFEST_EVENTS = (registry_events.MANIFEST_PUSHED, registry_events.MANIFEST_DELETED)


class ReplicationFailed(Exception):
    """Some matching rule failed for this event; ``reason`` names each rule and why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Source:
    """The source registry, as destinations read it."""

    registry: Registry

    @property
    def bucket(self) -> str:
        return self.registry.settings.bucket

    def record(self, repository: str, digest: str) -> BlobRecord:
        return self.registry.blobs.stat(repository, digest)

    def chunks(self, repository: str, digest: str) -> Iterator[bytes]:
        _, chunks = self.registry.blobs.stream(repository, digest)
        return chunks

    def has_manifest(self, repository: str, digest: str) -> bool:
        try:
            self.registry.manifests.resolve(repository, digest)
        except ManifestUnknown:
            return False
        return True


def event_lag_seconds(event: RegistryEvent, now: float | None = None) -> float | None:
    """Seconds from the event's time (its stream record's) to ``now``; None when the event
    carries no readable time."""
    if not event.time:
        return None
    try:
        moment = datetime.fromisoformat(event.time.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, (time.time() if now is None else now) - moment.timestamp())


class Replicator:
    def __init__(
        self,
        registry: Registry,
        store: ReplicationStore | None = None,
        destinations: Callable[[ReplicationRule, Registry], Destination] = open_destination,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._registry = registry
        self._store = store or DynamoReplicationStore(registry.clients.dynamodb, registry.settings.table)
        self._open_destination = destinations
        self._clock = clock
        self._destinations: dict[tuple, tuple[float, Destination]] = {}
        self._source = _Source(registry)

    @staticmethod
    def lag_seconds(event: RegistryEvent) -> float | None:
        """The replication lag metric for ``event``: its time to now (None: no time)."""
        return event_lag_seconds(event)

    def rules_for(self, event: RegistryEvent) -> list[ReplicationRule]:
        """The rules that replicate ``event`` (module docstring)."""
        if event.type not in TAG_EVENTS + MANIFEST_EVENTS:
            return []
        chosen = []
        for rule, _ in self._store.list_rules():
            if not repository_matches(rule.repositories, event.repository):
                continue
            if rule.tags is not None:
                if event.type not in TAG_EVENTS or event.tag is None or not tag_matches(rule.tags, event.tag):
                    continue
            chosen.append(rule)
        return chosen

    def replicate(self, event: RegistryEvent) -> None:
        failures = []
        for rule in self.rules_for(event):
            try:
                self._replicate_by(rule, event)
            except Exception as error:  # noqa: BLE001 - every failure is this rule's, reported
                reason = f"rule {rule.id} ({rule.destination}): {_reason(error)}"
                try:
                    self._store.record_error(rule.id, int(self._clock()), reason)
                except Exception:  # noqa: BLE001, S110 - the status is best effort; the event is retried
                    pass
                failures.append(reason)
        if failures:
            raise ReplicationFailed(
                f"event {event.id} ({event.type} {event.ordering_key}): " + "; ".join(failures)
            )

    # --- one rule ----------------------------------------------------------------------

    def _replicate_by(self, rule: ReplicationRule, event: RegistryEvent) -> None:
        sequence = _sequence(event)
        if sequence is not None:
            applied = self._store.applied_sequence(rule.id, event.ordering_key)
            if applied is not None and applied >= sequence:
                return  # this event, or a newer one for the same tag or manifest, is applied
        destination = self._destination(rule)
        self._apply(rule, destination, event)
        if sequence is not None:
            expires = int(self._clock()) + GUARD_SECONDS
            if not self._store.record_applied(rule.id, event.ordering_key, sequence, expires):
                # A newer event was applied meanwhile, perhaps from a state older than what
                # this one just wrote or newer: converge on the current state once more.
                self._apply(rule, destination, event)
        self._store.record_success(rule.id, int(self._clock()), event_lag_seconds(event, self._clock()))

    def _destination(self, rule: ReplicationRule) -> Destination:
        key = (rule.id, rule.destination, rule.insecure, rule.credentials)
        cached = self._destinations.get(key)
        now = self._clock()
        # Kept for the process's life (its clients are made once), but re-read after a while
        # when it holds a secret, so that a changed password takes effect.
        if cached is None or (rule.credentials and now - cached[0] > DESTINATION_SECONDS):
            cached = (now, self._open_destination(rule, self._registry))
            self._destinations[key] = cached
        return cached[1]

    def _current(self, repository: str, reference: str) -> ManifestRecord | None:
        try:
            return self._registry.manifests.resolve(repository, reference)
        except ManifestUnknown:
            return None

    def _apply(self, rule: ReplicationRule, destination: Destination, event: RegistryEvent) -> None:
        repository = event.repository
        if event.type in TAG_EVENTS:
            if event.tag is None:
                return  # a tag event without its tag names nothing to replicate
            current = self._current(repository, event.tag)
            if current is not None:
                media_type, body = self._copy_tree(destination, repository, current.digest)
                destination.put_manifest(repository, event.tag, media_type, body)
            elif rule.deletes:
                destination.delete_tag(repository, event.tag, self._source)
            return
        if event.digest is None:
            return
        current = self._current(repository, event.digest)
        if current is not None:
            self._copy_tree(destination, repository, current.digest)
        elif rule.deletes:
            destination.delete_manifest(repository, event.digest)

    def _copy_tree(
        self, destination: Destination, repository: str, digest: str, depth: int = 0
    ) -> tuple[str, bytes]:
        """Copy manifest ``digest`` with what it references, children before parents (blobs
        before an image manifest, an index's manifests before the index), skipping what the
        destination has. Returns its media type and body (for a tag's PUT)."""
        record, body = self._registry.manifests.fetch(repository, digest)
        assert body is not None
        if destination.has_manifest(repository, digest):
            return record.media_type, body
        parsed = parse_manifest(body, record.media_type)
        if depth > 4:  # an index of indexes of ...: real images nest once or twice
            raise DestinationError(f"manifest {digest}: indexes nested too deep to replicate")
        for child in parsed.manifests:
            self._copy_tree(destination, repository, child, depth + 1)
        for blob_digest, size in parsed.blobs.items():
            destination.ensure_blob(repository, blob_digest, size, self._source)
        destination.put_manifest(repository, digest, record.media_type, body)
        return record.media_type, body


def _sequence(event: RegistryEvent) -> int | None:
    text = event.sequence_number
    if not text or not text.isascii() or not text.isdigit() or len(text) > 48:
        return None  # no usable sequence number: applied without a guard (reading the current state)
    return int(text)


def _reason(error: Exception) -> str:
    if isinstance(error, RegistryError):
        return f"{error.code.code}: {error.message}"
    if isinstance(error, DestinationError):
        return str(error)
    return f"{type(error).__name__}: {error}"[:1000]
